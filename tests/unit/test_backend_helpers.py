"""carrot.backends.base: the helpers every backend shares (no sockets)."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace
from typing import Any

import pytest

from carrot.backends import base
from carrot.backends.base import (
    BaseBackend,
    ClientAttribute,
    FlowByCancelMixin,
    QueueAlreadyExistsWarning,
    import_client,
    publish_flags,
)
from carrot.exceptions import ClientNotInstalled, MissingConnectionSetting


class NotFoundError(Exception):
    reply_code = 404


class RefusedError(Exception):
    reply_code = 403


class FakeChannel:
    def __init__(self, known: set[str], error: type[Exception] = NotFoundError) -> None:
        self.known = known
        self.error = error
        self.is_open = True
        self.closed = 0

    def queue_declare(self, queue: str, passive: bool) -> None:
        assert passive
        if queue not in self.known:
            self.is_open = False  # the broker closes the channel
            raise self.error(queue)

    def exchange_declare(self, exchange: str, type: str, passive: bool) -> None:  # noqa: A002 -- py-amqp's name
        assert passive and type == "direct"
        if exchange not in self.known:
            self.is_open = False
            raise self.error(exchange)

    def close(self) -> None:
        self.closed += 1
        self.is_open = False


class FakeConnection:
    def __init__(self, known: set[str], error: type[Exception] = NotFoundError) -> None:
        self.channels: list[FakeChannel] = []
        self.known = known
        self.error = error
        self.server_properties: dict[str, Any] = {}

    def channel(self) -> FakeChannel:
        channel = FakeChannel(self.known, self.error)
        self.channels.append(channel)
        return channel


class AMQPish(BaseBackend):
    channel_errors = (NotFoundError, RefusedError)


def backend_on(connection: Any, **settings: Any) -> AMQPish:
    return AMQPish(SimpleNamespace(connection=connection, **settings))


def test_import_client_names_the_pip_package() -> None:
    assert import_client("json", "json") is __import__("json")
    with pytest.raises(ClientNotInstalled, match=r"pip install stomp\.py") as info:
        import_client("carrot_no_such_client", "stomp.py", "stomp")
    assert isinstance(info.value, ImportError)
    assert info.value.backend == "stomp"


def test_client_attribute_resolves_on_access_and_falls_back_without_the_client() -> None:
    calls: list[int] = []

    def resolve() -> tuple[type[BaseException], ...]:
        calls.append(1)
        return (KeyError,)

    def missing() -> Any:
        import carrot_no_such_client  # noqa: F401 -- the import is the point

    class Backend(BaseBackend):
        connection_errors = ClientAttribute(resolve, ())
        channel_errors = ClientAttribute(missing, ())

    assert calls == []  # nothing imported at class creation
    assert Backend.connection_errors == (KeyError,)
    assert Backend(None).connection_errors == (KeyError,)
    assert Backend.channel_errors == ()


@pytest.mark.parametrize(
    ("mandatory", "immediate", "expected"),
    [(None, None, (False, None)), (True, None, (True, None)), (None, True, (True, "0"))],
)
def test_publish_flags_emulate_immediate(mandatory: Any, immediate: Any, expected: Any) -> None:
    assert publish_flags(mandatory, immediate) == expected


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({"hostname": "", "userid": "u", "password": "p"}, "hostname"),
        ({"hostname": "h", "userid": None, "password": "p"}, "userid"),
        ({"hostname": "h", "userid": "u", "password": None}, "password"),
    ],
)
def test_check_settings_names_the_missing_one(settings: dict[str, Any], missing: str) -> None:
    backend = backend_on(None, **settings)
    with pytest.raises(MissingConnectionSetting) as info:
        backend.check_settings("hostname", "userid", "password", kind="STOMP")
    assert info.value.setting == missing
    assert isinstance(info.value, KeyError)
    assert "STOMP connection" in str(info.value)


def test_check_settings_accepts_an_empty_password() -> None:
    backend_on(None, hostname="h", userid="", password="").check_settings(
        "hostname", "userid", "password"
    )


def test_queue_and_exchange_exist_by_passive_declare_on_a_throwaway_channel() -> None:
    connection = FakeConnection({"there"})
    backend = backend_on(connection)
    assert backend.queue_exists("there")
    assert not backend.queue_exists("gone")
    assert backend.exchange_exists("there")
    assert backend.exchange_exists("gone") is False
    assert len(connection.channels) == 4
    # Closed when the broker left them open; never closed twice.
    assert [ch.closed for ch in connection.channels] == [1, 0, 1, 0]


def test_passive_declare_reraises_errors_other_than_404() -> None:
    backend = backend_on(FakeConnection(set(), error=RefusedError))
    with pytest.raises(RefusedError):
        backend.queue_exists("q")


def test_warn_if_queue_exists() -> None:
    backend = backend_on(FakeConnection({"old"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.warn_if_queue_exists("new")
    with pytest.warns(QueueAlreadyExistsWarning, match="'old'") as record:
        backend.warn_if_queue_exists("old", stacklevel=1)
    assert record[0].filename == base.__file__


def test_record_return_logs_and_keeps(caplog: pytest.LogCaptureFixture) -> None:
    backend = BaseBackend(None)
    with caplog.at_level(logging.WARNING, logger="carrot"):
        backend.record_return(312, "NO_ROUTE", "ex", "rk", "msg")
    assert list(backend.returned_messages) == [(312, "NO_ROUTE", "ex", "rk", "msg")]
    assert "312 NO_ROUTE (exchange='ex' routing_key='rk')" in caplog.text
    for n in range(base.RETURNED_MESSAGES_MAX + 5):
        backend.record_return(312, "NO_ROUTE", "ex", str(n), None)
    assert len(backend.returned_messages) == base.RETURNED_MESSAGES_MAX


def test_server_description_and_round_trip_defaults() -> None:
    connection = FakeConnection(set())
    backend = backend_on(connection)
    assert backend.server_description() == "unknown server ?"
    connection.server_properties = {
        "product": b"RabbitMQ",
        "version": "3.13.1",
        "platform": "Erlang/OTP 26",
    }
    assert backend.server_description() == "RabbitMQ 3.13.1 on Erlang/OTP 26"
    label, operation = backend.round_trip()
    assert label == "channel open + close"
    operation()
    assert [ch.closed for ch in connection.channels] == [1]


class Flowing(FlowByCancelMixin, BaseBackend):
    def __init__(self) -> None:
        super().__init__(None)
        self.cancelled: list[str] = []
        self.declared: list[str] = []

    def declare_consumer(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str) -> str:
        self.declared.append(consumer_tag)
        self.remember_consumer(consumer_tag, queue, no_ack, callback)
        return consumer_tag

    def cancel(self, consumer_tag: str) -> None:
        if not self.forget_consumer(consumer_tag):
            self.cancelled.append(consumer_tag)


def test_flow_cancels_and_restarts_and_forget_consumer_knows_paused_ones() -> None:
    backend = Flowing()
    backend.declare_consumer("q", False, print, "a")
    backend.declare_consumer("q", False, print, "b")
    backend.flow(False)
    assert backend.cancelled == ["a", "b"]
    backend.cancel("b")  # paused: nothing more to cancel, not restarted
    assert backend.cancelled == ["a", "b"]
    backend.flow(True)
    assert backend.declared == ["a", "b", "a"]
    backend.forget_consumers()
    backend.flow(False)
    backend.flow(True)
    assert backend.declared == ["a", "b", "a"]


def test_collect_returns_default_is_a_passive_declare_of_amq_direct() -> None:
    calls: list[tuple] = []

    class Channel:
        def exchange_declare(self, *args: Any, **kwargs: Any) -> None:
            calls.append((args, kwargs))

    backend = AMQPish(None)
    backend.channel = Channel()  # type: ignore[attr-defined]
    backend.collect_returns()
    assert calls == [(("amq.direct", "direct"), {"passive": True})]


@pytest.mark.parametrize(
    ("alias", "protocol", "returns_unroutable", "subscribe_before_publish", "note"),
    [
        ("amqp", "AMQP", True, False, ""),
        ("pika", "AMQP", True, False, ""),
        ("memory", "in-process", False, False, ""),
        pytest.param("kombu", "kombu", False, False, "", marks=pytest.mark.kombu),
        pytest.param("redis", "Redis", False, False, "", marks=pytest.mark.kombu),
        ("stomp", "STOMP", False, True, "STOMP: /amq/queue/, no exchange declared"),
    ],
)
def test_what_each_backend_tells_the_command_line(
    alias: str,
    protocol: str,
    returns_unroutable: bool,
    subscribe_before_publish: bool,
    note: str,
) -> None:
    from carrot.backends import get_backend_cls

    cls = get_backend_cls(alias)
    assert cls.protocol == protocol
    assert cls.returns_unroutable is returns_unroutable
    assert cls.subscribe_before_publish is subscribe_before_publish
    assert cls.default_exchange_note == note


@pytest.mark.kombu
def test_only_in_process_backends_say_so() -> None:
    from carrot.backends import queue
    from carrot.connection import BrokerConnection

    assert queue.Backend(None).in_process
    assert queue.Backend(None).server_description() == "carrot memory backend"
    assert not BaseBackend(None).in_process
    assert BrokerConnection(backend_cls="kombu").create_backend().in_process
    assert BrokerConnection(hostname="memory://", backend_cls="kombu").create_backend().in_process
    assert not BrokerConnection(hostname="h", backend_cls="pika").create_backend().in_process
