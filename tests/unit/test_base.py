"""carrot.backends.base: the message and backend contract."""

from __future__ import annotations

import json

import pytest

from carrot.backends.base import (
    ACKNOWLEDGED_STATES,
    BaseBackend,
    BaseMessage,
    MessageStateError,
)


class RecordingBackend(BaseBackend):
    def __init__(self) -> None:
        super().__init__(connection=None)
        self.calls: list[tuple[str, object]] = []

    def ack(self, delivery_tag):
        self.calls.append(("ack", delivery_tag))

    def reject(self, delivery_tag):
        self.calls.append(("reject", delivery_tag))

    def requeue(self, delivery_tag):
        self.calls.append(("requeue", delivery_tag))


def make_message(**kwargs) -> tuple[BaseMessage, RecordingBackend]:
    backend = RecordingBackend()
    kwargs.setdefault("delivery_tag", 7)
    return BaseMessage(backend, **kwargs), backend


def test_attributes() -> None:
    info = {"exchange": "x", "routing_key": "k"}
    msg, backend = make_message(
        body=b"{}",
        content_type="application/json",
        content_encoding="utf-8",
        delivery_info=info,
    )
    assert msg.backend is backend
    assert msg.body == b"{}"
    assert msg.delivery_tag == 7
    assert msg.content_type == "application/json"
    assert msg.content_encoding == "utf-8"
    assert msg.delivery_info == info
    assert msg._state == "RECEIVED"
    assert not msg.acknowledged
    assert msg.MessageStateError is MessageStateError


def test_delivery_info_defaults_to_a_fresh_dict() -> None:
    a, _ = make_message()
    b, _ = make_message()
    assert a.delivery_info == {}
    a.delivery_info["x"] = 1
    assert b.delivery_info == {}


@pytest.mark.parametrize(
    ("method", "state"), [("ack", "ACK"), ("reject", "REJECTED"), ("requeue", "REQUEUED")]
)
def test_settling_calls_the_backend_once(method: str, state: str) -> None:
    msg, backend = make_message()
    getattr(msg, method)()
    assert backend.calls == [(method, 7)]
    assert msg._state == state
    assert state in ACKNOWLEDGED_STATES
    assert msg.acknowledged
    for again in ("ack", "reject", "requeue"):
        with pytest.raises(MessageStateError):
            getattr(msg, again)()
    assert backend.calls == [(method, 7)]


def test_failed_ack_leaves_the_message_unacknowledged() -> None:
    class Failing(RecordingBackend):
        def ack(self, delivery_tag):
            raise OSError("connection lost")

    msg = BaseMessage(Failing(), delivery_tag=1)
    with pytest.raises(OSError):
        msg.ack()
    assert not msg.acknowledged


def test_decode_json() -> None:
    msg, _ = make_message(
        body=json.dumps({"a": 1}).encode(),
        content_type="application/json",
        content_encoding="utf-8",
    )
    assert msg.decode() == {"a": 1}
    assert msg.payload == {"a": 1}


def test_decode_str_body() -> None:
    # A body the transport already decoded with its content_encoding.
    msg, _ = make_message(
        body='{"a": 1}', content_type="application/json", content_encoding="utf-8"
    )
    assert msg.payload == {"a": 1}


@pytest.mark.parametrize("value", [0, "", {}, [], None, False])
def test_payload_caches_falsy_values(value: object, monkeypatch: pytest.MonkeyPatch) -> None:
    msg, _ = make_message(body=b"x")
    calls: list[int] = []

    def decode() -> object:
        calls.append(1)
        return value

    monkeypatch.setattr(msg, "decode", decode)
    assert msg.payload == value
    assert msg.payload == value
    assert calls == [1]


def test_repr_does_not_fail_without_body() -> None:
    msg, _ = make_message()
    assert "RECEIVED" in repr(msg)


REQUIRED = {
    "queue_delete": ("q",),
    "get": ("q",),
    "declare_consumer": ("q", False, print, "tag"),
    "consume": (),
    "cancel": ("tag",),
    "ack": (1,),
    "reject": (1,),
    "requeue": (1,),
    "queue_purge": ("q",),
    "publish": (b"m", "x", "k"),
    "flow": (False,),
    "qos": (0, 1),
}


def test_base_backend_defaults() -> None:
    conn = object()
    backend = BaseBackend(conn, extra_options={"a": 1})
    assert backend.connection is conn
    assert backend.extra_options == {"a": 1}
    assert BaseBackend(conn).extra_options is None
    assert backend.connection_errors == ()
    assert backend.channel_errors == ()
    assert backend.recoverable_connection_errors is None
    assert list(backend.returned_messages) == []
    # compat: carrot 0.10's defaults where doing nothing is true (no
    # connection of its own, no declarations needed), which ghettoq relied on.
    assert backend.close() is None
    assert backend.establish_connection() is None
    assert backend.close_connection(None) is None
    assert backend.queue_declare("q", True, False, False) is None
    assert backend.exchange_declare("x", "direct", True, False) is None
    assert backend.queue_bind("q", "x", "k") is None
    assert backend.message_to_python("raw") == "raw"
    assert backend.prepare_message(b"data", 2) == b"data"
    assert not backend.in_process


@pytest.mark.parametrize(("method", "args"), sorted(REQUIRED.items()))
def test_required_methods_raise_naming_backend_and_method(method: str, args: tuple) -> None:
    class Partial(BaseBackend):
        pass

    with pytest.raises(NotImplementedError, match=rf"\bPartial does not implement {method}\(\)"):
        getattr(Partial(None), method)(*args)
    with pytest.raises(NotImplementedError, match="Partial does not implement queue_purge"):
        Partial(None).purge("q")


def test_required_methods_keep_their_signatures() -> None:
    import inspect

    assert str(inspect.signature(BaseBackend.qos)) == (
        "(self, prefetch_size: 'int', prefetch_count: 'int', apply_global: 'bool' = False)"
        " -> 'None'"
    )
    assert BaseBackend.flow.__doc__.startswith("Pause")


def test_class_state_is_none_until_init() -> None:
    # compat: carrot's class default; a subclass that skips __init__ still settles.
    class Bare(BaseMessage):
        def __init__(self, backend) -> None:
            self.backend = backend
            self.delivery_tag = 3

    assert BaseMessage._state is None
    backend = RecordingBackend()
    msg = Bare(backend)
    assert msg._state is None
    assert not msg.acknowledged
    msg.ack()
    assert msg.acknowledged
    assert backend.calls == [("ack", 3)]


def test_purge_goes_through_queue_purge() -> None:
    class Counting(BaseBackend):
        def queue_purge(self, queue, **kwargs):
            return len(queue)

    assert Counting(None).purge("four") == 4
