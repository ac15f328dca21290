"""carrot.messaging logic against a recording fake backend (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from carrot.backends.base import BaseBackend, BaseMessage
from carrot.exceptions import CarrotError, EncodeError, MessageStateError
from carrot.messaging import (
    Consumer,
    ConsumerSet,
    FilterWithAutoAckError,
    Messaging,
    Publisher,
    UnknownDeliveryModeError,
)


class RecordingBackend(BaseBackend):
    """Records every contract call; ``get`` pops from :attr:`waiting`."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.calls: list[tuple[str, tuple, dict]] = []
        self.waiting: list[BaseMessage] = []
        self.closed = 0

    def _record(name):  # noqa: N805 -- a decorator factory used in the class body
        def method(self, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))

        method.__name__ = name
        return method

    queue_declare = _record("queue_declare")
    exchange_declare = _record("exchange_declare")
    queue_bind = _record("queue_bind")
    declare_consumer = _record("declare_consumer")
    cancel = _record("cancel")
    flow = _record("flow")
    qos = _record("qos")
    publish = _record("publish")
    ack = _record("ack")
    reject = _record("reject")
    requeue = _record("requeue")
    del _record

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        self.calls.append(("queue_purge", (queue,), kwargs))
        count, self.waiting = len(self.waiting), []
        return count

    def get(self, queue: str, no_ack: bool = False) -> Any:
        self.calls.append(("get", (queue,), {"no_ack": no_ack}))
        return self.waiting.pop(0) if self.waiting else None

    def prepare_message(self, message_data: Any, delivery_mode: Any, **kwargs: Any) -> Any:
        return {"body": message_data, "delivery_mode": delivery_mode, **kwargs}

    def message_to_python(self, raw_message: Any) -> BaseMessage:
        return BaseMessage(self, **raw_message)

    def close(self) -> None:
        self.closed += 1

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def last(self, name: str) -> tuple[tuple, dict]:
        for call_name, args, kwargs in reversed(self.calls):
            if call_name == name:
                return args, kwargs
        raise AssertionError(f"{name} was not called; calls: {self.names()}")


class FakeConnection:
    def create_backend(self) -> RecordingBackend:
        return RecordingBackend(self)


def json_message(backend: RecordingBackend, data: Any, tag: int = 1, **info: Any) -> BaseMessage:
    return BaseMessage(
        backend,
        body=json.dumps(data).encode(),
        content_type="application/json",
        content_encoding="utf-8",
        delivery_tag=tag,
        delivery_info={"delivery_tag": tag, **info},
    )


def raw(data: Any, tag: int = 1, **info: Any) -> dict[str, Any]:
    return {
        "body": json.dumps(data).encode(),
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_tag": tag,
        "delivery_info": {"delivery_tag": tag, **info},
    }


@pytest.fixture
def conn() -> FakeConnection:
    return FakeConnection()


# -- Consumer ---------------------------------------------------------------


def test_consumer_declares_queue_exchange_and_binding(conn):
    c = Consumer(conn, queue="q", exchange="x", routing_key="rk", queue_arguments={"a": 1})
    assert c.backend.names() == ["queue_declare", "exchange_declare", "queue_bind"]
    assert c.backend.last("queue_declare")[1] == {
        "queue": "q",
        "durable": True,
        "exclusive": False,
        "auto_delete": False,
        "warn_if_exists": False,
        "arguments": {"a": 1},
    }
    assert c.backend.last("exchange_declare")[1] == {
        "exchange": "x",
        "type": "direct",
        "durable": True,
        "auto_delete": False,
    }
    assert c.backend.last("queue_bind")[1] == {"queue": "q", "exchange": "x", "routing_key": "rk"}


def test_consumer_without_exchange_does_not_bind(conn):
    c = Consumer(conn, queue="q")
    assert c.backend.names() == ["queue_declare"]


def test_consumer_headers_exchange_binds_with_arguments(conn):
    c = Consumer(
        conn, queue="q", exchange="h", exchange_type="headers", routing_key={"format": "pdf"}
    )
    assert c.backend.last("queue_bind")[1] == {
        "queue": "q",
        "exchange": "h",
        "routing_key": "",
        "arguments": {"format": "pdf"},
    }


def test_consumer_class_attributes_and_kwargs_override(conn):
    class Sub(Consumer):
        queue = "subq"
        exchange = "subx"
        routing_key = "subrk"
        durable = False
        exchange_type = "topic"
        auto_ack = True

    c = Sub(conn)
    assert (c.queue, c.exchange, c.routing_key, c.durable, c.exchange_type, c.auto_ack) == (
        "subq",
        "subx",
        "subrk",
        False,
        "topic",
        True,
    )
    c2 = Sub(conn, queue="other", durable=True, auto_ack=False, exchange_type=None)
    assert (c2.queue, c2.durable, c2.auto_ack, c2.exchange_type) == ("other", True, False, "topic")


def test_exclusive_implies_auto_delete(conn):
    c = Consumer(conn, queue="q", exclusive=True)
    assert c.auto_delete is True
    assert c.backend.last("queue_declare")[1]["auto_delete"] is True


def test_auto_declare_false_declares_nothing(conn):
    c = Consumer(conn, queue="q", auto_declare=False)
    assert c.backend.calls == []
    c.declare()
    assert c.backend.names() == ["queue_declare"]


def test_backend_keyword_is_used(conn):
    backend = RecordingBackend(conn)
    c = Consumer(conn, queue="q", backend=backend)
    assert c.backend is backend
    assert backend.names() == ["queue_declare"]


def test_consumer_tags_are_unique_and_name_the_class(conn):
    tags = {Consumer(conn, queue="q", auto_declare=False).consumer_tag for _ in range(200)}
    assert len(tags) == 200
    assert all(tag.startswith("carrot.messaging.Consumer") for tag in tags)


def test_receive_without_callbacks_raises(conn):
    c = Consumer(conn, queue="q")
    with pytest.raises(NotImplementedError, match="No consumer callbacks registered"):
        c.receive({}, None)


def test_callbacks_run_in_order(conn):
    c = Consumer(conn, queue="q")
    seen = []
    c.register_callback(lambda data, message: seen.append(("a", data)))
    c.register_callback(lambda data, message: seen.append(("b", data)))
    c._receive_callback(raw({"x": 1}))
    assert seen == [("a", {"x": 1}), ("b", {"x": 1})]


def test_receive_callback_auto_ack_acks_before_callbacks(conn):
    c = Consumer(conn, queue="q", auto_ack=True)
    states = []
    c.register_callback(lambda data, message: states.append(message.acknowledged))
    c._receive_callback(raw("hi", tag=7))
    assert states == [True]
    assert c.backend.last("ack")[0] == (7,)


def test_fetch_returns_none_on_empty_queue(conn):
    c = Consumer(conn, queue="q")
    assert c.fetch() is None


def test_fetch_no_ack_keeps_carrot_or_semantics(conn):
    c = Consumer(conn, queue="q", no_ack=True)
    c.fetch(no_ack=False)
    assert c.backend.last("get")[1] == {"no_ack": True}


def test_fetch_auto_ack_and_callbacks(conn):
    c = Consumer(conn, queue="q")
    seen = []
    c.register_callback(lambda data, message: seen.append(data))
    c.backend.waiting.append(json_message(c.backend, [1, 2], tag=3))
    message = c.fetch(auto_ack=True, enable_callbacks=True)
    assert message.acknowledged
    assert c.backend.last("ack")[0] == (3,)
    assert seen == [[1, 2]]


def test_fetch_auto_ack_does_not_ack_a_no_ack_message(conn):
    c = Consumer(conn, queue="q", auto_ack=True)
    c.backend.waiting.append(json_message(c.backend, 1))
    message = c.fetch(no_ack=True)
    assert message is not None
    assert "ack" not in c.backend.names()


def test_process_next_warns_and_fetches_with_callbacks(conn):
    c = Consumer(conn, queue="q")
    seen = []
    c.register_callback(lambda data, message: seen.append(data))
    c.backend.waiting.append(json_message(c.backend, "m"))
    with pytest.warns(DeprecationWarning, match=r"fetch\(enable_callbacks=True\)") as record:
        c.process_next()
    assert seen == ["m"]
    assert record[0].filename == __file__


def test_discard_all_without_filter_purges(conn):
    c = Consumer(conn, queue="q")
    c.backend.waiting.extend(json_message(c.backend, i, tag=i) for i in range(3))
    assert c.discard_all() == 3
    assert c.backend.last("queue_purge")[0] == ("q",)


def test_discard_all_filter_acks_matches_and_requeues_the_rest(conn):
    c = Consumer(conn, queue="q")
    c.backend.waiting.extend(json_message(c.backend, i, tag=i) for i in range(1, 6))
    assert c.discard_all(filterfunc=lambda m: m.payload % 2 == 1) == 3
    acked = [args[0] for name, args, _ in c.backend.calls if name == "ack"]
    requeued = [args[0] for name, args, _ in c.backend.calls if name == "requeue"]
    assert acked == [1, 3, 5]
    assert requeued == [4, 2]  # last first: head-requeueing transports keep the order


def test_discard_all_filter_error_requeues_what_was_fetched(conn):
    c = Consumer(conn, queue="q")
    c.backend.waiting.extend(json_message(c.backend, i, tag=i) for i in range(1, 4))

    def filterfunc(message):
        if message.payload == 2:
            raise RuntimeError("bad filter")
        return False

    with pytest.raises(RuntimeError):
        c.discard_all(filterfunc=filterfunc)
    requeued = [args[0] for name, args, _ in c.backend.calls if name == "requeue"]
    assert requeued == [2, 1]  # last first
    assert "ack" not in c.backend.names()


@pytest.mark.parametrize("option", ["auto_ack", "no_ack"])
def test_discard_all_filter_refused_with_auto_ack(conn, option):
    c = Consumer(conn, queue="q", **{option: True})
    with pytest.raises(FilterWithAutoAckError) as info:
        c.discard_all(filterfunc=lambda m: True)
    assert isinstance(info.value, CarrotError)
    assert "auto_ack" in str(info.value)
    assert "get" not in c.backend.names()


def test_iterqueue_checks_limit_before_fetching(conn):
    c = Consumer(conn, queue="q")
    c.backend.waiting.extend(json_message(c.backend, i, tag=i) for i in range(5))
    got = [m.payload for m in c.iterqueue(limit=3)]
    assert got == [0, 1, 2]
    assert len(c.backend.waiting) == 2
    assert c.backend.names().count("get") == 3


def test_iterqueue_stops_on_empty_or_yields_none_when_infinite(conn):
    c = Consumer(conn, queue="q")
    c.backend.waiting.append(json_message(c.backend, "a"))
    assert [m.payload for m in c.iterqueue()] == ["a"]
    c.backend.waiting.append(json_message(c.backend, "b"))
    it = iter(c)
    assert next(it).payload == "b"
    assert next(it) is None
    assert next(it) is None


def test_consume_declares_consumer_once(conn):
    c = Consumer(conn, queue="q", no_ack=True)
    c.consume()
    c.consume()
    assert c.backend.names().count("declare_consumer") == 1
    assert c.backend.last("declare_consumer")[1] == {
        "queue": "q",
        "no_ack": True,
        "callback": c._receive_callback,
        "consumer_tag": c.consumer_tag,
        "nowait": True,
    }
    assert c.channel_open


def test_cancel_and_close(conn):
    c = Consumer(conn, queue="q")
    c.cancel()
    assert "cancel" not in c.backend.names()
    c.consume()
    c.cancel()
    assert c.backend.last("cancel")[0] == (c.consumer_tag,)
    assert not c.channel_open
    with Consumer(conn, queue="q") as c2:
        c2.consume()
    assert c2.backend.closed == 1
    assert c2._closed
    assert c2.backend.last("cancel")[0] == (c2.consumer_tag,)


def test_flow_and_qos_delegate(conn):
    c = Consumer(conn, queue="q")
    c.flow(False)
    c.qos(prefetch_count=5)
    assert c.backend.last("flow")[0] == (False,)
    assert c.backend.last("qos")[0] == (0, 5, False)


# -- Publisher ----------------------------------------------------------------


def test_publisher_declares_exchange_only_when_named(conn):
    assert Publisher(conn).backend.calls == []
    p = Publisher(conn, exchange="x", exchange_type="topic", durable=False, auto_delete=True)
    assert p.backend.last("exchange_declare")[1] == {
        "exchange": "x",
        "type": "topic",
        "durable": False,
        "auto_delete": True,
    }
    assert Publisher(conn, exchange="x", auto_declare=False).backend.calls == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("transient", 1), ("persistent", 2), ("non-persistent", 1), (1, 1), (2, 2), (None, 2)],
)
def test_delivery_mode_names(conn, mode, expected):
    p = Publisher(conn, exchange="x", delivery_mode=mode)
    assert p.delivery_mode == expected
    p.send("hi")
    message = p.backend.last("publish")[0][0]
    assert message["delivery_mode"] == expected


def test_delivery_mode_per_send_by_name(conn):
    p = Publisher(conn, exchange="x")
    p.send("hi", delivery_mode="transient")
    assert p.backend.last("publish")[0][0]["delivery_mode"] == 1


def test_unknown_delivery_mode_name(conn):
    with pytest.raises(ValueError, match=r"'sticky'.*'transient'") as info:
        Publisher(conn, exchange="x", delivery_mode="sticky")
    assert isinstance(info.value, UnknownDeliveryModeError)


def test_publisher_constants():
    assert Publisher.DELIVERY_MODES == {"transient": 1, "persistent": 2, "non-persistent": 1}
    assert Publisher.TRANSIENT_DELIVERY_MODE == Publisher.NONE_PERSISTENT_DELIVERY_MODE == 1
    assert Publisher.PERSISTENT_DELIVERY_MODE == 2


def test_send_serializes_and_publishes(conn):
    p = Publisher(conn, exchange="x", routing_key="rk")
    p.send({"a": 1}, priority=4)
    args, kwargs = p.backend.last("publish")
    message = args[0]
    assert json.loads(message["body"]) == {"a": 1}
    assert message["content_type"] == "application/json"
    assert message["content_encoding"] == "utf-8"
    assert message["priority"] == 4
    assert kwargs == {
        "exchange": "x",
        "routing_key": "rk",
        "mandatory": False,
        "immediate": False,
        "headers": None,
    }


def test_send_overrides_routing_key_and_exchange(conn):
    p = Publisher(conn, exchange="x", routing_key="rk")
    p.send("m", routing_key="other", exchange="y", mandatory=True, immediate=True)
    assert p.backend.last("publish")[1] == {
        "exchange": "y",
        "routing_key": "other",
        "mandatory": True,
        "immediate": True,
        "headers": None,
    }


def test_send_headers_exchange_swaps_routing_key_for_headers(conn):
    p = Publisher(conn, exchange="h", exchange_type="headers", routing_key={"a": "1"})
    p.send("m")
    assert p.backend.last("publish")[1]["headers"] == {"a": "1"}
    assert p.backend.last("publish")[1]["routing_key"] == ""
    p.send("m", routing_key={"b": "2"})
    assert p.backend.last("publish")[1]["headers"] == {"b": "2"}


def test_encoding_failure_raises_before_publish(conn):
    p = Publisher(conn, exchange="x")
    with pytest.raises(EncodeError):
        p.send(object())
    with pytest.raises(EncodeError):
        p.send({"a": 1}, content_type="application/json")
    with pytest.raises(EncodeError):
        p.send("\u20ac", content_type="text/plain", content_encoding="ascii")
    assert "publish" not in p.backend.names()


def test_create_message_with_content_type_does_not_serialize(conn):
    p = Publisher(conn, exchange="x")
    m = p.create_message("h\u00e9", content_type="text/plain")
    assert (m["body"], m["content_encoding"]) == ("h\u00e9".encode(), "utf-8")
    m = p.create_message("h\u00e9", content_type="text/plain", content_encoding="latin-1")
    assert m["body"] == "h\u00e9".encode("latin-1")
    m = p.create_message(b"\x00\xff", content_type="application/octet-stream")
    assert (m["body"], m["content_encoding"]) == (b"\x00\xff", "binary")
    m = p.create_message(b"{}", content_type="application/json", content_encoding="utf-8")
    assert (m["body"], m["content_encoding"]) == (b"{}", "utf-8")


def test_create_message_serializer_choice(conn):
    p = Publisher(conn, exchange="x", serializer="pickle")
    assert p.create_message([1])["content_type"] == "application/x-python-serialize"
    assert p.create_message([1], serializer="json")["content_type"] == "application/json"
    assert Publisher(conn).create_message(b"raw")["content_type"] == "application/data"


def test_publisher_close_and_context_manager(conn):
    with Publisher(conn, exchange="x") as p:
        assert not p._closed
    assert p._closed
    assert p.backend.closed == 1


# -- Messaging ----------------------------------------------------------------


def test_messaging_pairs_publisher_and_consumer(conn):
    class M(Messaging):
        queue = "mq"
        exchange = "mx"
        routing_key = "mrk"

    m = M(conn, serializer="pickle")
    assert (m.consumer.queue, m.consumer.exchange, m.consumer.routing_key) == ("mq", "mx", "mrk")
    assert (m.publisher.exchange, m.publisher.routing_key) == ("mx", "mrk")
    assert m.publisher.serializer == "pickle"
    with pytest.raises(NotImplementedError):
        m.receive(1, None)
    seen = []
    m.register_callback(lambda data, message: seen.append(data))
    m.consumer._receive_callback(raw({"k": "v"}))
    assert seen == [{"k": "v"}]
    m.send("x", delivery_mode=1)
    assert m.publisher.backend.last("publish")[0][0]["delivery_mode"] == 1
    m.consumer.backend.waiting.append(json_message(m.consumer.backend, 5))
    assert m.fetch(auto_ack=True).payload == 5
    with m:
        pass
    assert m._closed and m.consumer.backend.closed == 1 and m.publisher.backend.closed == 1


# -- ConsumerSet --------------------------------------------------------------


def test_consumer_set_shares_one_backend(conn):
    other = Consumer(conn, queue="c")
    cset = ConsumerSet(
        conn, from_dict={"a": {"binding_key": "ka", "exchange": "x"}}, consumers=[other]
    )
    assert [c.queue for c in cset.consumers] == ["c", "a"]
    assert all(c.backend is cset.backend for c in cset.consumers)
    assert cset.consumers[1].routing_key == "ka"
    cset.consume()
    declared = [kw for name, _, kw in cset.backend.calls if name == "declare_consumer"]
    assert [d["queue"] for d in declared] == ["c", "a"]
    assert [d["nowait"] for d in declared] == [True, True]
    assert all(d["callback"] == cset._receive_callback for d in declared)


def test_consumer_set_declares_consumers_added_at_run_time(conn):
    cset = ConsumerSet(conn, from_dict={"a": {}})
    cset.consume()
    cset.consumers.append(Consumer(conn, queue="b", backend=cset.backend))
    cset.consume()
    declared = [kw["queue"] for name, _, kw in cset.backend.calls if name == "declare_consumer"]
    assert declared == ["a", "b"]


def test_consumer_set_receive_order_and_child_callbacks(conn):
    cset = ConsumerSet(conn, from_dict={"a": {}, "b": {}})
    seen = []
    cset.register_callback(lambda data, message: seen.append(("set", data)))
    child = cset.consumers[1]
    child.register_callback(lambda data, message: seen.append(("child", data)))
    cset.consume()
    cset._receive_callback(raw(1, consumer_tag=cset.consumers[0].consumer_tag))
    cset._receive_callback(raw(2, consumer_tag=child.consumer_tag))
    # compat: a child with callbacks of its own gets its messages alone, as in carrot.
    assert seen == [("set", 1), ("child", 2)]


def test_consumer_set_child_callbacks_alone_and_none(conn):
    cset = ConsumerSet(conn, from_dict={"a": {}, "b": {}})
    seen = []
    cset.consumers[0].register_callback(lambda data, message: seen.append(data))
    cset.consume()
    cset._receive_callback(raw("x", consumer_tag=cset.consumers[0].consumer_tag))
    assert seen == ["x"]
    with pytest.raises(NotImplementedError):
        cset._receive_callback(raw("y", consumer_tag=cset.consumers[1].consumer_tag))


def test_consumer_set_decode_error(conn):
    broken = {
        "body": b"{not json",
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_tag": 1,
        "delivery_info": {},
    }
    cset = ConsumerSet(conn, callbacks=[lambda data, message: None])
    with pytest.raises(ValueError):
        cset._receive_callback(broken)
    errors = []
    cset = ConsumerSet(conn, on_decode_error=lambda message, exc: errors.append((message, exc)))
    cset.register_callback(lambda data, message: errors.append(data))
    cset._receive_callback(broken)
    cset._receive_callback(raw("good"))
    assert errors[0][0].body == b"{not json"
    assert isinstance(errors[0][1], ValueError)
    assert errors[1] == "good"


def test_consumer_set_auto_ack(conn):
    cset = ConsumerSet(conn, auto_ack=True, callbacks=[lambda d, m: None])
    cset._receive_callback(raw(1, tag=9))
    assert cset.backend.last("ack")[0] == (9,)


def test_consumer_set_cancel_by_queue_and_close(conn):
    cset = ConsumerSet(conn, from_dict={"a": {}, "b": {}})
    extra = Consumer(conn, queue="c")
    cset.consumers.append(extra)  # keeps its own backend
    cset.consume()
    tag_a = cset.consumers[0].consumer_tag
    cset.cancel_by_queue("a")
    assert cset.backend.last("cancel")[0] == (tag_a,)
    assert [c.queue for c in cset.consumers] == ["b", "c"]
    cset.consume()
    declared = [kw["queue"] for name, _, kw in cset.backend.calls if name == "declare_consumer"]
    assert declared == ["a", "b", "c"]
    cset.cancel_by_queue("nope")
    with cset:
        pass
    cancelled = [args[0] for name, args, _ in cset.backend.calls if name == "cancel"]
    assert sorted(cancelled) == sorted([tag_a, cset.consumers[0].consumer_tag, extra.consumer_tag])
    assert cset.backend.closed == 1
    assert extra.backend.closed == 1


def test_consumer_set_discard_all_flow_qos(conn):
    cset = ConsumerSet(conn, from_dict={"a": {}, "b": {}})
    cset.backend.waiting.extend(json_message(cset.backend, i) for i in range(4))
    assert cset.discard_all() == 4
    cset.flow(True)
    cset.qos(prefetch_count=2)
    assert cset.backend.last("flow")[0] == (True,)
    assert cset.backend.last("qos")[0] == (0, 2, False)


# -- messages -----------------------------------------------------------------


def test_message_state_machine(conn):
    backend = RecordingBackend(conn)
    for settle in ("ack", "reject", "requeue"):
        message = json_message(backend, 1, tag=11)
        getattr(message, settle)()
        assert message.acknowledged
        for again in ("ack", "reject", "requeue"):
            with pytest.raises(MessageStateError):
                getattr(message, again)()
        assert backend.names().count(settle) >= 1


def test_message_payload_cached_when_falsy(conn, monkeypatch):
    message = json_message(RecordingBackend(conn), 0)
    decodes = []
    original = BaseMessage.decode

    def counting_decode(self):
        decodes.append(1)
        return original(self)

    monkeypatch.setattr(BaseMessage, "decode", counting_decode)
    assert message.payload == 0
    assert message.payload == 0
    assert len(decodes) == 1


# -- end to end through the in-memory backend (no socket) ---------------------


@pytest.fixture
def memory_conn():
    from carrot.backends import queue as memory
    from carrot.connection import BrokerConnection

    memory.reset()
    conn = BrokerConnection(backend_cls="memory")
    try:
        yield conn
    finally:
        conn.close()
        memory.reset()


def test_memory_send_fetch_consume(memory_conn):
    consumer = Consumer(memory_conn, queue="q", exchange="x", routing_key="rk")
    publisher = Publisher(memory_conn, exchange="x", routing_key="rk")
    publisher.send({"n": 1})
    message = consumer.fetch()
    assert message.payload == {"n": 1}
    assert message.delivery_info["routing_key"] == "rk"
    message.ack()
    seen = []
    consumer.register_callback(lambda data, m: (seen.append(data), m.ack()))
    publisher.send({"n": 2})
    publisher.send({"n": 3})
    assert consumer.wait(limit=2) == [True, True]
    assert seen == [{"n": 2}, {"n": 3}]
    consumer.close()
    assert consumer._closed
    assert not consumer.channel_open


def test_memory_consumer_set_and_messaging(memory_conn):
    cset = ConsumerSet(memory_conn, from_dict={"a": {}, "b": {}})
    seen = []
    cset.register_callback(lambda data, m: seen.append(data))
    publisher = Publisher(memory_conn, exchange="x")
    publisher.send("one")
    publisher.send("two")
    it = cset.iterconsume(limit=2)
    assert all(it)
    assert seen == ["one", "two"]
    cset.close()
    messaging = Messaging(memory_conn, queue="m", exchange="m", routing_key="m")
    messaging.send("via messaging")
    assert messaging.fetch().payload == "via messaging"
    messaging.close()
