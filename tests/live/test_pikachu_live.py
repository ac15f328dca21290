"""carrot.backends.pikachu against the local RabbitMQ."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import amqp
import pytest
from pika import exceptions as pika_exceptions

# The TLS proxy and certificates of the py-amqp live tests (tests/live is on
# sys.path under pytest's default import mode).
from test_pyamqplib_live import TLSProxy, _make_certificates

from carrot.backends import pikachu
from carrot.backends.base import QueueAlreadyExistsWarning
from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, ConsumerSet, Publisher

pytestmark = pytest.mark.rabbitmq

DEADLINE = 10.0


def drain_until(conn: BrokerConnection, predicate: Callable[[], bool]) -> None:
    """Dispatch events until ``predicate()`` holds; fail after :data:`DEADLINE` seconds."""
    deadline = time.monotonic() + DEADLINE
    for _ in range(100_000):
        if predicate():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=min(remaining, 1.0))
    raise AssertionError(f"condition not met within {DEADLINE} s")


def ready_count(queue: str) -> int:
    """Messages ready in ``queue``, asked through py-amqp on a connection of its own."""
    with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
        ch = conn.channel()
        try:
            return ch.queue_declare(queue=queue, passive=True).message_count
        finally:
            ch.close()


def ready_becomes(queue: str, expected: int) -> int:
    """Poll :func:`ready_count` until it is ``expected`` (bounded); return the last count."""
    deadline = time.monotonic() + DEADLINE
    for _ in range(1000):
        count = ready_count(queue)
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.02)
    return ready_count(queue)


@pytest.fixture(params=["pika", "syncpika"])
def conn(request, amqp_conninfo) -> Iterator[BrokerConnection]:
    """A connection through each pika alias, closed after the test."""
    connection = BrokerConnection(**amqp_conninfo, backend_cls=request.param)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def backend(conn: BrokerConnection) -> Iterator[pikachu.Backend]:
    backend = conn.create_backend()
    try:
        yield backend
    finally:
        with contextlib.suppress(*conn.connection_errors):
            backend.close()


@pytest.fixture
def queue(backend: pikachu.Backend, unique: str, amqp_cleanup) -> str:
    """A declared, non-durable queue bound to the default exchange by its name."""
    name = amqp_cleanup.queue(f"{unique}.q")
    backend.queue_declare(name, durable=False, exclusive=False, auto_delete=False)
    return name


def send(backend: pikachu.Backend, queue: str, body: bytes, **kwargs: Any) -> None:
    message = backend.prepare_message(body, 1, content_type="text/plain", content_encoding="utf-8")
    backend.publish(message, "", queue, **kwargs)


def get_within(backend: pikachu.Backend, queue: str, **kwargs: Any) -> pikachu.Message:
    """basic_get until a message is there (bounded)."""
    deadline = time.monotonic() + DEADLINE
    for _ in range(10_000):
        message = backend.get(queue, **kwargs)
        if message is not None:
            return message
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no message on {queue!r} within {DEADLINE} s")


# -- backend contract -------------------------------------------------------


def test_connection_is_the_wrapper(conn: BrokerConnection) -> None:
    connection = conn.connect()
    assert isinstance(connection, pikachu.Connection)
    assert connection.connected
    assert connection.server_properties["product"] == "RabbitMQ"
    assert isinstance(conn.create_backend(), pikachu.Backend)


def test_declare_bind_publish_get(backend: pikachu.Backend, unique: str, amqp_cleanup) -> None:
    queue, exchange = amqp_cleanup.queue(f"{unique}.q"), amqp_cleanup.exchange(f"{unique}.x")
    ok = backend.queue_declare(queue, durable=False, exclusive=False, auto_delete=False)
    assert ok == (queue, 0, 0)
    backend.exchange_declare(exchange, "topic", durable=False, auto_delete=False)
    backend.queue_bind(queue, exchange, "a.*")
    message = backend.prepare_message(
        b"payload", 2, priority=7, content_type="text/plain", content_encoding="utf-8"
    )
    backend.publish(message, exchange, "a.b", headers={"h": "v"})
    got = get_within(backend, queue)
    assert got.body == b"payload"
    assert got.payload == "payload"
    assert got.delivery_info["exchange"] == exchange
    assert got.delivery_info["routing_key"] == "a.b"
    assert got.delivery_info["message_count"] == 0
    assert got.delivery_info["redelivered"] is False
    assert got.properties["delivery_mode"] == 2
    assert got.properties["priority"] == 7
    assert got.headers == {"h": "v"}
    got.ack()
    assert backend.get(queue) is None


def test_headers_binding_arguments(backend: pikachu.Backend, unique: str, amqp_cleanup) -> None:
    queue, exchange = amqp_cleanup.queue(f"{unique}.q"), amqp_cleanup.exchange(f"{unique}.x")
    backend.queue_declare(queue, False, False, False)
    backend.exchange_declare(exchange, "headers", False, False)
    backend.queue_bind(queue, exchange, "", arguments={"x-match": "all", "kind": "yes"})
    for kind in ("no", "yes"):
        message = backend.prepare_message(kind.encode(), 1)
        backend.publish(message, exchange, "", headers={"kind": kind})
    assert get_within(backend, queue, no_ack=True).body == b"yes"
    assert backend.get(queue) is None


def test_purge_and_delete_return_counts(backend: pikachu.Backend, queue: str) -> None:
    for i in range(3):
        send(backend, queue, b"%d" % i)
    assert backend.queue_purge(queue) == 3
    send(backend, queue, b"left")
    assert backend.queue_delete(queue) == 1
    assert not backend.queue_exists(queue)


def test_queue_delete_if_empty_refuses_then_channel_reopens(
    backend: pikachu.Backend, queue: str
) -> None:
    send(backend, queue, b"keep")
    with pytest.raises(pika_exceptions.ChannelClosedByBroker) as excinfo:
        backend.queue_delete(queue, if_empty=True)
    assert excinfo.value.reply_code == 406
    assert backend.queue_purge(queue) == 1  # a new channel, the queue untouched


def test_warn_if_exists(backend: pikachu.Backend, queue: str, unique: str, amqp_cleanup) -> None:
    with pytest.warns(QueueAlreadyExistsWarning, match=queue):
        backend.queue_declare(queue, False, False, False, warn_if_exists=True)
    fresh = amqp_cleanup.queue(f"{unique}.fresh")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.queue_declare(fresh, False, False, False, warn_if_exists=True)


def test_queue_exists_404_keeps_channel_and_consumer(
    conn: BrokerConnection, backend: pikachu.Backend, queue: str, unique: str
) -> None:
    got: list[Any] = []
    backend.declare_consumer(queue, True, got.append, f"{unique}.tag")
    channel = backend.channel
    assert backend.queue_exists(queue) is True
    assert backend.queue_exists(f"{unique}.missing") is False
    assert backend.channel is channel
    send(backend, queue, b"still consuming")
    drain_until(conn, lambda: got)
    assert got[0].body == b"still consuming"


def test_consume_and_cancel(
    conn: BrokerConnection, backend: pikachu.Backend, queue: str, unique: str
) -> None:
    got: list[Any] = []
    tag = f"{unique}.tag"
    assert backend.declare_consumer(queue, False, got.append, tag) == tag
    send(backend, queue, b"one")
    drain_until(conn, lambda: got)
    message = backend.message_to_python(got[0])
    assert message.delivery_info["consumer_tag"] == tag
    message.ack()
    backend.cancel(tag)
    send(backend, queue, b"two")
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.3)
    assert ready_becomes(queue, 1) == 1
    assert len(got) == 1


def test_consume_limit_dispatches_one_message_per_step(
    backend: pikachu.Backend, queue: str, unique: str
) -> None:
    got: list[Any] = []
    for i in range(3):
        send(backend, queue, b"%d" % i)
    backend.declare_consumer(queue, True, got.append, f"{unique}.tag")
    assert list(backend.consume(limit=2)) == [True, True]
    assert [r.body for r in got] == [b"0", b"1"]
    assert list(backend.consume(limit=1)) == [True]
    assert [r.body for r in got] == [b"0", b"1", b"2"]


def test_consume_ends_after_close(backend: pikachu.Backend, queue: str, unique: str) -> None:
    def callback(raw_message: Any) -> None:
        backend.close()

    backend.declare_consumer(queue, False, callback, f"{unique}.tag")
    send(backend, queue, b"a")
    send(backend, queue, b"b")
    steps = 0
    for steps, value in enumerate(backend.consume(), 1):
        assert value
        assert steps <= 10
    assert steps == 1
    assert ready_becomes(queue, 2) == 2  # both unacked, back in the queue


@pytest.mark.parametrize(
    ("settle", "comes_back"), [("ack", False), ("reject", False), ("requeue", True)]
)
def test_ack_reject_requeue(backend: pikachu.Backend, queue: str, settle: str, comes_back) -> None:
    send(backend, queue, b"m")
    message = get_within(backend, queue)
    getattr(message, settle)()
    again = backend.get(queue, no_ack=True)
    assert (again is not None) is comes_back
    if comes_back:
        assert again.delivery_info["redelivered"] is True


def test_qos_prefetch_count(
    conn: BrokerConnection, backend: pikachu.Backend, queue: str, unique: str
) -> None:
    held: list[Any] = []
    for i in range(3):
        send(backend, queue, b"%d" % i)
    backend.qos(0, 1)
    backend.declare_consumer(queue, False, held.append, f"{unique}.tag")
    drain_until(conn, lambda: held)
    assert ready_becomes(queue, 2) == 2
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.3)
    backend.ack(held[0].method.delivery_tag)
    drain_until(conn, lambda: len(held) == 2)
    assert [r.body for r in held] == [b"0", b"1"]


def test_flow_pauses_and_resumes_deliveries(
    conn: BrokerConnection, backend: pikachu.Backend, queue: str, unique: str
) -> None:
    got: list[Any] = []
    backend.declare_consumer(queue, True, got.append, f"{unique}.tag")
    backend.flow(False)
    send(backend, queue, b"paused")
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.3)
    assert ready_becomes(queue, 1) == 1
    backend.flow(True)
    drain_until(conn, lambda: got)
    assert got[0].body == b"paused"


def test_mandatory_unroutable_is_returned(
    conn: BrokerConnection, backend: pikachu.Backend, unique: str, amqp_cleanup
) -> None:
    exchange = amqp_cleanup.exchange(f"{unique}.x")
    backend.exchange_declare(exchange, "direct", False, False)
    message = backend.prepare_message(b"lost", 1, content_type="text/plain")
    backend.publish(message, exchange, "nowhere", mandatory=True)
    drain_until(conn, lambda: backend.returned_messages)
    code, text, returned_exchange, routing_key, raw = backend.returned_messages[0]
    assert (code, text) == (312, "NO_ROUTE")
    assert (returned_exchange, routing_key) == (exchange, "nowhere")
    assert raw.body == b"lost"
    assert backend.channel.is_open


def test_immediate_without_consumer_is_not_queued(
    conn: BrokerConnection, backend: pikachu.Backend, queue: str
) -> None:
    send(backend, queue, b"now or never", immediate=True)
    send(backend, queue, b"normal")
    assert ready_becomes(queue, 1) == 1
    assert get_within(backend, queue, no_ack=True).body == b"normal"


def test_immediate_unroutable_is_returned(
    conn: BrokerConnection, backend: pikachu.Backend, unique: str
) -> None:
    send(backend, f"{unique}.nobody", b"x", immediate=True)
    drain_until(conn, lambda: backend.returned_messages)
    assert backend.returned_messages[0][0] == 312


def test_channel_reopens_after_a_broker_close(backend: pikachu.Backend, queue: str) -> None:
    first = backend.channel
    backend.ack(12345)  # unknown delivery tag: the broker closes the channel
    with pytest.raises(pika_exceptions.ChannelClosedByBroker):
        backend.queue_declare(queue, False, False, False)
    assert backend.queue_declare(queue, False, False, False).queue == queue
    assert backend.channel is not first


def test_drain_events_raises_when_a_consuming_channel_is_closed(
    conn: BrokerConnection, backend: pikachu.Backend, queue: str, unique: str
) -> None:
    backend.declare_consumer(queue, False, lambda raw: None, f"{unique}.tag")
    backend.ack(12345)
    with pytest.raises(pika_exceptions.ChannelClosedByBroker) as excinfo:
        conn.drain_events(timeout=5)
    assert excinfo.value.reply_code == 406


def test_deleted_queue_cancels_the_consumer(
    conn: BrokerConnection, backend: pikachu.Backend, queue: str, unique: str
) -> None:
    got: list[Any] = []
    tag = f"{unique}.tag"
    backend.declare_consumer(queue, True, got.append, tag)
    send(backend, queue, b"before")
    drain_until(conn, lambda: got)
    other = conn.create_backend()
    other.queue_delete(queue)
    other.close()
    with pytest.raises(pika_exceptions.ConsumerCancelled, match=tag):
        for _ in range(10):  # bounded: the notice comes within a wait or two
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=1)
    assert tag not in backend._consumers
    assert backend.queue_exists(queue) is False
    assert backend.channel.is_open


def test_consume_raises_when_the_broker_closes_the_channel(
    backend: pikachu.Backend, queue: str, unique: str
) -> None:
    backend.declare_consumer(queue, False, lambda raw: None, f"{unique}.tag")
    backend.ack(12345)  # unknown delivery tag
    with pytest.raises(pika_exceptions.ChannelClosedByBroker):
        for _ in backend.consume(limit=5):
            pass
    assert backend.channel.is_open  # a new one
    assert backend._consumers == {}


def test_wait_multi(conn: BrokerConnection, unique: str, amqp_cleanup) -> None:
    a, b = conn.create_backend(), conn.create_backend()
    queues = [amqp_cleanup.queue(f"{unique}.{n}") for n in "ab"]
    got: list[Any] = []
    for backend, name in zip((a, b), queues, strict=True):
        backend.queue_declare(name, False, False, False)
        backend.declare_consumer(name, True, got.append, f"{name}.tag")
    send(a, queues[1], b"for b")
    conn.connection.wait_multi([b.channel], timeout=DEADLINE)
    assert [r.body for r in got] == [b"for b"]
    with pytest.raises(socket.timeout):
        conn.connection.wait_multi([a.channel], timeout=0.3)


# -- connection -------------------------------------------------------------


def test_refused_port_is_a_connection_error(amqp_conninfo) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    conn = BrokerConnection(**{**amqp_conninfo, "port": port}, backend_cls="pika")
    with pytest.raises(conn.connection_errors):
        conn.connect()


def test_wrong_password_is_a_connection_error(amqp_conninfo) -> None:
    conn = BrokerConnection(**{**amqp_conninfo, "password": "wrong"}, backend_cls="pika")
    with pytest.raises(pika_exceptions.ProbableAuthenticationError):
        conn.connect()
    assert issubclass(pika_exceptions.ProbableAuthenticationError, conn.connection_errors)


@pytest.mark.timeout(30)
def test_ensure_connection_raises_a_wrong_password_at_once(amqp_conninfo) -> None:
    # Before recoverable_connection_errors was declared, ensure_connection
    # retried a refused login for ever (here: 3 retries would take 6 s).
    conn = BrokerConnection(**{**amqp_conninfo, "password": "wrong"}, backend_cls="pika")
    retries: list[float] = []
    started = time.monotonic()
    with pytest.raises(pika_exceptions.ProbableAuthenticationError):
        conn.ensure_connection(
            errback=lambda exc, interval: retries.append(interval), max_retries=3
        )
    assert retries == []
    assert time.monotonic() - started < 10


@pytest.mark.timeout(30)
def test_ensure_connection_retries_a_refused_port(amqp_conninfo) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    conn = BrokerConnection(**{**amqp_conninfo, "port": port}, backend_cls="pika")
    retries: list[float] = []
    with pytest.raises(pikachu.PikaConnectError):
        conn.ensure_connection(
            errback=lambda exc, interval: retries.append(interval),
            max_retries=2,
            interval_start=0.01,
            interval_step=0.01,
        )
    assert len(retries) == 2


def test_connect_replaces_a_lost_connection(conn: BrokerConnection) -> None:
    first = conn.connect()
    first.pika_connection.close()  # as if the broker had gone
    assert not first.connected
    second = conn.connect()
    assert second is not first
    assert second.connected
    assert conn.create_backend().queue_exists("amq.nonexistent.carrot") is False


# -- carrot.messaging on pika -----------------------------------------------


def test_publisher_consumer_round_trip(conn: BrokerConnection, unique: str, amqp_cleanup) -> None:
    queue, exchange = amqp_cleanup.queue(f"{unique}.q"), amqp_cleanup.exchange(f"{unique}.x")
    consumer = Consumer(conn, queue=queue, exchange=exchange, routing_key="rk")
    publisher = Publisher(conn, exchange=exchange, routing_key="rk")
    try:
        publisher.send({"n": 1}, priority=2)
        message = get_within(consumer.backend, queue)
        assert message.payload == {"n": 1}
        assert message.properties["priority"] == 2
        message.ack()
        seen: list[Any] = []
        consumer.register_callback(lambda data, m: (seen.append(data), m.ack()))
        consumer.consume()
        for i in range(3):
            publisher.send(i)
        drain_until(conn, lambda: len(seen) == 3)
        assert seen == [0, 1, 2]
        publisher.send("w")
        assert len(consumer.wait(limit=1)) == 1
        assert seen[-1] == "w"
    finally:
        consumer.close()
        publisher.close()


def test_iterconsume_ends_after_close(conn: BrokerConnection, unique: str, amqp_cleanup) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    exchange = amqp_cleanup.exchange(f"{unique}.x")
    consumer = Consumer(conn, queue=queue, exchange=exchange, routing_key=queue)
    publisher = Publisher(conn, exchange=exchange, routing_key=queue, backend=consumer.backend)
    seen: list[Any] = []

    def callback(data: Any, message: Any) -> None:
        seen.append(data)
        message.ack()
        if data == "stop":
            consumer.close()

    consumer.register_callback(callback)
    publisher.send("go")
    publisher.send("stop")
    for steps, value in enumerate(consumer.iterconsume(), 1):
        assert value
        assert steps <= 10
    assert seen == ["go", "stop"]
    assert consumer._closed


def test_consumer_set_round_trip(conn: BrokerConnection, unique: str, amqp_cleanup) -> None:
    exchange = amqp_cleanup.exchange(f"{unique}.x")
    names = [amqp_cleanup.queue(f"{unique}.{n}") for n in "abc"]
    from_dict = {name: {"exchange": exchange, "binding_key": name} for name in names}
    cset = ConsumerSet(conn, from_dict=from_dict)
    publisher = Publisher(conn, exchange=exchange, backend=cset.backend)
    got: list[Any] = []
    cset.register_callback(
        lambda data, m: (got.append((m.delivery_info["routing_key"], data)), m.ack())
    )
    try:
        it = cset.iterconsume()
        for name in names:
            publisher.send(name[-1], routing_key=name)
        for _ in range(3):
            assert next(it)
        assert sorted(got) == sorted((name, name[-1]) for name in names)
        cset.cancel_by_queue(names[0])
        publisher.send("cancelled", routing_key=names[0])
        publisher.send("live", routing_key=names[1])
        drain_until(conn, lambda: len(got) == 4)
        assert got[-1] == (names[1], "live")
        assert ready_becomes(names[0], 1) == 1
    finally:
        cset.close()


# -- interop with the default backend ----------------------------------------


def test_default_backend_to_pika(amqp_conninfo, unique: str, amqp_cleanup) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    with BrokerConnection(**amqp_conninfo) as amqp_conn:
        sender = amqp_conn.create_backend()
        sender.queue_declare(queue, True, False, False)  # as Consumer declares it
        message = sender.prepare_message(
            b'{"k": [1, 2]}',
            2,
            priority=4,
            content_type="application/json",
            content_encoding="utf-8",
        )
        sender.publish(message, "", queue, headers={"h": "v", "n": 3})
        sender.close()
    with BrokerConnection(**amqp_conninfo, backend_cls="pika") as pika_conn:
        consumer = Consumer(pika_conn, queue=queue)
        got: list[Any] = []
        consumer.register_callback(lambda data, m: (got.append((data, m)), m.ack()))
        consumer.consume()
        drain_until(pika_conn, lambda: got)
        data, received = got[0]
        assert data == {"k": [1, 2]}
        assert received.body == b'{"k": [1, 2]}'
        assert (received.content_type, received.content_encoding) == ("application/json", "utf-8")
        assert received.properties["delivery_mode"] == 2
        assert received.properties["priority"] == 4
        assert received.headers == {"h": "v", "n": 3}
        consumer.close()


def test_pika_to_default_backend(amqp_conninfo, unique: str, amqp_cleanup) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    with BrokerConnection(**amqp_conninfo, backend_cls="syncpika") as pika_conn:
        sender = pika_conn.create_backend()
        sender.queue_declare(queue, True, False, False)  # as Consumer declares it
        publisher = Publisher(pika_conn, exchange="", routing_key=queue, backend=sender)
        publisher.send({"k": "v"}, priority=1, delivery_mode="transient")
        sender.publish(sender.prepare_message(b"raw", 1), "", queue, headers={"x": 1})
        sender.close()
    with BrokerConnection(**amqp_conninfo) as amqp_conn:
        consumer = Consumer(amqp_conn, queue=queue)
        first = get_within(consumer.backend, queue, no_ack=True)
        assert first.payload == {"k": "v"}
        assert first.content_type == "application/json"
        assert first.properties["delivery_mode"] == 1
        assert first.properties["priority"] == 1
        second = get_within(consumer.backend, queue, no_ack=True)
        assert second.body == b"raw"
        assert second.headers == {"x": 1}
        consumer.close()


# -- TLS (through the py-amqp tests' proxy) ----------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[tuple[TLSProxy, str]]:
    """(proxy, CA file) of a TLS proxy in front of RabbitMQ."""
    pytest.importorskip("cryptography")
    ca, cert, key = _make_certificates(tmp_path_factory.mktemp("tls"))
    proxy = TLSProxy(cert, key)
    try:
        yield proxy, ca
    finally:
        proxy.close()


def tls_round_trip(conn: BrokerConnection, queue: str) -> bytes:
    backend = conn.create_backend()
    backend.queue_declare(queue, False, False, True)
    send(backend, queue, b"over tls")
    body = get_within(backend, queue, no_ack=True).body
    backend.close()
    return body


def test_tls_with_an_ssl_context(tls, amqp_conninfo, unique, amqp_cleanup) -> None:
    proxy, ca = tls
    before = proxy.handshakes
    context = ssl.create_default_context(cafile=ca)
    info = {**amqp_conninfo, "hostname": "localhost", "port": proxy.port, "ssl": context}
    with BrokerConnection(**info, backend_cls="pika") as conn:
        assert tls_round_trip(conn, amqp_cleanup.queue(f"{unique}.q")) == b"over tls"
    assert proxy.handshakes > before


def test_tls_with_a_dict_of_options(tls, amqp_conninfo, unique, amqp_cleanup) -> None:
    proxy, ca = tls
    info = {**amqp_conninfo, "port": proxy.port, "ssl": {"ca_certs": ca}}
    with BrokerConnection(**info, backend_cls="pika") as conn:
        assert tls_round_trip(conn, amqp_cleanup.queue(f"{unique}.q")) == b"over tls"


def test_tls_true_verifies_against_the_system_cas(tls, amqp_conninfo) -> None:
    proxy, _ = tls
    info = {**amqp_conninfo, "port": proxy.port, "ssl": True, "connect_timeout": 5}
    conn = BrokerConnection(**info, backend_cls="pika")
    with pytest.raises(conn.connection_errors):
        conn.connect()  # the test CA is not a system CA
