"""carrot.backends.pyamqplib without a broker: fakes stand in for py-amqp's channel."""

from __future__ import annotations

import ssl
import types
import warnings

import amqp
import pytest
from amqp import transport as amqp_transport
from amqp.exceptions import NotFound

from carrot._tls import TLSSettings
from carrot.backends import pyamqplib
from carrot.backends.pyamqplib import (
    DEFAULT_PORT,
    Backend,
    Connection,
    Message,
    QueueAlreadyExistsWarning,
)
from carrot.connection import BrokerConnection
from carrot.exceptions import MissingConnectionSetting, TLSVerificationError


class FakeChannel:
    """Records the py-amqp channel calls the backend makes."""

    _ids = iter(range(1, 10_000))

    def __init__(self, connection: FakeAMQPConnection) -> None:
        self.connection = connection
        self.channel_id = next(self._ids)
        self.is_open = True
        self.calls: list[tuple[str, tuple, dict]] = []
        self.events: dict[str, set] = {"basic_return": set()}
        self.missing_queues: set[str] = set()
        self.get_result: object = None

    def _record(self, name: str, *args: object, **kwargs: object) -> None:
        self.calls.append((name, args, kwargs))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def queue_declare(self, queue="", passive=False, **kwargs):
        self._record("queue_declare", queue=queue, passive=passive, **kwargs)
        if passive and queue in self.missing_queues:
            self.is_open = False  # the broker closes the channel on 404
            raise NotFound(f"NOT_FOUND - no queue '{queue}'", reply_code=404)
        return (queue, 0, 0)

    def queue_delete(self, *args, **kwargs):
        self._record("queue_delete", *args, **kwargs)
        return 3

    def queue_purge(self, queue=""):
        self._record("queue_purge", queue=queue)
        return None

    def exchange_declare(self, **kwargs):
        self._record("exchange_declare", **kwargs)

    def queue_bind(self, **kwargs):
        self._record("queue_bind", **kwargs)

    def basic_get(self, queue, no_ack=False):
        self._record("basic_get", queue, no_ack=no_ack)
        return self.get_result

    def basic_consume(self, **kwargs):
        self._record("basic_consume", **kwargs)
        return kwargs["consumer_tag"]

    def basic_cancel(self, consumer_tag):
        self._record("basic_cancel", consumer_tag)

    def basic_ack(self, delivery_tag):
        self._record("basic_ack", delivery_tag)

    def basic_reject(self, delivery_tag, requeue):
        self._record("basic_reject", delivery_tag, requeue=requeue)

    def basic_publish(self, message, **kwargs):
        self._record("basic_publish", message, **kwargs)

    def basic_qos(self, **kwargs):
        self._record("basic_qos", **kwargs)

    def close(self):
        self._record("close")
        self.is_open = False


class FakeAMQPConnection:
    _transport = None  # (bounded_waits: no socket to bound)

    def __init__(self) -> None:
        self.channels: list[FakeChannel] = []
        self.drains = 0

    def channel(self) -> FakeChannel:
        ch = FakeChannel(self)
        self.channels.append(ch)
        return ch

    def drain_events(self, timeout=None):
        self.drains += 1


@pytest.fixture
def backend() -> Backend:
    conninfo = types.SimpleNamespace(connection=FakeAMQPConnection())
    return Backend(connection=conninfo)


def amqp_message(body=b"{}", **properties) -> amqp.Message:
    msg = amqp.Message(body, **properties)
    msg.delivery_info = {
        "delivery_tag": 5,
        "exchange": "x",
        "routing_key": "k",
        "redelivered": False,
        "consumer_tag": "c",
    }
    return msg


# -- connection settings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "setting", "wording"),
    [
        ({"userid": "u", "password": "p"}, "hostname", "hostname"),
        ({"hostname": "", "userid": "u", "password": "p"}, "hostname", "hostname"),
        ({"hostname": "h", "password": "p"}, "userid", "user id"),
        ({"hostname": "h", "userid": "u"}, "password", "password"),
    ],
)
def test_missing_setting_is_a_key_error_naming_it(kwargs, setting, wording) -> None:
    conn = BrokerConnection(**kwargs)
    with pytest.raises(KeyError) as excinfo:
        conn.connect()
    assert isinstance(excinfo.value, MissingConnectionSetting)
    assert excinfo.value.setting == setting
    # carrot 0.10's message text, which logs and old tests match.
    assert str(excinfo.value) == f"Missing {wording} for AMQP connection."
    assert conn._connection is None


def test_default_port() -> None:
    assert DEFAULT_PORT == 5672
    assert Backend.default_port == 5672
    assert Backend(None, default_port=1).default_port == 1


def test_compat_error_names() -> None:
    assert pyamqplib.AMQPConnectionException is amqp.exceptions.ConnectionError
    assert pyamqplib.AMQPChannelException is amqp.exceptions.ChannelError


# -- Transport selection for ssl ---------------------------------------------------


def make_transport(ssl_option):
    conn = Connection(host="broker.example:5671", ssl=ssl_option, connect_timeout=3)
    return conn.Transport("broker.example:5671", 3, ssl=ssl_option)


def test_transport_plain_tcp() -> None:
    transport = make_transport(False)
    assert isinstance(transport, amqp_transport.TCPTransport)
    assert transport.connect_timeout == 3
    assert not transport.connected


def test_transport_ssl_true() -> None:
    transport = make_transport(True)
    assert isinstance(transport, amqp_transport.SSLTransport)
    assert transport.sslopts == {}


def test_transport_ssl_dict_of_options() -> None:
    opts = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": "/etc/ca.pem"}
    transport = make_transport(opts)
    assert isinstance(transport, amqp_transport.SSLTransport)
    assert transport.sslopts == opts


def test_transport_ssl_context() -> None:
    context = ssl.create_default_context()
    transport = make_transport(context)
    assert isinstance(transport, amqp_transport.SSLTransport)
    assert transport._tls.context is context


@pytest.mark.parametrize(
    ("host", "check_hostname", "server_hostname"),
    [
        ("broker.example:5671", True, "broker.example"),
        ("[::1]:5671", True, "::1"),
        # SNI is sent either way; only the context decides whether it is checked.
        ("broker.example:5671", False, "broker.example"),
    ],
)
def test_ssl_context_wraps_with_server_hostname(host, check_hostname, server_hostname) -> None:
    context = ssl.create_default_context()
    if not check_hostname:
        context.check_hostname = False
    calls: list[dict] = []

    def wrap_socket(sock, **kwargs):
        calls.append(kwargs)
        return sock

    context.wrap_socket = wrap_socket
    conn = Connection(host=host, ssl=context)
    transport = conn.Transport(host, 3, ssl=context)
    sentinel = object()
    assert transport._wrap_socket(sentinel) is sentinel
    assert calls == [{"server_hostname": server_hostname, "do_handshake_on_connect": False}]


def test_connection_passes_ssl_and_timeout_to_py_amqp(monkeypatch) -> None:
    made: list[dict] = []

    class Recording(Connection):
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

        def connect(self, callback=None):
            return None

    monkeypatch.setattr(pyamqplib, "Connection", Recording)
    context = ssl.create_default_context()
    conn = BrokerConnection(
        "h", "u", "p", "/v", ssl=context, connect_timeout=2.5, heartbeat=1.5, max_body_size=1000
    )
    assert isinstance(conn.connection, Recording)
    assert made == [
        {
            "host": "h:5671",  # the TLS port: TLS is on and no port was given
            "userid": "u",
            "password": "p",
            "virtual_host": "/v",
            "ssl": TLSSettings(context, "h"),
            "connect_timeout": 2.5,
            "heartbeat": 1.5,
            "max_body_size": 1000,  # the fast path's body limit
        }
    ]
    assert conn.connection.max_body_size == 1000


def test_tls_settings_server_hostname_is_the_name_wrapped_with() -> None:
    context = ssl.create_default_context()
    calls: list[dict] = []
    context.wrap_socket = lambda sock, **kwargs: calls.append(kwargs) or sock
    settings = TLSSettings(context, "cert-name.example")
    conn = Connection(host="10.0.0.1:5671", ssl=settings)
    transport = conn.Transport("10.0.0.1:5671", 3, ssl=settings)
    sentinel = object()
    assert transport._wrap_socket(sentinel) is sentinel
    assert calls == [{"server_hostname": "cert-name.example", "do_handshake_on_connect": False}]


def test_failed_handshake_is_a_tls_error_naming_the_broker(monkeypatch) -> None:
    class Failing(Connection):
        def connect(self, callback=None):
            exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
            exc.verify_message = "Hostname mismatch, certificate is not valid for 'h'."
            raise exc

    monkeypatch.setattr(pyamqplib, "Connection", Failing)
    conn = BrokerConnection("h", "u", "p", ssl={"server_hostname": "h"}, port=5999)
    with pytest.raises(TLSVerificationError) as info:
        conn.connect()
    assert isinstance(info.value, ssl.SSLCertVerificationError)
    assert "h:5999" in str(info.value)
    assert "Hostname mismatch" in str(info.value)


# -- Message -------------------------------------------------------------------------


def test_message_from_amqp_message(backend: Backend) -> None:
    raw = amqp_message(
        b'{"a": 1}',
        content_type="application/json",
        content_encoding="utf-8",
        application_headers={"h": 1},
        priority=3,
    )
    msg = backend.message_to_python(raw)
    assert isinstance(msg, Message)
    assert msg.backend is backend
    assert msg.body == b'{"a": 1}'
    assert msg.delivery_tag == 5
    assert msg.content_type == "application/json"
    assert msg.content_encoding == "utf-8"
    assert msg.delivery_info["routing_key"] == "k"
    assert msg.headers == {"h": 1}
    assert msg.properties["priority"] == 3
    assert msg.payload == {"a": 1}
    assert msg.amqp_message is raw


def test_message_without_headers_or_delivery_info(backend: Backend) -> None:
    msg = Message(backend, amqp.Message(b"x"))
    assert msg.headers == {}
    assert msg.delivery_info == {}
    assert msg.delivery_tag is None
    assert Message(backend, amqp.Message(b"x"), body=b"y").body == b"y"


def test_message_ack_reject_requeue_reach_the_channel(backend: Backend) -> None:
    for method, expected in [
        ("ack", ("basic_ack", (5,), {})),
        ("reject", ("basic_reject", (5,), {"requeue": False})),
        ("requeue", ("basic_reject", (5,), {"requeue": True})),
    ]:
        getattr(backend.message_to_python(amqp_message()), method)()
        assert backend.channel.calls[-1] == expected


# -- Backend operations ----------------------------------------------------------------


def test_channel_is_lazy_and_reopened_after_close(backend: Backend) -> None:
    fake = backend.connection.connection
    assert fake.channels == []
    ch = backend.channel
    assert backend.channel is ch
    backend.close()
    assert not ch.is_open
    assert backend.channel is not ch
    assert len(fake.channels) == 2


def test_declarations(backend: Backend) -> None:
    backend.queue_declare("q", True, False, False, arguments={"x-max-length": 1})
    backend.exchange_declare("x", "topic", True, False)
    backend.queue_bind("q", "x", "a.#", arguments={"k": "v"})
    assert backend.queue_delete("q", if_unused=True) == 3
    assert backend.queue_purge("q") == 0
    assert backend.purge("q") == 0
    calls = backend.channel.calls
    assert calls[0] == (
        "queue_declare",
        (),
        {
            "queue": "q",
            "passive": False,
            "durable": True,
            "exclusive": False,
            "auto_delete": False,
            "arguments": {"x-max-length": 1},
        },
    )
    assert calls[1] == (
        "exchange_declare",
        (),
        {"exchange": "x", "type": "topic", "durable": True, "auto_delete": False},
    )
    assert calls[2] == (
        "queue_bind",
        (),
        {"queue": "q", "exchange": "x", "routing_key": "a.#", "arguments": {"k": "v"}},
    )
    assert calls[3] == ("queue_delete", ("q", True, False), {})


def test_queue_exists_uses_a_throwaway_channel(backend: Backend) -> None:
    main = backend.channel
    fake = backend.connection.connection
    assert backend.queue_exists("q") is True
    fake_channel = fake.channels[-1]
    assert fake_channel is not main
    assert fake_channel.calls[0][2]["passive"] is True
    assert not fake_channel.is_open  # closed after use


def test_queue_exists_404_leaves_the_backend_usable(backend: Backend, monkeypatch) -> None:
    main = backend.channel
    original = FakeAMQPConnection.channel

    def channel_missing_q(self):
        ch = original(self)
        ch.missing_queues.add("missing")
        return ch

    monkeypatch.setattr(FakeAMQPConnection, "channel", channel_missing_q)
    assert backend.queue_exists("missing") is False
    assert main.is_open
    assert backend.channel is main


def test_warn_if_exists(backend: Backend) -> None:
    with pytest.warns(QueueAlreadyExistsWarning, match="'q'"):
        backend.queue_declare("q", True, False, False, warn_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.queue_declare("q", True, False, False)


def test_get(backend: Backend) -> None:
    assert backend.get("q") is None
    backend.channel.get_result = amqp_message(b"hello")
    msg = backend.get("q", no_ack=True)
    assert isinstance(msg, Message)
    assert msg.body == b"hello"
    assert backend.channel.calls[-1] == ("basic_get", ("q",), {"no_ack": True})


def test_consumers_consume_and_cancel(backend: Backend) -> None:
    callback = object()
    assert backend.declare_consumer("q", False, callback, "tag1") == "tag1"
    assert backend.channel.calls[-1] == (
        "basic_consume",
        (),
        {
            "queue": "q",
            "no_ack": False,
            "callback": callback,
            "consumer_tag": "tag1",
            "nowait": False,
        },
    )
    fake = backend.connection.connection
    assert list(backend.consume(limit=3)) == [True, True, True]
    assert fake.drains == 3
    backend.cancel("tag1")
    assert backend.channel.calls[-1] == ("basic_cancel", ("tag1",), {})


def test_consume_ends_when_the_channel_closes(backend: Backend) -> None:
    backend.declare_consumer("q", False, print, "t")
    it = backend.consume()
    assert next(it) is True
    backend.channel.is_open = False
    assert list(it) == []


def test_consume_without_a_channel_yields_nothing(backend: Backend) -> None:
    assert list(backend.consume()) == []


def test_cancel_without_a_channel_is_a_no_op(backend: Backend) -> None:
    backend.cancel("nothing")
    assert backend.connection.connection.channels == []


def test_flow_pauses_and_resumes_consumers(backend: Backend) -> None:
    cb1, cb2 = object(), object()
    backend.declare_consumer("q1", False, cb1, "t1")
    backend.declare_consumer("q2", True, cb2, "t2")
    backend.flow(False)
    ch = backend.channel
    assert [c for c in ch.calls if c[0] == "basic_cancel"] == [
        ("basic_cancel", ("t1",), {}),
        ("basic_cancel", ("t2",), {}),
    ]
    backend.flow(False)  # pausing twice changes nothing
    assert ch.names().count("basic_cancel") == 2
    backend.flow(True)
    consumes = [c[2] for c in ch.calls if c[0] == "basic_consume"]
    assert consumes[2:] == [
        {"queue": "q1", "no_ack": False, "callback": cb1, "consumer_tag": "t1", "nowait": False},
        {"queue": "q2", "no_ack": True, "callback": cb2, "consumer_tag": "t2", "nowait": False},
    ]
    backend.flow(True)  # resuming twice changes nothing
    assert ch.names().count("basic_consume") == 4


def test_cancel_while_paused_is_not_resumed(backend: Backend) -> None:
    backend.declare_consumer("q1", False, print, "t1")
    backend.declare_consumer("q2", False, print, "t2")
    backend.flow(False)
    backend.cancel("t1")
    backend.flow(True)
    resumed = [c[2]["consumer_tag"] for c in backend.channel.calls if c[0] == "basic_consume"]
    assert resumed == ["t1", "t2", "t2"]


def test_qos(backend: Backend) -> None:
    backend.qos(0, 10)
    backend.qos(0, 1, apply_global=True)
    assert backend.channel.calls == [
        ("basic_qos", (), {"prefetch_size": 0, "prefetch_count": 10, "a_global": False}),
        ("basic_qos", (), {"prefetch_size": 0, "prefetch_count": 1, "a_global": True}),
    ]


def test_prepare_message(backend: Backend) -> None:
    msg = backend.prepare_message(
        b"body", 2, priority=4, content_type="text/plain", content_encoding="utf-8"
    )
    assert isinstance(msg, amqp.Message)
    assert msg.body == b"body"
    assert msg.properties["delivery_mode"] == 2
    assert msg.properties["priority"] == 4
    assert msg.properties["content_type"] == "text/plain"
    assert msg.properties["content_encoding"] == "utf-8"


def test_prepared_message_delivery_tag_can_be_set(backend: Backend) -> None:
    # compat: carrot 0.10's own tests set it; py-amqp 5 made it read-only.
    msg = backend.prepare_message(b"body", 2)
    assert msg.delivery_tag is None
    msg.delivery_tag = 42
    assert msg.delivery_tag == 42
    assert msg.delivery_info == {"delivery_tag": 42}
    msg.delivery_tag = 43
    assert msg.delivery_tag == 43
    # Still byte for byte the message py-amqp would publish.
    assert (
        msg._serialize_properties()
        == amqp.Message(b"body", delivery_mode=2)._serialize_properties()
    )


def test_publish_headers_and_mandatory(backend: Backend) -> None:
    msg = backend.prepare_message(b"m", 1)
    backend.publish(msg, "x", "k", mandatory=True, headers={"h": "v"})
    name, args, kwargs = backend.channel.calls[-1]
    assert name == "basic_publish"
    assert args[0] is msg
    assert kwargs == {"exchange": "x", "routing_key": "k", "mandatory": True}
    assert msg.properties["application_headers"] == {"h": "v"}


def test_publish_defaults_not_mandatory(backend: Backend) -> None:
    msg = backend.prepare_message(b"m", 1)
    backend.publish(msg, "x", "k")
    assert backend.channel.calls[-1][2]["mandatory"] is False
    assert "application_headers" not in msg.properties


def test_publish_immediate_is_emulated(backend: Backend) -> None:
    msg = backend.prepare_message(b"m", 1)
    backend.publish(msg, "x", "k", immediate=True)
    assert backend.channel.calls[-1][2]["mandatory"] is True
    assert msg.properties["expiration"] == "0"


def test_returned_messages_are_kept(backend: Backend) -> None:
    ch = backend.channel
    (on_return,) = ch.events["basic_return"]
    exc = amqp.exceptions.AMQPError("NO_ROUTE", reply_code=312)
    raw = amqp.Message(b"lost")
    on_return(exc, "x", "k", raw)
    assert list(backend.returned_messages) == [(312, "NO_ROUTE", "x", "k", raw)]


def test_empty_password_and_userid_are_allowed(monkeypatch) -> None:
    # Only None is missing: "" is a legitimate (if odd) credential.
    class NoNetwork(Connection):
        def connect(self, callback=None):
            return None

    monkeypatch.setattr(pyamqplib, "Connection", NoNetwork)
    conn = BrokerConnection("h", "", "")
    assert isinstance(conn.connection, NoNetwork)


def test_close_forgets_the_channels_consumers(backend: Backend) -> None:
    backend.declare_consumer("q", False, print, "t1")
    backend.flow(False)
    backend.close()
    backend.flow(True)
    fresh = backend.channel
    assert "basic_consume" not in fresh.names()


# -- Connection.drain_events and wait_multi, with scripted events -------------------------


class ScriptedConnection(Connection):
    """Never connects; each drain_events "receives" the next scripted channel id."""

    def __init__(self, script: list[int | None]) -> None:
        super().__init__(host="nowhere:5672")
        self.script = list(script)
        self.timeouts: list[float | None] = []

    def drain_events(self, allowed_methods=None, timeout=None):
        self.timeouts.append(timeout)
        if not self.script:
            raise TimeoutError("timed out")
        channel_id = self.script.pop(0)
        if channel_id is None:
            raise TimeoutError("timed out")
        self._last_channel_id = channel_id
        return channel_id


def channels(*ids: int) -> list[types.SimpleNamespace]:
    return [types.SimpleNamespace(channel_id=i) for i in ids]


def test_drain_events_ignores_allowed_methods(monkeypatch) -> None:
    # The fast path's read loop (py-amqp's drain_events under the plain fallback).
    calls: list[dict] = []
    conn = Connection(host="nowhere:5672")
    monkeypatch.setattr(conn, "_drain_events", lambda timeout: calls.append({"timeout": timeout}))
    conn.drain_events(allowed_methods=[(60, 60)], timeout=1.5)
    conn.drain_events()
    assert calls == [{"timeout": 1.5}, {"timeout": None}]


def test_on_inbound_method_records_the_channel(monkeypatch) -> None:
    monkeypatch.setattr(amqp.Connection, "on_inbound_method", lambda self, *a: "handled")
    conn = Connection(host="nowhere:5672")
    assert conn.on_inbound_method(3, (60, 60), b"", None) == "handled"
    assert conn._last_channel_id == 3


def test_wait_multi_returns_on_a_wanted_channel() -> None:
    conn = ScriptedConnection([5, 0, 2])
    assert conn.wait_multi(channels(1, 2), timeout=10) == 2
    assert conn.script == []
    assert len(conn.timeouts) == 3
    assert all(t is not None and 0 <= t <= 10 for t in conn.timeouts)


def test_wait_multi_without_timeout_waits_for_ever() -> None:
    conn = ScriptedConnection([7, 1])
    assert conn.wait_multi(channels(1)) == 1
    assert conn.timeouts == [None, None]


def test_wait_multi_times_out() -> None:
    conn = ScriptedConnection([None])
    with pytest.raises(TimeoutError):
        conn.wait_multi(channels(1), timeout=0.01)
    conn = ScriptedConnection([9] * 1000)  # only other channels' events
    with pytest.raises(TimeoutError):
        conn.wait_multi(channels(1), timeout=0)
