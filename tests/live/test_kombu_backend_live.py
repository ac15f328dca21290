"""carrot.backends.kombu_transport.RedisBackend against Redis on 127.0.0.1:6379."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

# kombu is an extra (carrot[kombu]): without it there is nothing here to test.
pytest.importorskip("kombu", reason="kombu is not installed (pip install carrot[kombu])")

from carrot.backends.kombu_transport import RedisBackend
from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, ConsumerSet, Publisher

pytestmark = pytest.mark.redis

REDIS = {"hostname": "127.0.0.1", "port": 6379, "virtual_host": "/", "backend_cls": "redis"}


@pytest.fixture
def conn() -> Iterator[BrokerConnection]:
    connection = BrokerConnection(**REDIS)
    try:
        yield connection
    finally:
        connection.close()


class Names:
    """Unique queue/exchange names for one test; the queues are deleted afterwards."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queues: list[str] = []

    def queue(self, suffix: str) -> str:
        name = f"{self.prefix}.{suffix}"
        self.queues.append(name)
        return name

    def exchange(self, suffix: str) -> str:
        return f"{self.prefix}.x.{suffix}"


@pytest.fixture
def names(unique: str) -> Iterator[Names]:
    n = Names(unique)
    yield n
    if n.queues:
        with BrokerConnection(**REDIS) as cleanup:
            backend = cleanup.create_backend()
            for queue in n.queues:
                backend.queue_delete(queue)
            backend.close()


def declare(backend: RedisBackend, exchange: str, type_: str, bindings: dict[str, str]) -> None:
    backend.exchange_declare(exchange, type_, True, False)
    for queue, key in bindings.items():
        backend.queue_declare(queue, True, False, False)
        backend.queue_bind(queue, exchange, key)


def send(backend: RedisBackend, body: bytes, exchange: str, key: str, **kwargs: Any) -> None:
    message = backend.prepare_message(body, 2, content_type="text/plain", content_encoding="utf-8")
    backend.publish(message, exchange, key, **kwargs)


def drain(backend: RedisBackend, queue: str, limit: int = 20) -> list[bytes]:
    bodies = []
    for _ in range(limit):
        message = backend.get(queue)
        if message is None:
            break
        message.ack()
        bodies.append(message.body)
    return bodies


def test_connects_with_url_in_hostname(names: Names) -> None:
    q = names.queue("url")
    with BrokerConnection(hostname="redis://127.0.0.1:6379/0", backend_cls="kombu") as conn:
        backend = conn.create_backend()
        backend.queue_declare(q, False, False, False)
        send(backend, b"via url", "", q)
        assert drain(backend, q) == [b"via url"]
        backend.close()


def test_refused_connection_is_a_connection_error() -> None:
    # Port 1 on the loopback refuses at once.
    conn = BrokerConnection(hostname="127.0.0.1", port=1, backend_cls="redis", connect_timeout=2)
    with pytest.raises(conn.connection_errors):
        conn.connect()
    conn.close()


def test_ensure_connection_retries_then_raises() -> None:
    conn = BrokerConnection(hostname="127.0.0.1", port=1, backend_cls="redis", connect_timeout=2)
    retries: list[float] = []
    with pytest.raises(conn.connection_errors):
        conn.ensure_connection(
            errback=lambda exc, interval: retries.append(interval),
            max_retries=2,
            interval_start=0.01,
            interval_step=0.01,
        )
    assert len(retries) == 2
    conn.close()


def test_database_from_virtual_host(names: Names) -> None:
    q = names.queue("db")
    with BrokerConnection(**{**REDIS, "virtual_host": "/2"}) as db2:
        backend = db2.create_backend()
        backend.queue_declare(q, False, False, False)
        send(backend, b"in db 2", "", q)
        with BrokerConnection(**REDIS) as db0:
            assert db0.create_backend().get(q) is None
        assert drain(backend, q) == [b"in db 2"]
        backend.close()


def test_direct_and_topic_routing(conn: BrokerConnection, names: Names) -> None:
    backend = conn.create_backend()
    a, b, t = names.queue("a"), names.queue("b"), names.queue("t")
    direct, topic = names.exchange("direct"), names.exchange("topic")
    declare(backend, direct, "direct", {a: "k", b: "k"})
    declare(backend, topic, "topic", {t: "news.#"})
    send(backend, b"d", direct, "k")
    send(backend, b"nope", direct, "other")
    send(backend, b"t1", topic, "news.uk.london")
    send(backend, b"t2", topic, "sport")
    ma, mb = backend.get(a), backend.get(b)
    assert (ma.body, mb.body) == (b"d", b"d")
    assert ma.delivery_tag != mb.delivery_tag
    assert ma.delivery_info["exchange"] == direct
    assert ma.delivery_info["routing_key"] == "k"
    ma.ack()
    mb.ack()
    assert drain(backend, a) == []
    assert drain(backend, t) == [b"t1"]
    backend.close()


def test_requeue_goes_back_to_its_own_queue(conn: BrokerConnection, names: Names) -> None:
    backend = conn.create_backend()
    a, b = names.queue("a"), names.queue("b")
    ex = names.exchange("direct")
    declare(backend, ex, "direct", {a: "k", b: "k"})
    send(backend, b"first", ex, "k")
    send(backend, b"second", ex, "k")
    message = backend.get(a)
    assert message.body == b"first"
    message.requeue()
    again = backend.get(a)
    assert again.body == b"first"
    assert again.delivery_info["redelivered"] is True
    again.ack()
    assert drain(backend, a) == [b"second"]
    assert drain(backend, b) == [b"first", b"second"]
    backend.close()


def test_unacked_returns_on_close(conn: BrokerConnection, names: Names) -> None:
    q = names.queue("q")
    first = conn.create_backend()
    first.queue_declare(q, True, False, False)
    send(first, b"keep", "", q)
    assert first.get(q).body == b"keep"
    first.close()
    second = conn.create_backend()
    message = second.get(q)
    assert message.body == b"keep"
    assert message.delivery_info["redelivered"] is True
    message.ack()
    second.close()


def test_purge_and_delete_counts(conn: BrokerConnection, names: Names) -> None:
    backend = conn.create_backend()
    q = names.queue("q")
    backend.queue_declare(q, True, False, False)
    for body in (b"1", b"2", b"3"):
        send(backend, body, "", q)
    assert backend.queue_purge(q) == 3
    send(backend, b"4", "", q)
    assert backend.queue_exists(q) is True
    assert backend.queue_delete(q) == 1
    assert backend.queue_exists(q) is False
    backend.close()


def test_delete_removes_bindings_made_elsewhere(names: Names) -> None:
    q = names.queue("bound")
    ex = names.exchange("direct")
    with BrokerConnection(**REDIS) as first:
        binder = first.create_backend()
        declare(binder, ex, "direct", {q: "k"})
        send(binder, b"before", ex, "k")
        binder.close()
    with BrokerConnection(**REDIS) as second:
        assert second.create_backend().queue_delete(q) == 1
    with BrokerConnection(**REDIS) as third:
        publisher = third.create_backend()
        publisher.exchange_declare(ex, "direct", True, False)
        send(publisher, b"after", ex, "k")
        assert publisher.get(q) is None
        assert publisher.queue_exists(q) is False
        publisher.close()


def test_priority_in_kombus_order(conn: BrokerConnection, names: Names) -> None:
    # kombu's Redis transport serves lower numbers first (documented limit).
    backend = conn.create_backend()
    q = names.queue("pri")
    backend.queue_declare(q, True, False, False)
    for priority in (0, 9, 5):
        message = backend.prepare_message(str(priority).encode(), 2, priority=priority)
        backend.publish(message, "", q)
    assert drain(backend, q) == [b"0", b"5", b"9"]
    backend.close()


def test_consume_and_drain_events_timeout(conn: BrokerConnection, names: Names) -> None:
    backend = conn.create_backend()
    q = names.queue("q")
    backend.queue_declare(q, True, False, False)
    received: list[Any] = []
    backend.declare_consumer(
        q, False, lambda raw: received.append(backend.message_to_python(raw)), "tag-live"
    )
    send(backend, b"a", "", q)
    send(backend, b"b", "", q)
    assert list(backend.consume(limit=2)) == [True, True]
    assert [m.body for m in received] == [b"a", b"b"]
    assert received[0].delivery_info["consumer_tag"] == "tag-live"
    for message in received:
        message.ack()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.2)
    backend.close()


def test_fanout_reaches_running_consumers(conn: BrokerConnection, names: Names) -> None:
    q = names.queue("fan")
    ex = names.exchange("fanout")
    consumer = Consumer(conn, queue=q, exchange=ex, exchange_type="fanout", routing_key="")
    got: list[Any] = []

    def on_message(data: Any, message: Any) -> None:
        got.append(data)
        message.ack()

    consumer.register_callback(on_message)
    consumer.consume()
    # Polling subscribes to the exchange's PUB/SUB channel (the confirmation
    # is an event of its own); wait until a poll finds nothing.
    for _ in range(5):
        try:
            conn.drain_events(timeout=0.2)
        except TimeoutError:
            break
    assert got == []
    with BrokerConnection(**REDIS) as other:
        publisher = Publisher(other, exchange=ex, exchange_type="fanout", routing_key="")
        publisher.send({"to": "all"})
        publisher.close()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.5)
    assert got == [{"to": "all"}]
    consumer.close()


def test_publisher_consumer_round_trip(conn: BrokerConnection, names: Names) -> None:
    q = names.queue("q")
    ex = names.exchange("topic")
    consumer = Consumer(conn, queue=q, exchange=ex, routing_key="a.#", exchange_type="topic")
    with BrokerConnection(**REDIS) as other:
        publisher = Publisher(other, exchange=ex, routing_key="a.b", exchange_type="topic")
        publisher.send({"hello": "redis"})
        publisher.send(b"raw", content_type="application/data", content_encoding="binary")
        publisher.close()
    first = consumer.fetch()
    assert first.payload == {"hello": "redis"}
    first.ack()
    second = consumer.fetch()
    assert second.body == b"raw"
    second.ack()
    assert consumer.fetch() is None
    consumer.close()


def test_consumer_set_round_trip(conn: BrokerConnection, names: Names) -> None:
    a, b = names.queue("a"), names.queue("b")
    ex = names.exchange("direct")
    cset = ConsumerSet(
        conn,
        from_dict={
            a: {"exchange": ex, "routing_key": "to-a"},
            b: {"exchange": ex, "routing_key": "to-b"},
        },
    )
    got: list[tuple[str, Any]] = []

    def on_message(data: Any, message: Any) -> None:
        got.append((message.delivery_info["routing_key"], data))
        message.ack()

    cset.register_callback(on_message)
    it = cset.iterconsume()
    publisher = Publisher(conn, exchange=ex, exchange_type="direct")
    publisher.send("for a", routing_key="to-a")
    publisher.send("for b", routing_key="to-b")
    for _ in range(2):
        assert next(it)
    assert sorted(got) == [("to-a", "for a"), ("to-b", "for b")]
    publisher.close()
    cset.close()


def test_close_from_a_callback_ends_consume(conn: BrokerConnection, names: Names) -> None:
    backend = conn.create_backend()
    q = names.queue("q")
    backend.queue_declare(q, True, False, False)
    seen: list[bytes] = []

    def on_delivery(raw: Any) -> None:
        message = backend.message_to_python(raw)
        message.ack()
        seen.append(message.body)
        backend.close()

    backend.declare_consumer(q, False, on_delivery, "closer")
    send(backend, b"last", "", q)
    send(backend, b"stays", "", q)
    assert list(backend.consume(limit=10)) == [True]
    assert seen == [b"last"]
    other = conn.create_backend()
    assert drain(other, q) == [b"stays"]
    other.close()


def test_headers_exchange(conn: BrokerConnection, names: Names) -> None:
    backend = conn.create_backend()
    pdf, any_ = names.queue("pdf"), names.queue("any")
    ex = names.exchange("headers")
    backend.exchange_declare(ex, "headers", True, False)
    for queue, arguments in (
        (pdf, {"format": "pdf"}),
        (any_, {"format": "txt", "lang": "en", "x-match": "any"}),
    ):
        backend.queue_declare(queue, True, False, False)
        backend.queue_bind(queue, ex, "", arguments=arguments)
    send(backend, b"p", ex, "", headers={"format": "pdf"})
    send(backend, b"en", ex, "", headers={"lang": "en", "format": "zip"})
    assert drain(backend, pdf) == [b"p"]
    assert drain(backend, any_) == [b"en"]
    backend.close()
