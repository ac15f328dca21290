"""Unit tests for carrot.backends.pikachu: a fake pika connection, no socket."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import warnings
from types import SimpleNamespace
from typing import Any

import pika
import pytest
from pika import exceptions as pika_exceptions
from pika import spec

from carrot.backends import base, get_backend_cls, pikachu, pyamqplib
from carrot.connection import BrokerConnection
from carrot.exceptions import MissingConnectionSetting
from carrot.messaging import Consumer, Publisher


class FakeChannel:
    """Records what the backend asks of a pika BlockingChannel."""

    def __init__(self, conn: FakePikaConnection, number: int) -> None:
        self.conn = conn
        self.channel_number = number
        self.is_open = True
        self.calls: list[tuple[str, Any]] = []
        self.consumers: dict[str, Any] = {}
        self.return_callbacks: list[Any] = []
        self.cancel_callbacks: list[Any] = []
        self.published: list[dict[str, Any]] = []
        self.get_queue: list[tuple[Any, Any, bytes]] = []
        self.no_ack_pending: list[tuple[Any, Any, bytes]] = []
        self._closing_reason: BaseException | None = None

    @property
    def is_closed(self) -> bool:
        return not self.is_open

    def close(self) -> None:
        self.calls.append(("close", None))
        self.is_open = False

    def close_by_broker(self, code: int, text: str) -> None:
        self.is_open = False
        self._closing_reason = pika_exceptions.ChannelClosedByBroker(code, text)

    def add_on_return_callback(self, callback: Any) -> None:
        self.return_callbacks.append(callback)

    def add_on_cancel_callback(self, callback: Any) -> None:
        self.cancel_callbacks.append(callback)

    def cancel_by_broker(self, consumer_tag: str) -> None:
        self.consumers.pop(consumer_tag, None)
        method = spec.Basic.Cancel(consumer_tag=consumer_tag)
        for callback in self.cancel_callbacks:
            callback(SimpleNamespace(method=method))

    def queue_declare(self, queue: str, passive: bool = False, **kwargs: Any) -> Any:
        self.calls.append(("queue_declare", dict(queue=queue, passive=passive, **kwargs)))
        if passive and queue not in self.conn.queues:
            self.close_by_broker(404, f"NOT_FOUND - no queue '{queue}'")
            raise self._closing_reason
        self.conn.queues.add(queue)
        return SimpleNamespace(
            method=SimpleNamespace(queue=queue, message_count=3, consumer_count=1)
        )

    def exchange_declare(self, **kwargs: Any) -> None:
        self.calls.append(("exchange_declare", kwargs))

    def queue_bind(self, **kwargs: Any) -> None:
        self.calls.append(("queue_bind", kwargs))

    def queue_delete(self, **kwargs: Any) -> Any:
        self.calls.append(("queue_delete", kwargs))
        return SimpleNamespace(method=SimpleNamespace(message_count=4))

    def queue_purge(self, **kwargs: Any) -> Any:
        self.calls.append(("queue_purge", kwargs))
        return SimpleNamespace(method=SimpleNamespace(message_count=7))

    def basic_get(self, queue: str, auto_ack: bool = False) -> Any:
        self.calls.append(("basic_get", dict(queue=queue, auto_ack=auto_ack)))
        if self.get_queue:
            return self.get_queue.pop(0)
        return None, None, None

    def basic_consume(self, **kwargs: Any) -> str:
        self.calls.append(("basic_consume", kwargs))
        self.consumers[kwargs["consumer_tag"]] = kwargs["on_message_callback"]
        return kwargs["consumer_tag"]

    def basic_cancel(self, consumer_tag: str) -> list[Any]:
        self.calls.append(("basic_cancel", consumer_tag))
        self.consumers.pop(consumer_tag, None)
        pending, self.no_ack_pending = self.no_ack_pending, []
        return pending

    def basic_ack(self, delivery_tag: Any) -> None:
        self.calls.append(("basic_ack", delivery_tag))

    def basic_reject(self, delivery_tag: Any, requeue: bool = True) -> None:
        self.calls.append(("basic_reject", (delivery_tag, requeue)))

    def basic_qos(self, **kwargs: Any) -> None:
        self.calls.append(("basic_qos", kwargs))

    def basic_publish(self, **kwargs: Any) -> None:
        self.published.append(kwargs)

    def deliver(
        self, consumer_tag: str, delivery_tag: int, body: bytes, properties: Any = None
    ) -> None:
        """Hand a delivery to the consumer, as pika's dispatch does."""
        method = spec.Basic.Deliver(
            consumer_tag=consumer_tag,
            delivery_tag=delivery_tag,
            redelivered=False,
            exchange="ex",
            routing_key="rk",
        )
        properties = properties or pika.BasicProperties(content_type="text/plain")
        self.consumers[consumer_tag](self, method, properties, body)


class FakePikaConnection:
    """A pika BlockingConnection whose I/O runs scripted steps."""

    def __init__(self, params: Any = None) -> None:
        self.params = params
        self.is_open = True
        self.channels: list[FakeChannel] = []
        self.queues: set[str] = set()
        #: Each process_data_events call runs the next step (if any).
        self.steps: list[Any] = []
        self.time_limits: list[Any] = []
        self._impl = SimpleNamespace(server_properties={"product": "FakeMQ"})

    def channel(self, channel_number: int | None = None) -> FakeChannel:
        channel = FakeChannel(self, len(self.channels) + 1)
        self.channels.append(channel)
        return channel

    def process_data_events(self, time_limit: Any = 0) -> None:
        self.time_limits.append(time_limit)
        if self.steps:
            self.steps.pop(0)()

    def close(self) -> None:
        self.is_open = False


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePikaConnection:
    fake = FakePikaConnection()

    def blocking_connection(params: Any) -> FakePikaConnection:
        fake.params = params
        return fake

    monkeypatch.setattr(pikachu.pika, "BlockingConnection", blocking_connection)
    return fake


@pytest.fixture
def conn(fake: FakePikaConnection) -> Any:
    connection = BrokerConnection(
        hostname="rabbit.example", userid="u", password="p", backend_cls="pika"
    )
    yield connection
    connection.close()


def raw(channel: Any = None, tag: int = 1, body: bytes = b"x", **props: Any) -> Any:
    method = spec.Basic.Deliver(
        consumer_tag="ctag", delivery_tag=tag, redelivered=True, exchange="ex", routing_key="rk"
    )
    return pikachu.RawMessage(channel, method, pika.BasicProperties(**props), body)


# -- names and classes ------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "cls"),
    [("pika", "AsyncoreBackend"), ("pikachu", "AsyncoreBackend"), ("syncpika", "SyncBackend")],
)
def test_aliases_resolve_to_the_pika_backends(alias: str, cls: str) -> None:
    backend_cls = get_backend_cls(alias)
    assert backend_cls is getattr(pikachu, cls)
    assert issubclass(backend_cls, pikachu.Backend)
    assert backend_cls.default_port == pikachu.DEFAULT_PORT == 5672


def test_module_path_names_the_common_backend() -> None:
    assert get_backend_cls("carrot.backends.pikachu") is pikachu.Backend


def test_error_classes_come_from_pika() -> None:
    assert pika_exceptions.AMQPConnectionError in pikachu.Backend.connection_errors
    assert issubclass(pika_exceptions.StreamLostError, pikachu.Backend.connection_errors)
    assert issubclass(pika_exceptions.ConnectionClosedByBroker, pikachu.Backend.connection_errors)
    assert issubclass(pika_exceptions.ChannelClosedByBroker, pikachu.Backend.channel_errors)
    assert not issubclass(pika_exceptions.ChannelClosed, pikachu.Backend.connection_errors)
    conn = BrokerConnection(backend_cls="syncpika")
    assert conn.connection_errors == pikachu.Backend.connection_errors
    assert conn.channel_errors == pikachu.Backend.channel_errors


def test_queue_already_exists_warning_is_the_shared_class() -> None:
    assert pikachu.QueueAlreadyExistsWarning is base.QueueAlreadyExistsWarning


def test_pyamqplib_shares_the_queue_already_exists_warning() -> None:
    assert pyamqplib.QueueAlreadyExistsWarning is base.QueueAlreadyExistsWarning


def test_missing_pika_fails_on_use_not_on_import() -> None:
    code = (
        "import sys\n"
        "sys.modules['pika'] = None\n"
        "import carrot.backends.pikachu as p\n"
        "from carrot.backends import get_backend_cls\n"
        "from carrot.connection import BrokerConnection\n"
        "from carrot.exceptions import ClientNotInstalled\n"
        "assert p.Backend.connection_errors == () and p.Backend.channel_errors == ()\n"
        "assert get_backend_cls('pika') is p.AsyncoreBackend\n"
        "conn = BrokerConnection(hostname='h', userid='u', password='p', backend_cls='pika')\n"
        "try:\n"
        "    conn.connect()\n"
        "except ClientNotInstalled as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "the pika backend needs the 'pika' package: pip install pika"


def test_importing_the_pika_backend_loads_neither_py_amqp_nor_its_backend() -> None:
    code = (
        "import sys\n"
        "import carrot.backends.pikachu as p\n"
        "p.Backend.connection_errors, p.Backend.recoverable_connection_errors\n"
        "loaded = sorted(m for m in sys.modules if m == 'amqp' or m.startswith('amqp.')"
        " or m == 'carrot.backends.pyamqplib' or m.startswith('carrot.backends._amqp'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_recoverable_errors_leave_out_a_refused_login_or_vhost() -> None:
    recoverable = pikachu.Backend.recoverable_connection_errors
    for refused in (
        pika_exceptions.ProbableAuthenticationError,
        pika_exceptions.ProbableAccessDeniedError,
        pika_exceptions.AuthenticationError,
    ):
        assert issubclass(refused, pikachu.Backend.connection_errors)
        assert not issubclass(refused, recoverable)
    for lost in (
        pikachu.PikaConnectError,
        pika_exceptions.StreamLostError,
        pika_exceptions.ConnectionClosedByBroker,
        pika_exceptions.AMQPHeartbeatTimeout,
        ConnectionRefusedError,
    ):
        assert issubclass(lost, recoverable)
    assert not issubclass(pika_exceptions.AMQPConnectionError, recoverable)


@pytest.mark.parametrize(
    "error",
    [
        pika_exceptions.AMQPConnectionError("AMQPConnectorSocketConnectError: refused"),
        __import__(
            "pika.adapters.utils.connection_workflow", fromlist=["AMQPConnectorStackTimeout"]
        ).AMQPConnectorStackTimeout("Timeout during AMQP handshake"),
    ],
)
def test_a_failed_connect_raises_pika_connect_error(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def blocking_connection(params: Any) -> Any:
        raise error

    monkeypatch.setattr(pikachu.pika, "BlockingConnection", blocking_connection)
    conn = BrokerConnection(hostname="h", userid="u", password="p", backend_cls="pika")
    with pytest.raises(pikachu.PikaConnectError) as info:
        conn.connect()
    assert isinstance(info.value, pika_exceptions.AMQPConnectionError)  # old excepts catch it
    assert info.value.__cause__ is error
    assert "cannot connect through pika" in str(info.value)


def test_a_refused_login_is_raised_as_pika_raised_it(monkeypatch: pytest.MonkeyPatch) -> None:
    error = pika_exceptions.ProbableAuthenticationError("ACCESS_REFUSED")
    attempts: list[Any] = []

    def blocking_connection(params: Any) -> Any:
        attempts.append(params)
        raise error

    monkeypatch.setattr(pikachu.pika, "BlockingConnection", blocking_connection)
    conn = BrokerConnection(hostname="h", userid="u", password="p", backend_cls="pika")
    with pytest.raises(pika_exceptions.ProbableAuthenticationError) as info:
        conn.ensure_connection(max_retries=5, interval_start=0, interval_step=0)
    assert info.value is error
    assert len(attempts) == 1  # not retried


def test_connection_cls_is_pikas_blocking_connection() -> None:
    # compat: carrot 0.10 had _connection_cls on both backends.
    assert pikachu.SyncBackend._connection_cls is pika.BlockingConnection
    assert pikachu.AsyncoreBackend._connection_cls is pika.BlockingConnection


# -- connection settings ----------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "kwargs"),
    [
        ("hostname", {"userid": "u", "password": "p"}),
        ("userid", {"hostname": "h", "password": "p"}),
        ("password", {"hostname": "h", "userid": "u"}),
    ],
)
def test_missing_setting_raises_key_error(
    fake: FakePikaConnection, missing: str, kwargs: dict[str, Any]
) -> None:
    conn = BrokerConnection(backend_cls="pika", **kwargs)
    with pytest.raises(MissingConnectionSetting) as excinfo:
        conn.connect()
    assert isinstance(excinfo.value, KeyError)
    assert excinfo.value.setting == missing
    assert fake.params is None  # nothing was opened


def test_connection_parameters(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    conn.virtual_host = "/vh"
    conn.port = 5673
    conn.connect_timeout = 3
    connection = conn.connect()
    assert isinstance(connection, pikachu.Connection)
    assert connection.pika_connection is fake
    params = fake.params
    assert (params.host, params.port, params.virtual_host) == ("rabbit.example", 5673, "/vh")
    assert (params.credentials.username, params.credentials.password) == ("u", "p")
    assert params.socket_timeout == 3
    assert params.stack_timeout == 3
    assert params.heartbeat == 0
    assert params.ssl_options is None
    assert connection.connected
    assert connection.server_properties == {"product": "FakeMQ"}


@pytest.mark.parametrize(("heartbeat", "expected"), [(0, 0), (2, 2), (1.5, 2), (0.1, 1)])
def test_heartbeat_goes_to_pika_in_whole_seconds(
    conn: BrokerConnection, fake: FakePikaConnection, heartbeat: float, expected: int
) -> None:
    conn.heartbeat = heartbeat
    conn.connect()
    assert fake.params.heartbeat == expected
    assert isinstance(fake.params.heartbeat, int)


def test_default_port_and_no_timeout(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    conn.connect_timeout = None
    conn.connect()
    assert fake.params.port == 5672
    assert fake.params.socket_timeout is None
    assert conn.info()["port"] == 5672


def test_ssl_true_verifies_the_hostname(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    conn.ssl = True
    conn.connect()
    options = fake.params.ssl_options
    assert isinstance(options, pika.SSLOptions)
    assert options.server_hostname == "rabbit.example"
    assert options.context.verify_mode == ssl.CERT_REQUIRED
    assert options.context.check_hostname


def test_ssl_dict_options(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    conn.ssl = {"cert_reqs": ssl.CERT_NONE, "server_hostname": "sni.example"}
    conn.connect()
    options = fake.params.ssl_options
    assert options.server_hostname == "sni.example"
    assert options.context.verify_mode == ssl.CERT_NONE
    assert not options.context.check_hostname


def test_ssl_context_is_used_as_is(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    context = ssl.create_default_context()
    conn.ssl = context
    conn.connect()
    assert fake.params.ssl_options.context is context


def test_close_closes_the_pika_connection(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    conn.connect()
    conn.close()
    assert not fake.is_open
    assert conn.connection is None


# -- messages ---------------------------------------------------------------


def test_message_from_a_delivery() -> None:
    backend = pikachu.Backend(BrokerConnection(backend_cls="pika"))
    message = backend.message_to_python(
        raw(
            tag=9,
            body=b'{"a": 1}',
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            priority=5,
            headers={"h": "v"},
        )
    )
    assert isinstance(message, pikachu.Message)
    assert message.body == b'{"a": 1}'
    assert message.payload == {"a": 1}
    assert message.delivery_tag == 9
    assert message.delivery_info == {
        "exchange": "ex",
        "routing_key": "rk",
        "redelivered": True,
        "delivery_tag": 9,
        "consumer_tag": "ctag",
    }
    assert message.properties == {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "priority": 5,
        "headers": {"h": "v"},
    }
    assert message.headers == {"h": "v"}


def test_message_accepts_carrot_010_tuple_and_get_ok() -> None:
    method = spec.Basic.GetOk(
        delivery_tag=3, redelivered=False, exchange="", routing_key="q", message_count=2
    )
    message = pikachu.Message(None, (None, method, pika.BasicProperties(), b"body"))
    assert message.delivery_info["message_count"] == 2
    assert "consumer_tag" not in message.delivery_info
    assert message.headers == {}
    assert message.content_type is None


def test_message_ack_reject_requeue_reach_the_channel(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    for settle, expected in [
        ("ack", ("basic_ack", 1)),
        ("reject", ("basic_reject", (1, False))),
        ("requeue", ("basic_reject", (1, True))),
    ]:
        message = backend.message_to_python(raw(backend.channel, tag=1))
        getattr(message, settle)()
        assert backend.channel.calls[-1] == expected
        assert message.acknowledged


# -- declarations -----------------------------------------------------------


def test_declarations_map_to_pika(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    ok = backend.queue_declare("q", durable=True, exclusive=False, auto_delete=True, arguments={})
    assert ok == pikachu.DeclareOk("q", 3, 1)
    backend.exchange_declare("x", "topic", durable=False, auto_delete=True)
    backend.queue_bind("q", "x", "k", arguments={"x-match": "all"})
    assert backend.queue_delete("q", if_unused=True) == 4
    assert backend.queue_purge("q") == 7
    calls = backend.channel.calls
    assert calls[0] == (
        "queue_declare",
        {
            "queue": "q",
            "passive": False,
            "durable": True,
            "exclusive": False,
            "auto_delete": True,
            "arguments": {},
        },
    )
    assert calls[1] == (
        "exchange_declare",
        {"exchange": "x", "exchange_type": "topic", "durable": False, "auto_delete": True},
    )
    assert calls[2] == (
        "queue_bind",
        {"queue": "q", "exchange": "x", "routing_key": "k", "arguments": {"x-match": "all"}},
    )
    assert calls[3] == ("queue_delete", {"queue": "q", "if_unused": True, "if_empty": False})


def test_queue_exists_uses_a_throwaway_channel(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    channel = backend.channel
    fake.queues.add("there")
    assert backend.queue_exists("there") is True
    assert backend.queue_exists("missing") is False
    assert backend.channel is channel  # the backend's channel was not disturbed
    assert channel.is_open
    assert [c.is_open for c in fake.channels[1:]] == [False, False]


def test_queue_exists_reraises_other_channel_errors(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()

    def refused(**kwargs: Any) -> None:
        raise pika_exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED")

    conn.connect()
    original = fake.channel

    def channel(channel_number: Any = None) -> FakeChannel:
        ch = original(channel_number)
        ch.queue_declare = refused
        return ch

    fake.channel = channel
    with pytest.raises(pika_exceptions.ChannelClosedByBroker):
        backend.queue_exists("q")


def test_warn_if_exists(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    backend = conn.create_backend()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.queue_declare("new", True, False, False, warn_if_exists=True)
    with pytest.warns(base.QueueAlreadyExistsWarning, match="'new'"):
        backend.queue_declare("new", True, False, False, warn_if_exists=True)


def test_channel_reopens_after_a_close_by_the_broker(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    first = backend.channel
    assert first.return_callbacks == [backend._on_return]
    first.close_by_broker(406, "PRECONDITION_FAILED")
    second = backend.channel
    assert second is not first
    assert second.is_open
    assert second.return_callbacks == [backend._on_return]


# -- sending ----------------------------------------------------------------


def test_prepare_message_builds_basic_properties(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    body, properties = backend.prepare_message(
        b"data", 2, priority=4, content_type="text/plain", content_encoding="utf-8"
    )
    assert body == b"data"
    assert isinstance(properties, pika.BasicProperties)
    assert (properties.delivery_mode, properties.priority) == (2, 4)
    assert (properties.content_type, properties.content_encoding) == ("text/plain", "utf-8")
    assert properties.headers is None
    assert properties.expiration is None


def test_publish_plain(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    message = backend.prepare_message(b"data", 1)
    backend.publish(message, "x", "rk")
    (sent,) = backend.channel.published
    assert sent["exchange"] == "x"
    assert sent["routing_key"] == "rk"
    assert sent["body"] == b"data"
    assert sent["mandatory"] is False
    assert sent["properties"].expiration is None


def test_publish_immediate_is_mandatory_with_ttl_zero(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.publish(backend.prepare_message(b"d", 1), "x", "rk", immediate=True, headers={"a": 1})
    (sent,) = backend.channel.published
    assert sent["mandatory"] is True
    assert sent["properties"].expiration == "0"
    assert sent["properties"].headers == {"a": 1}


def test_publisher_send_through_the_backend(conn: BrokerConnection) -> None:
    publisher = Publisher(conn, exchange="x", routing_key="rk", auto_declare=False)
    publisher.send({"k": "v"}, priority=3, mandatory=True)
    (sent,) = publisher.backend.channel.published
    assert json.loads(sent["body"]) == {"k": "v"}
    assert sent["mandatory"] is True
    props = sent["properties"]
    assert (props.content_type, props.content_encoding) == ("application/json", "utf-8")
    assert (props.delivery_mode, props.priority) == (2, 3)


def test_returned_messages_are_collected(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    channel = backend.channel
    method = spec.Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="x", routing_key="k")
    props = pika.BasicProperties(content_type="text/plain")
    channel.return_callbacks[0](channel, method, props, b"lost")
    (returned,) = backend.returned_messages
    assert returned[:4] == (312, "NO_ROUTE", "x", "k")
    assert returned[4].body == b"lost"
    assert returned[4].properties is props


# -- consuming --------------------------------------------------------------


def test_get(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    assert backend.get("q") is None
    method = spec.Basic.GetOk(
        delivery_tag=5, redelivered=False, exchange="x", routing_key="q", message_count=0
    )
    backend.channel.get_queue.append((method, pika.BasicProperties(), b"hi"))
    message = backend.get("q", no_ack=True)
    assert message.body == b"hi"
    assert message.delivery_info["message_count"] == 0
    assert backend.channel.calls[-1] == ("basic_get", {"queue": "q", "auto_ack": True})


def test_drain_events_dispatches_one_delivery_per_call(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    got: list[Any] = []
    backend.declare_consumer("q", False, got.append, "ctag")
    channel = backend.channel
    call = channel.calls[-1]
    assert call[0] == "basic_consume"
    assert (call[1]["queue"], call[1]["auto_ack"], call[1]["consumer_tag"]) == ("q", False, "ctag")
    fake.steps.append(lambda: [channel.deliver("ctag", tag, b"m%d" % tag) for tag in (1, 2)])
    conn.drain_events(timeout=1)
    assert [r.body for r in got] == [b"m1"]
    assert isinstance(got[0], pikachu.RawMessage)
    conn.drain_events(timeout=1)  # already read: no more I/O needed
    assert [r.body for r in got] == [b"m1", b"m2"]
    assert len(fake.time_limits) == 1
    assert fake.time_limits[0] <= 1


def test_drain_events_times_out(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    conn.connect()
    with pytest.raises(TimeoutError):
        conn.drain_events(timeout=0.05)
    assert fake.time_limits
    assert all(limit <= 0.05 for limit in fake.time_limits)


def test_drain_events_raises_when_the_broker_closes_a_consuming_channel(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    backend.declare_consumer("q", False, lambda raw: None, "ctag")
    channel = backend.channel
    fake.steps.append(lambda: channel.close_by_broker(406, "PRECONDITION_FAILED - unknown tag"))
    with pytest.raises(pika_exceptions.ChannelClosedByBroker, match="unknown tag"):
        conn.drain_events(timeout=5)


def test_consume_yields_per_message_and_honours_limit(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    got: list[Any] = []
    backend.declare_consumer("q", True, got.append, "ctag")
    channel = backend.channel
    fake.steps.append(lambda: [channel.deliver("ctag", tag, b"m") for tag in (1, 2, 3)])
    assert list(backend.consume(limit=2)) == [True, True]
    assert [r.method.delivery_tag for r in got] == [1, 2]
    assert list(backend.consume(limit=1)) == [True]
    assert [r.method.delivery_tag for r in got] == [1, 2, 3]


def test_consume_ends_when_the_channel_closes(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    got: list[Any] = []

    def callback(raw_message: Any) -> None:
        got.append(raw_message)
        backend.close()

    backend.declare_consumer("q", True, callback, "ctag")
    channel = backend.channel
    fake.steps.append(lambda: [channel.deliver("ctag", tag, b"m") for tag in (1, 2)])
    assert list(backend.consume()) == [True]
    assert len(got) == 1
    assert not channel.is_open
    assert not conn.connection._ready  # the second delivery died with the channel


def test_cancel_requeues_undispatched_acked_deliveries(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    got: list[Any] = []
    backend.declare_consumer("q", False, got.append, "ctag")
    channel = backend.channel
    fake.steps.append(lambda: [channel.deliver("ctag", tag, b"m") for tag in (1, 2)])
    conn.drain_events(timeout=1)
    backend.cancel("ctag")
    assert ("basic_reject", (2, True)) in channel.calls
    assert channel.calls[-1] == ("basic_cancel", "ctag")
    assert len(got) == 1
    with pytest.raises(TimeoutError):
        conn.drain_events(timeout=0.01)


def test_cancel_still_dispatches_no_ack_deliveries(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    got: list[Any] = []
    backend.declare_consumer("q", True, got.append, "ctag")
    channel = backend.channel
    fake.steps.append(lambda: [channel.deliver("ctag", tag, b"m") for tag in (1, 2)])
    conn.drain_events(timeout=1)
    channel.no_ack_pending.append(
        (
            spec.Basic.Deliver(consumer_tag="ctag", delivery_tag=3, exchange="", routing_key="q"),
            pika.BasicProperties(),
            b"late",
        )
    )
    backend.cancel("ctag")
    assert not any(name == "basic_reject" for name, _ in channel.calls)
    conn.drain_events(timeout=1)
    conn.drain_events(timeout=1)
    assert [r.method.delivery_tag for r in got] == [1, 2, 3]


def test_flow_cancels_and_restarts_consumers(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    callback = object()
    backend.declare_consumer("q", False, callback, "ctag")
    channel = backend.channel
    backend.flow(False)
    assert channel.consumers == {}
    backend.flow(False)  # twice is harmless
    backend.flow(True)
    assert list(channel.consumers) == ["ctag"]
    consumes = [c for name, c in channel.calls if name == "basic_consume"]
    assert [(c["queue"], c["auto_ack"], c["consumer_tag"]) for c in consumes] == [
        ("q", False, "ctag")
    ] * 2


def test_cancel_while_paused_is_not_restarted(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.declare_consumer("q", False, object(), "ctag")
    backend.flow(False)
    backend.cancel("ctag")
    backend.flow(True)
    assert backend.channel.consumers == {}


def test_qos(conn: BrokerConnection) -> None:
    backend = conn.create_backend()
    backend.qos(0, 10, True)
    assert backend.channel.calls[-1] == (
        "basic_qos",
        {"prefetch_size": 0, "prefetch_count": 10, "global_qos": True},
    )


def test_consumer_round_trip_on_the_fake(conn: BrokerConnection, fake: FakePikaConnection) -> None:
    consumer = Consumer(conn, queue="q", exchange="x", routing_key="q")
    seen: list[Any] = []
    consumer.register_callback(lambda data, message: (seen.append(data), message.ack()))
    consumer.consume()
    channel = consumer.backend.channel
    props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8")
    fake.steps.append(lambda: channel.deliver(consumer.consumer_tag, 1, b"[1, 2]", props))
    conn.drain_events(timeout=1)
    assert seen == [[1, 2]]
    assert channel.calls[-1] == ("basic_ack", 1)


def test_wait_multi_returns_for_a_wanted_channel(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    a, b = conn.create_backend(), conn.create_backend()
    got: list[Any] = []
    a.declare_consumer("qa", True, got.append, "ta")
    b.declare_consumer("qb", True, got.append, "tb")
    fake.steps.append(lambda: (a.channel.deliver("ta", 1, b"a"), b.channel.deliver("tb", 2, b"b")))
    conn.connection.wait_multi([b.channel], timeout=1)
    assert [r.body for r in got] == [b"a", b"b"]
    with pytest.raises(TimeoutError):
        conn.connection.wait_multi([a.channel], timeout=0.01)


def test_consumer_cancelled_by_the_broker_raises_after_earlier_deliveries(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    got: list[Any] = []
    backend.declare_consumer("q", False, got.append, "ctag")
    channel = backend.channel
    fake.steps.append(lambda: (channel.deliver("ctag", 1, b"m"), channel.cancel_by_broker("ctag")))
    conn.drain_events(timeout=1)
    assert len(got) == 1
    with pytest.raises(pika_exceptions.ConsumerCancelled, match="ctag"):
        conn.drain_events(timeout=1)
    assert backend._consumers == {}
    backend.flow(False)
    backend.flow(True)
    assert channel.consumers == {}  # not restarted


def test_cancel_after_a_broker_cancel_drops_the_notice(
    conn: BrokerConnection, fake: FakePikaConnection
) -> None:
    backend = conn.create_backend()
    got: list[Any] = []
    backend.declare_consumer("q", False, got.append, "ctag")
    channel = backend.channel
    fake.steps.append(lambda: (channel.deliver("ctag", 1, b"m"), channel.cancel_by_broker("ctag")))
    conn.drain_events(timeout=1)  # the delivery; the broker's notice waits behind it
    assert len(got) == 1
    backend.cancel("ctag")  # e.g. from the callback
    assert not any(name == "basic_reject" for name, _ in channel.calls)
    with pytest.raises(TimeoutError):
        conn.drain_events(timeout=0.01)


@pytest.mark.parametrize(("ssl", "port", "expected"), [(True, None, 5671), (True, 5673, 5673)])
def test_tls_port_defaults_to_5671(
    conn: BrokerConnection, fake: FakePikaConnection, ssl: bool, port: int | None, expected: int
) -> None:
    conn.ssl = ssl
    conn.port = port
    conn.connect()
    assert fake.params.port == expected
