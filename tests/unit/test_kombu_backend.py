"""carrot.backends.kombu_transport on kombu's in-process memory transport (no sockets)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from carrot.backends import get_backend_cls

# kombu is an extra (carrot[kombu]): without it there is nothing here to test.
pytest.importorskip("kombu", reason="kombu is not installed (pip install carrot[kombu])")

from carrot.backends import _kombu_connection
from carrot.backends._kombu_seam import _MemoryTransport, _RedisTransport
from carrot.backends.kombu_transport import (
    Backend,
    Message,
    RedisBackend,
    UnsupportedExchangeTypeError,
)
from carrot.connection import BrokerConnection
from carrot.exceptions import CarrotError, ClientNotInstalled, MissingConnectionSetting
from carrot.messaging import Consumer, ConsumerSet, Publisher


@pytest.fixture
def conn() -> Iterator[BrokerConnection]:
    connection = BrokerConnection(backend_cls="kombu")
    try:
        yield connection
    finally:
        connection.close()


class Queues:
    """Queue names for one test, deleted afterwards (the memory transport is process-wide)."""

    def __init__(self, backend: Backend, prefix: str) -> None:
        self.backend = backend
        self.prefix = prefix
        self.names: list[str] = []

    def __call__(self, suffix: str) -> str:
        name = f"{self.prefix}.{suffix}"
        self.names.append(name)
        return name


@pytest.fixture
def backend(conn: BrokerConnection) -> Iterator[Backend]:
    b = conn.create_backend()
    yield b
    b.close()


@pytest.fixture
def queues(conn: BrokerConnection, unique: str) -> Iterator[Queues]:
    cleaner = conn.create_backend()
    q = Queues(cleaner, unique)
    yield q
    for name in q.names:
        cleaner.queue_delete(name)
    cleaner.close()


def declare(backend: Backend, exchange: str, type_: str, bindings: dict[str, str]) -> None:
    backend.exchange_declare(exchange, type_, False, False)
    for queue, key in bindings.items():
        backend.queue_declare(queue, False, False, False)
        backend.queue_bind(queue, exchange, key)


def send(backend: Backend, body: bytes, exchange: str, key: str, **kwargs: Any) -> None:
    message = backend.prepare_message(body, 2, content_type="text/plain", content_encoding="utf-8")
    backend.publish(message, exchange, key, **kwargs)


def drain(backend: Backend, queue: str, limit: int = 20) -> list[bytes]:
    bodies = []
    for _ in range(limit):
        message = backend.get(queue)
        if message is None:
            break
        message.ack()
        bodies.append(message.body)
    return bodies


# -- classes and settings ------------------------------------------------------


def test_aliases_resolve() -> None:
    assert get_backend_cls("kombu") is Backend
    assert get_backend_cls("redis") is RedisBackend
    assert issubclass(RedisBackend, Backend)


def test_error_tuples_are_class_attributes() -> None:
    for cls in (Backend, RedisBackend):
        assert OSError in cls.connection_errors or any(
            issubclass(OSError, e) for e in cls.connection_errors
        )
        assert UnsupportedExchangeTypeError in cls.channel_errors
    assert BrokerConnection(backend_cls="kombu").channel_errors == tuple(Backend.channel_errors)
    assert KeyError not in RedisBackend.recoverable_connection_errors


def test_redis_default_port_and_host() -> None:
    assert BrokerConnection(hostname="h", backend_cls="redis").host == "h:6379"
    assert BrokerConnection(hostname="h", backend_cls="redis").info()["port"] == 6379


def test_memory_transport_is_carrots(conn: BrokerConnection) -> None:
    assert conn.connection.transport_cls is _MemoryTransport


def test_url_in_hostname_picks_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    # Build the kombu connection for a Redis URL without connecting.
    import kombu

    monkeypatch.setattr(kombu.Connection, "ensure_connection", lambda self, **kw: self)
    conn = BrokerConnection(hostname="redis://:s3cret-pw@redis.example:6390/3", backend_cls="kombu")
    kconn = conn.create_backend().establish_connection()
    assert kconn.transport_cls is _RedisTransport
    assert (kconn.hostname, kconn.port, kconn.virtual_host) == ("redis.example", 6390, "3")
    assert kconn.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(kconn)
    assert "s3cret-pw" not in kconn.as_uri()


def test_password_in_url_hostname_not_in_connection_repr() -> None:
    conn = BrokerConnection(hostname="redis://:pw-in-url@redis.example:6379/0", backend_cls="redis")
    assert "pw-in-url" not in repr(conn)
    assert "redis.example:6379/0" in repr(conn)


def test_fields_build_the_redis_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import kombu

    monkeypatch.setattr(kombu.Connection, "ensure_connection", lambda self, **kw: self)
    conn = BrokerConnection(
        hostname="redis.example", password="pw-xyz", virtual_host="/", backend_cls="redis"
    )
    kconn = conn.create_backend().establish_connection()
    assert kconn.transport_cls is _RedisTransport
    assert (kconn.hostname, kconn.port) == ("redis.example", 6379)
    assert kconn.transport_options["socket_connect_timeout"] == conn.connect_timeout
    assert "pw-xyz" not in repr(kconn)


def test_password_not_in_memory_connection_repr() -> None:
    conn = BrokerConnection(userid="u", password="hunter2-secret", backend_cls="kombu")
    try:
        assert "hunter2-secret" not in repr(conn.connection)
        assert "hunter2-secret" not in repr(conn)
    finally:
        conn.close()


def test_redis_without_client_raises_client_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kombu_connection, "kombu_redis", None)
    conn = BrokerConnection(hostname="127.0.0.1", backend_cls="redis")
    with pytest.raises(ClientNotInstalled) as excinfo:
        conn.create_backend().establish_connection()
    assert isinstance(excinfo.value, ImportError)
    assert "pip install redis" in str(excinfo.value)


def test_module_imports_without_the_redis_client() -> None:
    # A fresh interpreter where ``import redis`` fails, as when it is not installed.
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import carrot.backends.kombu_transport as m\n"
        "from carrot.connection import BrokerConnection\n"
        "assert OSError in m.RedisBackend.connection_errors\n"
        "try:\n"
        "    BrokerConnection(hostname='h', backend_cls='redis').connect()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install redis" in result.stdout


def test_redis_without_hostname_is_a_missing_setting() -> None:
    conn = BrokerConnection(backend_cls="redis")
    with pytest.raises(MissingConnectionSetting, match="hostname"):
        conn.create_backend().establish_connection()


# -- routing -----------------------------------------------------------------


def test_direct_routing_gives_each_queue_its_own_copy(backend: Backend, queues: Queues) -> None:
    a, b, c = queues("a"), queues("b"), queues("c")
    ex = queues.prefix + ".direct"
    declare(backend, ex, "direct", {a: "k", b: "k", c: "other"})
    send(backend, b"one", ex, "k")
    ma, mb = backend.get(a), backend.get(b)
    assert (ma.body, mb.body) == (b"one", b"one")
    assert ma.delivery_tag != mb.delivery_tag
    assert backend.get(c) is None
    ma.ack()
    mb.ack()


def test_topic_routing(backend: Backend, queues: Queues) -> None:
    star, hash_, exact = queues("star"), queues("hash"), queues("exact")
    ex = queues.prefix + ".topic"
    declare(backend, ex, "topic", {star: "news.*", hash_: "news.#", exact: "sport.x"})
    send(backend, b"1", ex, "news.uk")
    send(backend, b"2", ex, "news.uk.london")
    send(backend, b"3", ex, "sport.x")
    assert drain(backend, star) == [b"1"]
    assert drain(backend, hash_) == [b"1", b"2"]
    assert drain(backend, exact) == [b"3"]


def test_fanout_routing(backend: Backend, queues: Queues) -> None:
    a, b = queues("a"), queues("b")
    ex = queues.prefix + ".fanout"
    declare(backend, ex, "fanout", {a: "", b: "ignored"})
    send(backend, b"all", ex, "whatever")
    assert drain(backend, a) == [b"all"]
    assert drain(backend, b) == [b"all"]


def test_default_exchange_routes_by_queue_name(backend: Backend, queues: Queues) -> None:
    q = queues("plain")
    backend.queue_declare(q, False, False, False)
    send(backend, b"x", "", q)
    assert drain(backend, q) == [b"x"]


def test_unknown_exchange_type_is_unsupported(backend: Backend, unique: str) -> None:
    with pytest.raises(UnsupportedExchangeTypeError, match="x-delayed-message") as excinfo:
        backend.exchange_declare(unique, "x-delayed-message", False, False)
    assert isinstance(excinfo.value, (CarrotError, NotImplementedError))
    assert "headers" in str(excinfo.value)
    # The backend is still usable.
    assert backend.queue_exists(unique) is False


def test_headers_routing(backend: Backend, queues: Queues) -> None:
    pdf, zip_all, any_, bare = queues("pdf"), queues("zip"), queues("any"), queues("bare")
    ex = queues.prefix + ".headers"
    backend.exchange_declare(ex, "headers", False, False)
    bindings = {
        pdf: {"format": "pdf"},
        zip_all: {"format": "zip", "size": "big", "x-match": "all"},
        any_: {"format": "txt", "lang": "en", "x-match": "any"},
        bare: {"flag": None},
    }
    for queue, arguments in bindings.items():
        backend.queue_declare(queue, False, False, False)
        backend.queue_bind(queue, ex, "", arguments=arguments)
    send(backend, b"p", ex, "", headers={"format": "pdf"})
    send(backend, b"z-small", ex, "", headers={"format": "zip", "size": "small"})
    send(backend, b"z-big", ex, "", headers={"format": "zip", "size": "big", "flag": 1})
    send(backend, b"en", ex, "", headers={"lang": "en"})
    send(backend, b"none", ex, "")
    assert drain(backend, pdf) == [b"p"]
    assert drain(backend, zip_all) == [b"z-big"]
    assert drain(backend, any_) == [b"en"]
    assert drain(backend, bare) == [b"z-big"]


def test_bind_to_undeclared_exchange_is_a_channel_error(backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    with pytest.raises(Backend.channel_errors):
        backend.queue_bind(q, queues.prefix + ".nope", "k")


# -- get, ack, reject, requeue -------------------------------------------------


def test_get_message_fields(backend: Backend, queues: Queues) -> None:
    q = queues("q")
    ex = queues.prefix + ".ex"
    declare(backend, ex, "direct", {q: "rk"})
    assert backend.get(q) is None
    send(backend, b'{"a": 1}', ex, "rk", headers={"h": "v"})
    send(backend, b"second", ex, "rk")
    message = backend.get(q)
    assert isinstance(message, Message)
    assert message.body == b'{"a": 1}'
    assert (message.content_type, message.content_encoding) == ("text/plain", "utf-8")
    assert message.headers == {"h": "v"}
    assert message.properties["delivery_mode"] == 2
    info = message.delivery_info
    assert info["exchange"] == ex
    assert info["routing_key"] == "rk"
    assert info["redelivered"] is False
    assert info["delivery_tag"] == message.delivery_tag
    assert info["message_count"] == 1
    message.ack()
    assert message.acknowledged
    assert drain(backend, q) == [b"second"]


def test_payload_decodes_json(backend: Backend, queues: Queues) -> None:
    q = queues("json")
    backend.queue_declare(q, False, False, False)
    message = backend.prepare_message(
        b'{"n": [1, 2]}', 1, content_type="application/json", content_encoding="utf-8"
    )
    backend.publish(message, "", q)
    assert backend.get(q).payload == {"n": [1, 2]}


def test_empty_body_is_bytes(backend: Backend, queues: Queues) -> None:
    q = queues("empty")
    backend.queue_declare(q, False, False, False)
    send(backend, b"", "", q)
    assert backend.get(q).body == b""


def test_prepared_message_can_be_sent_twice(backend: Backend, queues: Queues) -> None:
    q = queues("twice")
    backend.queue_declare(q, False, False, False)
    message = backend.prepare_message(b"same", 2, content_type="text/plain")
    backend.publish(message, "", q)
    backend.publish(message, "", q)
    assert drain(backend, q) == [b"same", b"same"]


def test_reject_drops(backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    send(backend, b"bad", "", q)
    backend.get(q).reject()
    assert backend.get(q) is None


def test_requeue_goes_back_to_the_front_of_its_queue_only(backend: Backend, queues: Queues) -> None:
    a, b = queues("a"), queues("b")
    ex = queues.prefix + ".fan"
    declare(backend, ex, "fanout", {a: "", b: ""})
    send(backend, b"first", ex, "")
    send(backend, b"second", ex, "")
    message = backend.get(a)
    assert message.body == b"first"
    message.requeue()
    again = backend.get(a)
    assert again.body == b"first"
    assert again.delivery_info["redelivered"] is True
    again.ack()
    assert drain(backend, a) == [b"second"]
    # The copy in the other queue was not duplicated by the requeue.
    assert drain(backend, b) == [b"first", b"second"]


def test_message_state_errors(backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    send(backend, b"x", "", q)
    message = backend.get(q)
    message.ack()
    with pytest.raises(message.MessageStateError):
        message.requeue()


def test_unacked_messages_return_to_their_queue_on_close(
    conn: BrokerConnection, queues: Queues
) -> None:
    a, b = queues("a"), queues("b")
    ex = queues.prefix + ".fan"
    first = conn.create_backend()
    declare(first, ex, "fanout", {a: "", b: ""})
    send(first, b"keep me", ex, "")
    assert first.get(a).body == b"keep me"
    first.close()
    second = conn.create_backend()
    message = second.get(a)
    assert message.body == b"keep me"
    assert message.delivery_info["redelivered"] is True
    message.ack()
    assert drain(second, a) == []
    assert drain(second, b) == [b"keep me"]
    second.close()


def test_no_ack_get_is_not_restored(conn: BrokerConnection, queues: Queues) -> None:
    q = queues("q")
    first = conn.create_backend()
    first.queue_declare(q, False, False, False)
    send(first, b"gone", "", q)
    assert first.get(q, no_ack=True).body == b"gone"
    first.close()
    second = conn.create_backend()
    assert second.get(q) is None
    second.close()


# -- purge, delete, exists ------------------------------------------------------


def test_purge_and_delete_count(backend: Backend, queues: Queues) -> None:
    q = queues("q")
    ex = queues.prefix + ".ex"
    declare(backend, ex, "direct", {q: "k"})
    for body in (b"1", b"2", b"3"):
        send(backend, body, ex, "k")
    assert backend.queue_purge(q) == 3
    assert backend.purge(q) == 0
    send(backend, b"4", ex, "k")
    send(backend, b"5", ex, "k")
    assert backend.queue_delete(q, if_empty=True) == 0
    assert backend.queue_exists(q)
    assert backend.queue_delete(q) == 2
    assert backend.queue_exists(q) is False
    # Deleted with its binding: nothing is routed to it any more.
    send(backend, b"6", ex, "k")
    assert backend.queue_exists(q) is False


def test_delete_unbound_queue(backend: Backend, queues: Queues) -> None:
    q = queues("lonely")
    backend.queue_declare(q, False, False, False)
    send(backend, b"x", "", q)
    assert backend.queue_delete(q) == 1
    assert backend.queue_exists(q) is False


def test_queue_exists_missing_leaves_backend_usable(backend: Backend, queues: Queues) -> None:
    q = queues("q")
    assert backend.queue_exists(q) is False
    backend.queue_declare(q, False, False, False)
    assert backend.queue_exists(q) is True
    send(backend, b"x", "", q)
    assert drain(backend, q) == [b"x"]


def test_warn_if_exists(backend: Backend, queues: Queues) -> None:
    from carrot.backends.base import QueueAlreadyExistsWarning

    q = queues("q")
    backend.queue_declare(q, False, False, False, warn_if_exists=True)
    with pytest.warns(QueueAlreadyExistsWarning, match=q):
        backend.queue_declare(q, False, False, False, warn_if_exists=True)


# -- consuming ----------------------------------------------------------------


def test_consume_with_callbacks(conn: BrokerConnection, backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    received: list[Message] = []
    backend.declare_consumer(
        q, False, lambda raw: received.append(backend.message_to_python(raw)), "tag-1"
    )
    for body in (b"a", b"b", b"c"):
        send(backend, body, "", q)
    steps = list(backend.consume(limit=3))
    assert steps == [True, True, True]
    assert [m.body for m in received] == [b"a", b"b", b"c"]
    assert {m.delivery_info["consumer_tag"] for m in received} == {"tag-1"}
    for message in received:
        message.ack()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)


def test_consume_ends_when_closed(backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    backend.declare_consumer(q, True, lambda raw: backend.close(), "tag")
    send(backend, b"x", "", q)
    send(backend, b"y", "", q)
    assert list(backend.consume()) == [True]


def test_drain_events_timeout_without_consumers(conn: BrokerConnection) -> None:
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)


def test_cancel_stops_delivery(conn: BrokerConnection, backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    received: list[Any] = []
    backend.declare_consumer(q, True, received.append, "tag")
    backend.cancel("tag")
    send(backend, b"x", "", q)
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)
    assert received == []
    assert drain(backend, q) == [b"x"]


def test_flow_pauses_and_resumes(conn: BrokerConnection, backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    received: list[Any] = []
    backend.declare_consumer(q, True, received.append, "tag")
    backend.flow(False)
    send(backend, b"x", "", q)
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)
    assert received == []
    backend.flow(True)
    conn.drain_events(timeout=1)
    assert [r.body for r in received] == [b"x"]


def test_qos_prefetch_count(conn: BrokerConnection, backend: Backend, queues: Queues) -> None:
    q = queues("q")
    backend.queue_declare(q, False, False, False)
    backend.qos(0, 1)
    received: list[Message] = []
    backend.declare_consumer(
        q, False, lambda raw: received.append(backend.message_to_python(raw)), "tag"
    )
    send(backend, b"1", "", q)
    send(backend, b"2", "", q)
    conn.drain_events(timeout=1)
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)
    assert [m.body for m in received] == [b"1"]
    received[0].ack()
    conn.drain_events(timeout=1)
    assert [m.body for m in received] == [b"1", b"2"]
    received[1].ack()


# -- carrot.messaging on the memory transport ----------------------------------


def test_publisher_consumer_round_trip(conn: BrokerConnection, queues: Queues) -> None:
    q = queues("q")
    ex = queues.prefix + ".ex"
    consumer = Consumer(conn, queue=q, exchange=ex, routing_key="rk", exchange_type="topic")
    publisher = Publisher(conn, exchange=ex, routing_key="rk", exchange_type="topic")
    publisher.send({"hello": "world"})
    publisher.send([1, 2, 3], serializer="pickle")
    first = consumer.fetch()
    assert first.payload == {"hello": "world"}
    first.ack()
    second = consumer.fetch()
    assert second.payload == [1, 2, 3]
    second.ack()
    assert consumer.fetch() is None
    publisher.close()
    consumer.close()


def test_consumer_callbacks_and_iterconsume(conn: BrokerConnection, queues: Queues) -> None:
    q = queues("q")
    ex = queues.prefix + ".ex"
    consumer = Consumer(conn, queue=q, exchange=ex, routing_key="rk")
    got: list[Any] = []

    def on_message(data: Any, message: Any) -> None:
        got.append(data)
        message.ack()

    consumer.register_callback(on_message)
    publisher = Publisher(conn, exchange=ex, routing_key="rk")
    for i in range(3):
        publisher.send({"i": i})
    it = consumer.iterconsume(limit=3)
    assert list(it) == [True, True, True]
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}]
    consumer.close()
    publisher.close()


def test_consumer_set_round_trip(conn: BrokerConnection, queues: Queues) -> None:
    a, b = queues("a"), queues("b")
    ex = queues.prefix + ".ex"
    publisher = Publisher(conn, exchange=ex, exchange_type="direct")
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
    publisher.send("for a", routing_key="to-a")
    publisher.send("for b", routing_key="to-b")
    for _ in range(2):
        assert next(it)
    assert sorted(got) == [("to-a", "for a"), ("to-b", "for b")]
    cset.close()
    publisher.close()


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:5672//", "pyamqp://h//"])
def test_kombu_amqp_transports_are_refused_before_connecting(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carrot.backends.kombu_transport import UnsupportedTransportError

    def no_socket(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("opened a socket")

    monkeypatch.setattr(socket, "create_connection", no_socket)
    conn = BrokerConnection(hostname=url, backend_cls="kombu")
    with pytest.raises(UnsupportedTransportError) as excinfo:
        conn.connect()
    assert isinstance(excinfo.value, ValueError)
    assert "backend_cls='amqp'" in str(excinfo.value)
    assert "guest:guest" not in str(excinfo.value)


def test_memory_transport_is_in_process(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    assert backend.in_process
    assert backend.server_description() == "kombu memory transport"
    assert backend.exchange_exists("anything") is None
    redis = BrokerConnection(hostname="127.0.0.1", backend_cls="redis").create_backend()
    assert not redis.in_process


def test_importing_the_kombu_backend_loads_no_carrot_amqp_backend() -> None:
    code = (
        "import sys\n"
        "import carrot.backends.kombu_transport\n"
        "print(sorted(m for m in sys.modules"
        " if m == 'carrot.backends.pyamqplib' or m.startswith('carrot.backends._amqp')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
