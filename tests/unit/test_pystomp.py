"""Unit tests of the STOMP backend, on a fake stomp.py (no socket)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from carrot.backends import get_backend_cls, pystomp
from carrot.backends.pystomp import (
    Backend,
    Message,
    StompConnectionError,
    StompError,
    consume_destination,
    destination_info,
    publish_destination,
)
from carrot.connection import BrokerConnection
from carrot.exceptions import ClientNotInstalled, MissingConnectionSetting


class Frame:
    def __init__(self, cmd: str, headers: dict[str, str] | None = None, body: Any = b"") -> None:
        self.cmd = cmd
        self.headers = headers or {}
        self.body = body


class FakeBroker:
    """What the fake connections talk to: records frames, holds messages per destination."""

    def __init__(self) -> None:
        self.connections: list[FakeStompConnection] = []
        self.pending: dict[str, list[tuple[bytes, dict[str, str]]]] = {}
        self.refuse_login = False
        self.error_on_subscribe: str | None = None
        self.error_names_receipt = False
        self._tags = iter(range(1, 1_000_000))

    def frames(self, cmd: str) -> list[tuple[FakeStompConnection, dict[str, Any]]]:
        return [(conn, frame) for conn in self.connections for c, frame in conn.sent if c == cmd]


class FakeStompConnection:
    def __init__(self, broker: FakeBroker, host_and_ports: Any, **kwargs: Any) -> None:
        self.broker = broker
        self.host_and_ports = host_and_ports
        self.kwargs = kwargs
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.listener: Any = None
        self.connected = False
        self.transport = SimpleNamespace(disconnect_socket=self._drop, socket=self)
        #: sub_id -> (destination, prefetch) of subscriptions that take one at a time.
        self.one_at_a_time: dict[str, str] = {}
        #: delivery tag -> (sub_id, destination, body, headers)
        self.delivered: dict[str, tuple[str, str, bytes, dict[str, str]]] = {}
        broker.connections.append(self)

    def _drop(self) -> None:
        self.connected = False
        self.dropped = True

    def fileno(self) -> int:  # the transport's socket, for the backend's check
        return -1 if getattr(self, "dropped", False) else 3

    def set_listener(self, name: str, listener: Any) -> None:
        self.listener = listener

    def set_ssl(self, **kwargs: Any) -> None:
        self.sent.append(("SSL", kwargs))

    def is_connected(self) -> bool:
        return self.connected

    def connect(self, username: Any, passcode: Any, wait: bool = False) -> None:
        self.sent.append(("CONNECT", {"login": username, "passcode": passcode}))
        if self.broker.refuse_login:
            self.listener.on_error(
                Frame("ERROR", {"message": "Bad CONNECT"}, b"Access refused for user")
            )
            return
        self.connected = True
        self.listener.on_connected(
            Frame("CONNECTED", {"version": "1.2", "server": "RabbitMQ/3.10.7"})
        )

    def subscribe(self, destination: str, sub_id: str, ack: str = "auto", headers=None) -> None:
        headers = dict(headers or {})
        self.sent.append(
            ("SUBSCRIBE", {"destination": destination, "id": sub_id, "ack": ack, **headers})
        )
        if self.broker.error_on_subscribe:
            error_headers = {"message": self.broker.error_on_subscribe}
            if self.broker.error_names_receipt:
                error_headers["receipt-id"] = headers["receipt"]
            self.listener.on_error(Frame("ERROR", error_headers))
            return
        self.listener.on_receipt(Frame("RECEIPT", {"receipt-id": headers["receipt"]}))
        pending = self.broker.pending.get(destination, [])
        if headers.get("prefetch-count") == "1":
            self.one_at_a_time[sub_id] = destination
        count = int(headers.get("prefetch-count", 0)) or len(pending)
        for body, extra in pending[:count]:
            self.deliver(sub_id, destination, body, **extra)
        del pending[:count]

    def deliver(self, sub_id: str, destination: str, body: bytes, **headers: str) -> str:
        tag = f"T_{sub_id}@@session@@{next(self.broker._tags)}"
        frame_headers = {
            "subscription": sub_id,
            "destination": destination,
            "message-id": tag,
            "ack": tag,
            "redelivered": "false",
            **headers,
        }
        self.delivered[tag] = (sub_id, destination, body, headers)
        self.listener.on_message(Frame("MESSAGE", frame_headers, body))
        return tag

    def _settled(self, tag: str, requeue: bool) -> None:
        # Like RabbitMQ with prefetch-count 1: the next message follows at once.
        sub_id, destination, body, headers = self.delivered.pop(tag)
        pending = self.broker.pending.setdefault(destination, [])
        if requeue:
            pending.insert(0, (body, {**headers, "redelivered": "true"}))
        if sub_id in self.one_at_a_time and pending:
            body, extra = pending.pop(0)
            self.deliver(sub_id, destination, body, **extra)

    def unsubscribe(self, sub_id: str) -> None:
        self.sent.append(("UNSUBSCRIBE", {"id": sub_id}))

    def send(self, destination: str, body: Any, headers=None) -> None:
        self.sent.append(("SEND", {"destination": destination, "body": body, **(headers or {})}))

    def ack(self, tag: str) -> None:
        self.sent.append(("ACK", {"id": tag}))
        if tag in self.delivered:
            self._settled(tag, False)

    def nack(self, tag: str, requeue: str = "true") -> None:
        self.sent.append(("NACK", {"id": tag, "requeue": requeue}))
        if tag in self.delivered:
            self._settled(tag, requeue == "true")

    def disconnect(self) -> None:
        self.sent.append(("DISCONNECT", {}))
        self.connected = False
        self.listener.on_disconnected()


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    module = SimpleNamespace(
        Connection12=lambda *args, **kwargs: FakeStompConnection(fake, *args, **kwargs)
    )
    monkeypatch.setattr(pystomp, "_import_stomp", lambda: module)
    return fake


@pytest.fixture
def conn(broker: FakeBroker):
    connection = BrokerConnection(
        hostname="stomp.example", userid="guest", password="s3cret", backend_cls="stomp"
    )
    yield connection
    connection.close()


def _sub_id(broker: FakeBroker, destination: str) -> tuple[FakeStompConnection, str]:
    for stomp_conn, frame in broker.frames("SUBSCRIBE"):
        if frame["destination"] == destination:
            return stomp_conn, frame["id"]
    raise AssertionError(f"no SUBSCRIBE to {destination}")


# -- destinations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "routing_key", "expected"),
    [
        ("tasks", "task.add", "/exchange/tasks/task.add"),
        ("amq.fanout", "", "/exchange/amq.fanout"),
        ("", "celery", "/amq/queue/celery"),
        (None, "celery", "/amq/queue/celery"),
        ("a/b", "x/y", "/exchange/a%2Fb/x%2Fy"),
        ("/topic/news", "ignored", "/topic/news"),  # compat: carrot 0.10 sent to the exchange
        ("", "/queue/direct", "/queue/direct"),
        ("amq.headers", {"format": "pdf"}, "/exchange/amq.headers"),
    ],
)
def test_publish_destination(exchange: Any, routing_key: Any, expected: str) -> None:
    assert publish_destination(exchange, routing_key) == expected


def test_consume_destination() -> None:
    assert consume_destination("celery") == "/queue/celery"
    assert consume_destination("celery", exists=True) == "/amq/queue/celery"
    assert consume_destination("a/b", exists=True) == "/amq/queue/a%2Fb"
    assert consume_destination("/queue/raw", exists=True) == "/queue/raw"


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/exchange/tasks/task.add", ("tasks", "task.add")),
        ("/exchange/amq.fanout", ("amq.fanout", "")),
        ("/exchange/a%2Fb/x%2Fy", ("a/b", "x/y")),
        ("/queue/celery", ("", "celery")),
        ("/amq/queue/celery", ("", "celery")),
        ("/topic/news.uk", ("amq.topic", "news.uk")),
        ("weird", ("", "weird")),
        (None, ("", "")),
    ],
)
def test_destination_info(destination: Any, expected: tuple[str, str]) -> None:
    assert destination_info(destination) == expected


# -- messages ---------------------------------------------------------------------


def test_prepare_message_headers(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    message = backend.prepare_message("é", 2, priority=5, content_type="text/plain",
                                      content_encoding="latin-1")  # fmt: skip
    assert message == {
        "body": "é".encode("latin-1"),
        "persistent": "true",
        "priority": "5",
        "content-type": "text/plain",
        "content-encoding": "latin-1",
    }
    transient = backend.prepare_message(b"\x00\xff", 1)
    assert transient == {"body": b"\x00\xff", "persistent": "false"}
    # A charset Python does not know falls back to UTF-8 rather than failing.
    assert backend.prepare_message("x", 2, content_encoding="binary")["body"] == b"x"


def test_message_from_frame(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    frame = Frame(
        "MESSAGE",
        {
            "subscription": "s1",
            "destination": "/exchange/tasks/task.add",
            "message-id": "mid-1",
            "ack": "ack-1",
            "redelivered": "true",
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "content-length": "8",
            "persistent": "true",
            "priority": "3",
            "x-trace": "abc",
        },
        b'{"a": 1}',
    )
    message = backend.message_to_python(frame)
    assert isinstance(message, Message)
    assert message.body == b'{"a": 1}'
    assert message.payload == {"a": 1}
    assert message.delivery_tag == "ack-1"  # STOMP 1.2 acks by the ack header
    assert message.delivery_info == {
        "exchange": "tasks",
        "routing_key": "task.add",
        "redelivered": True,
        "delivery_tag": "ack-1",
    }
    assert message.headers == {"x-trace": "abc"}
    assert message.properties == {"delivery_mode": 2, "priority": 3}


def test_message_tag_falls_back_to_message_id(broker: FakeBroker, conn: BrokerConnection) -> None:
    frame = Frame("MESSAGE", {"destination": "/queue/q", "message-id": "mid-7"}, b"")
    message = conn.create_backend().message_to_python(frame)
    assert message.delivery_tag == "mid-7"
    assert message.properties == {"delivery_mode": 1}
    assert message.delivery_info["redelivered"] is False


# -- connection ---------------------------------------------------------------------


def test_connect_sends_login_and_vhost_and_hides_password(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    stomp_conn = conn.connection
    assert stomp_conn.connected
    fake = broker.connections[0]
    assert fake.host_and_ports == [("stomp.example", 61613)]
    assert fake.kwargs["vhost"] == "/"
    assert fake.kwargs["auto_decode"] is False
    assert fake.sent[0] == ("CONNECT", {"login": "guest", "passcode": "s3cret"})
    assert "s3cret" not in repr(stomp_conn)
    assert "s3cret" not in repr(conn)
    assert conn.host == "stomp.example:61613"
    assert stomp_conn.server_properties == {
        "product": "RabbitMQ",
        "version": "3.10.7",
        "platform": "STOMP 1.2",
    }


def test_refused_login_raises_stomp_error(broker: FakeBroker, conn: BrokerConnection) -> None:
    broker.refuse_login = True
    with pytest.raises(StompError, match="Bad CONNECT"):
        conn.connect()
    assert StompError in conn.channel_errors


def test_missing_hostname(broker: FakeBroker) -> None:
    with pytest.raises(MissingConnectionSetting, match="hostname"):
        BrokerConnection(backend_cls="stomp").connect()


def test_connection_errors_include_stomp_py_classes() -> None:
    from stomp import exception

    conn = BrokerConnection(backend_cls="stomp")
    errors = conn.connection_errors
    assert StompConnectionError in errors
    assert exception.ConnectFailedException in errors
    assert exception.NotConnectedException in errors


def test_close_disconnects(broker: FakeBroker, conn: BrokerConnection) -> None:
    stomp_conn = conn.connection
    conn.close()
    assert not stomp_conn.connected
    assert broker.connections[0].sent[-1] == ("DISCONNECT", {})
    with pytest.raises(StompConnectionError):
        stomp_conn.drain_events(timeout=0.1)


# -- publish ------------------------------------------------------------------------


def test_publish_sends_to_the_mapped_destination(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    message = backend.prepare_message(b"{}", 2, content_type="application/json",
                                      content_encoding="utf-8")  # fmt: skip
    backend.publish(message, "tasks", "task.add", headers={"x-id": 7})
    backend.publish(backend.prepare_message(b"", 1), "", "celery")
    backend.publish(backend.prepare_message(b"", 1), "amq.headers", {"format": "pdf"})
    sent = [frame for _, frame in broker.frames("SEND")]
    assert sent[0] == {
        "destination": "/exchange/tasks/task.add",
        "body": b"{}",
        "persistent": "true",
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "x-id": "7",
    }
    assert sent[1]["destination"] == "/amq/queue/celery"
    assert sent[2]["destination"] == "/exchange/amq.headers"
    assert sent[2]["format"] == "pdf"


# -- declarations ---------------------------------------------------------------------


def test_queue_declare_creates_it_on_a_short_connection(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    backend.queue_declare("q1", durable=False, arguments={"x-max-length": 10, "other": 1})
    short, _ = _sub_id(broker, "/queue/q1")
    subscribe = dict(short.sent)["SUBSCRIBE"]
    assert subscribe["durable"] == "false"
    assert subscribe["auto-delete"] == "false"
    assert subscribe["x-max-length"] == "10"
    assert "other" not in subscribe
    assert ("DISCONNECT", {}) in short.sent  # closed: anything delivered goes back
    assert backend.queue_exists("q1")
    # Consumed as an existing queue from now on.
    backend.declare_consumer("q1", False, lambda frame: None, "tag1")
    _sub_id(broker, "/amq/queue/q1")


def test_auto_delete_queue_is_only_remembered(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.queue_declare("tmp", durable=False, auto_delete=True)
    backend.queue_bind("tmp", "amq.topic", "news.#")
    assert broker.frames("SUBSCRIBE") == []
    backend.declare_consumer("tmp", True, lambda frame: None, "tag1")
    _, frame = broker.frames("SUBSCRIBE")[0]
    assert frame["destination"] == "/exchange/amq.topic/news.#"
    assert frame["x-queue-name"] == "tmp"
    assert frame["auto-delete"] == "true"
    assert frame["ack"] == "auto"


def test_queue_bind_subscribes_with_x_queue_name(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    backend.exchange_declare("tasks", "direct", True, False)  # nothing to send
    backend.queue_bind("q2", "tasks", "task.add")
    short, _ = _sub_id(broker, "/exchange/tasks/task.add")
    subscribe = dict(short.sent)["SUBSCRIBE"]
    assert subscribe["x-queue-name"] == "q2"
    assert subscribe["durable"] == "true"
    assert broker.connections == [short]  # the shared connection was not needed
    assert ("DISCONNECT", {}) in short.sent
    assert backend.queue_exists("q2")


# -- consuming ---------------------------------------------------------------------------


def test_drain_events_runs_callbacks_in_the_callers_thread(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    seen: list[tuple[Any, threading.Thread]] = []

    def callback(frame: Any) -> None:
        seen.append((backend.message_to_python(frame), threading.current_thread()))

    backend.declare_consumer("q", False, callback, "tag1")
    stomp_conn, sub_id = _sub_id(broker, "/queue/q")
    # stomp.py delivers on its own thread.
    sender = threading.Thread(target=stomp_conn.deliver, args=(sub_id, "/queue/q", b"hi"))
    sender.start()
    sender.join(5)
    assert seen == []  # nothing runs on the receiver thread
    conn.drain_events(timeout=5)
    assert len(seen) == 1
    message, thread = seen[0]
    assert thread is threading.current_thread()
    assert message.body == b"hi"
    assert message.delivery_info["consumer_tag"] == "tag1"
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)


def test_consume_limit_and_ack(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    messages: list[Any] = []
    backend.declare_consumer(
        "q", False, lambda frame: messages.append(backend.message_to_python(frame)), "tag1"
    )
    stomp_conn, sub_id = _sub_id(broker, "/queue/q")
    tags = [stomp_conn.deliver(sub_id, "/queue/q", b"%d" % i) for i in range(3)]
    assert list(backend.consume(limit=2)) == [True, True]
    assert [m.body for m in messages] == [b"0", b"1"]
    messages[0].ack()
    messages[1].reject()
    next(backend.consume(limit=1))
    messages[2].requeue()
    assert [frame for c, frame in stomp_conn.sent if c in ("ACK", "NACK")] == [
        {"id": tags[0]},
        {"id": tags[1], "requeue": "false"},
        {"id": tags[2], "requeue": "true"},
    ]


def test_qos_sets_prefetch_count(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.qos(0, 4)
    backend.declare_consumer("q", False, lambda frame: None, "tag1")
    backend.declare_consumer("q2", True, lambda frame: None, "tag2")
    frames = {frame["destination"]: frame for _, frame in broker.frames("SUBSCRIBE")}
    assert frames["/queue/q"]["prefetch-count"] == "4"
    assert frames["/queue/q"]["ack"] == "client-individual"
    assert "prefetch-count" not in frames["/queue/q2"]


def test_cancel_waits_for_unsettled_deliveries(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    messages: list[Any] = []
    backend.declare_consumer(
        "q", False, lambda frame: messages.append(backend.message_to_python(frame)), "tag1"
    )
    stomp_conn, sub_id = _sub_id(broker, "/queue/q")
    stomp_conn.deliver(sub_id, "/queue/q", b"held")
    conn.drain_events(timeout=1)
    late = stomp_conn.deliver(sub_id, "/queue/q", b"late")
    backend.cancel("tag1")
    assert not [c for c, _ in stomp_conn.sent if c == "UNSUBSCRIBE"]
    # The late delivery is given back, not handed to a cancelled consumer.
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)
    assert ("NACK", {"id": late, "requeue": "true"}) in stomp_conn.sent
    messages[0].ack()  # ACK is still possible: the subscription is still there
    assert stomp_conn.sent[-2][0] == "ACK"
    assert stomp_conn.sent[-1] == ("UNSUBSCRIBE", {"id": sub_id})
    assert len(messages) == 1


def test_cancel_without_deliveries_unsubscribes_now(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    backend.declare_consumer("q", False, lambda frame: None, "tag1")
    stomp_conn, sub_id = _sub_id(broker, "/queue/q")
    backend.close()
    assert stomp_conn.sent[-1] == ("UNSUBSCRIBE", {"id": sub_id})
    assert list(backend.consume()) == []  # no consumers: nothing to wait for


def test_error_frame_raises_from_drain_events(broker: FakeBroker, conn: BrokerConnection) -> None:
    conn.connect()
    broker.connections[0].listener.on_error(Frame("ERROR", {"message": "not_found"}, b"no queue"))
    with pytest.raises(StompError, match="not_found"):
        conn.drain_events(timeout=1)


@pytest.mark.parametrize("names_receipt", [False, True])
def test_subscribe_error_raises(
    broker: FakeBroker, conn: BrokerConnection, names_receipt: bool
) -> None:
    backend = conn.create_backend()
    broker.error_on_subscribe = "precondition_failed"
    broker.error_names_receipt = names_receipt
    with pytest.raises(StompError, match="precondition_failed"):
        backend.declare_consumer("q", False, lambda frame: None, "tag1")
    assert "tag1" not in backend._consumers
    if names_receipt:  # raised once, where it was asked for
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.05)
    else:  # it may concern anything: drain_events raises it too
        with pytest.raises(StompError, match="precondition_failed"):
            conn.drain_events(timeout=0.05)


def test_lost_connection_raises_connection_error(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    conn.connect()
    broker.connections[0].listener.on_disconnected()
    with pytest.raises(tuple(conn.connection_errors)):
        conn.drain_events(timeout=1)


# -- get / purge ----------------------------------------------------------------------------


def test_get_takes_one_message_on_its_own_connection(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    broker.pending["/queue/q"] = [(b"one", {"content-type": "text/plain"}), (b"two", {})]
    message = backend.get("q")
    assert message.body == b"one"
    assert message.content_type == "text/plain"
    getter, _ = _sub_id(broker, "/queue/q")
    assert broker.connections == [getter]  # not the shared connection
    subscribe = dict(getter.sent)["SUBSCRIBE"]
    assert subscribe["prefetch-count"] == "1"
    assert subscribe["ack"] == "client-individual"
    assert getter.connected  # kept until the message is settled
    message.ack()
    assert getter.sent[-1] == ("ACK", {"id": message.delivery_tag})
    # The broker sent the next one to the same subscription: the next get takes it.
    second = backend.get("q")
    assert second.body == b"two"
    assert second.delivery_info["redelivered"] is False
    assert broker.connections == [getter]
    second.requeue()
    assert getter.sent[-1] == ("NACK", {"id": second.delivery_tag, "requeue": "true"})
    third = backend.get("q", no_ack=True)
    assert third.body == b"two"
    assert third.delivery_info["redelivered"] is True
    assert getter.sent[-1] == ("ACK", {"id": third.delivery_tag})
    backend.close()
    assert not getter.connected


def test_concurrent_gets_use_a_connection_each(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.get_timeout = 0.05
    broker.pending["/queue/q"] = [(b"one", {}), (b"two", {})]
    first, second = backend.get("q"), backend.get("q")
    assert (first.body, second.body) == (b"one", b"two")
    assert len(broker.connections) == 2
    first.ack()
    second.ack()
    # One stays for the next get; the other is closed.
    assert sorted(c.connected for c in broker.connections) == [False, True]
    assert backend.get("q") is None  # empty: the kept one closes too
    assert [c.connected for c in broker.connections] == [False, False]


def test_get_empty_returns_none(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.get_timeout = 0.05
    assert backend.get("empty") is None
    getter, _ = _sub_id(broker, "/queue/empty")
    assert not getter.connected


def test_unsettled_get_goes_back_on_close(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    broker.pending["/queue/q"] = [(b"one", {})]
    assert backend.get("q") is not None
    getter, _ = _sub_id(broker, "/queue/q")
    backend.close()
    assert not getter.connected
    assert [c for c, _ in getter.sent if c in ("ACK", "NACK")] == []


def test_queue_purge_counts_what_it_drains(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.purge_quiet_time = 0.05
    broker.pending["/queue/q"] = [(b"%d" % i, {}) for i in range(4)]
    assert backend.queue_purge("q") == 4
    purger, _ = _sub_id(broker, "/queue/q")
    assert dict(purger.sent)["SUBSCRIBE"]["ack"] == "auto"
    assert not purger.connected


# -- without stomp.py --------------------------------------------------------------------------


def test_alias_resolves_to_this_backend() -> None:
    assert get_backend_cls("stomp") is Backend
    assert get_backend_cls("stompy") is Backend
    assert Backend.default_port == 61613


def test_missing_client_raises_client_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "stomp", None)  # make ``import stomp`` fail
    monkeypatch.setitem(sys.modules, "stomp.exception", None)
    conn = BrokerConnection(hostname="h", backend_cls="stomp")
    with pytest.raises(ClientNotInstalled) as excinfo:
        conn.create_backend()
    assert excinfo.value.package == "stomp.py"
    assert "pip install stomp.py" in str(excinfo.value)
    # The error classes still list ours.
    assert Backend.connection_errors == (StompConnectionError, OSError)
    assert Backend.channel_errors == (StompError,)


def test_module_imports_without_stomp_py() -> None:
    code = (
        "import sys; sys.modules['stomp'] = None\n"
        "import carrot.backends.pystomp as m\n"
        "print(m.Backend.default_port, 'stomp' in sys.modules and sys.modules['stomp'] is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "61613 False"


def test_consuming_a_queue_releases_the_kept_getter(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    broker.pending["/queue/q"] = [(b"one", {}), (b"two", {})]
    backend.get("q").ack()  # "two" is now held by the kept getter
    getter, _ = _sub_id(broker, "/queue/q")
    assert getter.connected
    backend.declare_consumer("q", False, lambda frame: None, "tag1")
    assert not getter.connected  # closed: the broker gives "two" to the consumer


def test_flow_unsubscribes_and_resubscribes(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    seen: list[Any] = []
    backend.declare_consumer("q", False, seen.append, "tag1")
    stomp_conn, first_id = _sub_id(broker, "/queue/q")
    backend.flow(False)
    assert stomp_conn.sent[-1] == ("UNSUBSCRIBE", {"id": first_id})
    backend.flow(False)  # already paused: nothing more
    assert stomp_conn.sent[-1] == ("UNSUBSCRIBE", {"id": first_id})
    backend.flow(True)
    command, frame = stomp_conn.sent[-1]
    assert command == "SUBSCRIBE"
    assert frame["destination"] == "/queue/q"
    assert frame["id"] != first_id
    stomp_conn.deliver(frame["id"], "/queue/q", b"after")
    conn.drain_events(timeout=1)
    assert backend.message_to_python(seen[0]).delivery_info["consumer_tag"] == "tag1"


def test_cancel_while_paused_is_not_resumed(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.declare_consumer("q", False, lambda frame: None, "tag1")
    backend.flow(False)
    backend.cancel("tag1")
    count = len(broker.frames("SUBSCRIBE"))
    backend.flow(True)
    assert len(broker.frames("SUBSCRIBE")) == count


def test_ssl_options_map_to_set_ssl(broker: FakeBroker) -> None:
    conn = BrokerConnection(
        hostname="h",
        backend_cls="stomp",
        ssl={"keyfile": "k.pem", "certfile": "c.pem", "ca_certs": "ca.pem"},
    )
    conn.connect()
    assert broker.connections[0].sent[0] == (
        "SSL",
        {
            "for_hosts": [("h", 61613)],
            "key_file": "k.pem",
            "cert_file": "c.pem",
            "ca_certs": "ca.pem",
        },
    )
    conn.close()
    plain = BrokerConnection(hostname="h", backend_cls="stomp", ssl=True)
    plain.connect()
    assert broker.connections[1].sent[0] == ("SSL", {"for_hosts": [("h", 61613)]})
    plain.close()


def test_ssl_context_is_refused(broker: FakeBroker) -> None:
    import ssl

    conn = BrokerConnection(hostname="h", backend_cls="stomp", ssl=ssl.create_default_context())
    with pytest.raises(TypeError, match="SSLContext"):
        conn.connect()


def test_close_while_paused_resumes_nothing(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.declare_consumer("q", False, lambda frame: None, "tag1")
    backend.flow(False)
    backend.close()
    count = len(broker.frames("SUBSCRIBE"))
    backend.flow(True)
    assert len(broker.frames("SUBSCRIBE")) == count


def test_using_a_backend_after_close_raises_connection_closed(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    from carrot.exceptions import ConnectionClosedError

    backend = conn.create_backend()
    message = backend.prepare_message(b"x", 1)
    conn.close()
    with pytest.raises(ConnectionClosedError):
        backend.publish(message, "", "q")
    # A ConnectionError (OSError): retry loops over connection_errors catch it.
    assert issubclass(ConnectionClosedError, tuple(conn.connection_errors))


# -- carrot 0.10's signatures (issue 13) ---------------------------------------------


def test_ack_takes_the_frame_as_carrot_did(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    broker.pending["/queue/q"] = [(b"one", {}), (b"two", {})]
    first = backend.get("q")
    backend.ack(first._frame)  # carrot 0.10: backend.ack(frame)
    getter, _ = _sub_id(broker, "/queue/q")
    assert getter.sent[-1] == ("ACK", {"id": first.delivery_tag})
    second = backend.get("q")
    backend.ack(second.delivery_tag)
    assert getter.sent[-1] == ("ACK", {"id": second.delivery_tag})


def test_stomp_attribute_is_the_client_connections_are_made_with(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    made = backend.Stomp([("h", 1)])
    assert isinstance(made, FakeStompConnection)


def test_stomp_attribute_is_stomp_pys_connection_class() -> None:
    import stomp

    assert Backend.Stomp is stomp.Connection12


def test_extra_arguments_are_accepted_as_carrot_did(
    broker: FakeBroker, conn: BrokerConnection
) -> None:
    backend = conn.create_backend()
    backend.queue_declare("q9", False, False, False, False, {"x-max-length": 3}, "extra", x=1)
    short, _ = _sub_id(broker, "/queue/q9")
    subscribe = dict(short.sent)["SUBSCRIBE"]
    assert subscribe["durable"] == "false"
    assert subscribe["x-max-length"] == "3"
    backend.declare_consumer("q9", True, lambda frame: None, "tag9", nowait=False, extra=1)
    _sub_id(broker, "/amq/queue/q9")
    message = backend.prepare_message(b"m", 1)
    assert "priority" not in message  # carrot's default 0 is AMQP's default
    assert backend.prepare_message(b"m", 1, 4)["priority"] == "4"
    backend.publish(message, "", "q9", reply_to="ignored")
    assert broker.frames("SEND")[-1][1]["destination"] == "/amq/queue/q9"


def test_queue_delete_forgets_but_cannot_delete(broker: FakeBroker, conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.queue_declare("q8")
    assert backend.queue_exists("q8")
    assert backend.queue_delete("q8") == 0
    assert not backend.queue_exists("q8")
    assert backend.exchange_exists("amq.topic") is None


def test_send_receipts_settle_through_their_callback() -> None:
    """A RECEIPT for a confirmed SEND is an ack; an ERROR naming its receipt id a nack."""
    from types import SimpleNamespace

    from carrot.backends._stomp_wire import Connection as WireConnection

    sent: list[dict[str, str]] = []
    wire = WireConnection("localhost")
    wire.connected = True
    wire._stomp = SimpleNamespace(send=lambda destination, body, headers: sent.append(headers))
    outcomes: list[bool] = []
    wire.send_confirmed("/amq/queue/q", b"1", {"a": "b"}, outcomes.append)
    wire.send_confirmed("/amq/queue/q", b"2", {}, outcomes.append)
    first, second = (headers["receipt"] for headers in sent)
    assert sent[0]["a"] == "b" and first != second
    wire._on_receipt(SimpleNamespace(headers={"receipt-id": first}))
    assert outcomes == [True] and wire.send_settled.is_set()
    wire._on_error(SimpleNamespace(headers={"receipt-id": second, "message": "x"}, body=b""))
    assert outcomes == [True, False]
    assert not wire._receipts.sends
