"""accept lists and on_decode_error: the edges, against a recording fake backend."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
from test_messaging import FakeConnection, raw

from carrot import serialization
from carrot.connection import BrokerConnection, ConnectionPool
from carrot.exceptions import ContentDisallowed, DecodeError, SerializerNotInstalled
from carrot.messaging import Consumer, ConsumerSet


class _Evil:
    def __init__(self, path: Any) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def pickled(obj: Any, tag: int = 1, **info: Any) -> dict[str, Any]:
    return {
        "body": pickle.dumps(obj),
        "content_type": "application/x-python-serialize",
        "content_encoding": "binary",
        "delivery_tag": tag,
        "delivery_info": {"delivery_tag": tag, **info},
    }


def broken(tag: int = 1, **info: Any) -> dict[str, Any]:
    return {**raw(None, tag, **info), "body": b"{broken"}


@pytest.fixture
def conn() -> FakeConnection:
    return FakeConnection()


# -- serialization ------------------------------------------------------------


def test_decode_with_accept_refuses_before_any_decoder(tmp_path):
    marker = tmp_path / "pwned"
    body = pickle.dumps(_Evil(marker))
    with pytest.raises(ContentDisallowed) as info:
        serialization.decode(body, "application/x-python-serialize", "binary", accept=["json"])
    assert info.value.accepted == ("application/json",)
    assert not marker.exists()
    assert serialization.decode(b"[1]", "application/json", "utf-8", accept=["json"]) == [1]
    assert serialization.decode(b"x", "application/data", "binary", accept=[]) == b"x"
    assert serialization.decode(b"x", None, None, accept=[]) == "x"


def test_accepted_content_types_resolves_names_and_types():
    resolve = serialization.registry.accepted_content_types
    assert resolve(None) is None
    assert resolve(["json", "application/x-yaml"]) == {"application/json", "application/x-yaml"}
    assert resolve(("pickle",)) == {"application/x-python-serialize"}


@pytest.mark.parametrize("bad", ["json", b"json"])
def test_accept_as_a_single_string_is_refused(bad):
    with pytest.raises(TypeError, match="accept must be a list"):
        serialization.registry.accepted_content_types(bad)


def test_accept_with_an_unknown_name_is_refused_naming_it(conn):
    with pytest.raises(SerializerNotInstalled, match="'jsno'"):
        Consumer(conn, queue="q", accept=["jsno"])
    with pytest.raises(SerializerNotInstalled, match="'jsno'"):
        ConsumerSet(conn, accept=["jsno"])


def test_raw_content_type_with_a_registered_decoder_needs_accepting():
    registry = serialization.SerializerRegistry()
    registry.register("texty", None, str.upper, "text/plain")
    assert not registry.is_accepted("text/plain", frozenset({"application/json"}))
    assert registry.is_accepted("application/data", frozenset())


# -- Consumer -----------------------------------------------------------------


def test_fetch_disallowed_returns_the_message_and_payload_raises(conn, tmp_path):
    marker = tmp_path / "pwned"
    consumer = Consumer(conn, queue="q", accept=["json"])
    consumer.backend.waiting.append(consumer.backend.message_to_python(pickled(_Evil(marker))))
    message = consumer.fetch()
    with pytest.raises(ContentDisallowed):
        message.payload  # noqa: B018 -- the property raises
    assert not marker.exists()
    assert not message.acknowledged  # fetch leaves settling to the caller


def test_fetch_enable_callbacks_disallowed_rejects_and_skips_callbacks(conn, caplog):
    consumer = Consumer(conn, queue="q", accept=["json"])
    seen = []
    consumer.register_callback(lambda data, message: seen.append(data))
    consumer.backend.waiting.append(consumer.backend.message_to_python(pickled(1)))
    with caplog.at_level(logging.ERROR, logger="carrot.messaging"):
        message = consumer.fetch(enable_callbacks=True)
    assert seen == []
    assert message._state == "REJECTED"
    assert "'q'" in caplog.records[0].getMessage()


def test_disallowed_delivery_is_rejected_and_logged(conn, caplog):
    consumer = Consumer(conn, queue="q", accept=["json"])
    seen = []
    consumer.register_callback(lambda data, message: seen.append(data))
    with caplog.at_level(logging.DEBUG, logger="carrot.messaging"):
        consumer._receive_callback(pickled(1, tag=7))
    assert seen == []
    assert consumer.backend.last("reject")[0] == (7,)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "application/x-python-serialize" in record.getMessage()


def test_disallowed_delivery_goes_to_the_handler_first(conn):
    calls = []
    consumer = Consumer(
        conn, queue="q", accept=["json"], on_decode_error=lambda m, e: calls.append(e)
    )
    consumer._receive_callback(pickled(1, tag=3))
    assert isinstance(calls[0], ContentDisallowed)
    assert consumer.backend.last("reject")[0] == (3,)


def test_disallowed_is_rejected_not_auto_acked(conn):
    consumer = Consumer(conn, queue="q", accept=["json"], auto_ack=True)
    consumer._receive_callback(pickled(1, tag=4))
    assert "ack" not in consumer.backend.names()
    assert consumer.backend.last("reject")[0] == (4,)


def test_decode_error_rejects_then_propagates(conn):
    consumer = Consumer(conn, queue="q")
    consumer.register_callback(lambda data, message: None)
    with pytest.raises(DecodeError):
        consumer._receive_callback(broken(tag=5))
    assert consumer.backend.last("reject")[0] == (5,)


def test_handler_that_raises_still_leaves_the_message_rejected(conn):
    def handler(message, exc):
        raise RuntimeError("handler failed")

    consumer = Consumer(conn, queue="q", on_decode_error=handler)
    with pytest.raises(RuntimeError, match="handler failed"):
        consumer._receive_callback(broken(tag=6))
    assert consumer.backend.last("reject")[0] == (6,)


def test_handler_that_settles_is_respected(conn):
    consumer = Consumer(conn, queue="q", on_decode_error=lambda m, e: m.requeue())
    consumer._receive_callback(broken(tag=8))
    assert consumer.backend.last("requeue")[0] == (8,)
    assert "reject" not in consumer.backend.names()


def test_decode_error_after_auto_ack_is_not_settled_twice(conn):
    consumer = Consumer(conn, queue="q", auto_ack=True, on_decode_error=lambda m, e: None)
    consumer._receive_callback(broken(tag=9))
    assert consumer.backend.names().count("ack") == 1
    assert "reject" not in consumer.backend.names()


def test_no_ack_deliveries_are_never_rejected(conn):
    consumer = Consumer(conn, queue="q", no_ack=True, accept=["json"])
    consumer.consume()
    consumer._receive_callback(pickled(1))
    with pytest.raises(DecodeError):
        consumer._receive_callback(broken())
    assert "reject" not in consumer.backend.names()


def test_consumer_accept_class_attribute_and_connection_default():
    class JSONOnly(Consumer):
        accept = ["json"]

    conn = FakeConnection()
    conn.accept = ["pickle"]
    assert JSONOnly(conn, queue="q")._accepted_types == {"application/json"}
    assert Consumer(conn, queue="q")._accepted_types == {"application/x-python-serialize"}


# -- ConsumerSet --------------------------------------------------------------


def test_consumer_set_child_accept_wins_over_the_sets(conn):
    cset = ConsumerSet(conn, accept=["json"], from_dict={"a": {}, "b": {"accept": ["pickle"]}})
    got = []
    cset.register_callback(lambda data, message: got.append(data))
    cset.consume()
    tag_a, tag_b = (c.consumer_tag for c in cset.consumers)
    cset._receive_callback(pickled("to b", tag=1, consumer_tag=tag_b))
    cset._receive_callback(pickled("to a", tag=2, consumer_tag=tag_a))
    assert got == ["to b"]
    assert cset.backend.last("reject")[0] == (2,)


def test_consumer_set_decode_error_handler_result_is_settled(conn):
    cset = ConsumerSet(conn, on_decode_error=lambda m, e: None, callbacks=[lambda d, m: None])
    cset._receive_callback(broken(tag=3))
    assert cset.backend.last("reject")[0] == (3,)


def test_consumer_set_child_handler_wins(conn):
    child_errors, set_errors = [], []
    cset = ConsumerSet(conn, on_decode_error=lambda m, e: set_errors.append(e))
    child = Consumer(conn, queue="a", on_decode_error=lambda m, e: child_errors.append(e))
    cset.add_consumer(child)
    cset.consume()
    cset._receive_callback(broken(tag=4, consumer_tag=child.consumer_tag))
    assert len(child_errors) == 1
    assert set_errors == []


# -- BrokerConnection ---------------------------------------------------------


def test_broker_connection_accept_keyword_and_pool_copies():
    conn = BrokerConnection(backend_cls="memory", accept=["json"])
    assert conn.accept == ["json"]
    assert BrokerConnection(backend_cls="memory").accept is None
    pool = ConnectionPool(conn, min=2)
    copy = pool.acquire()
    other = pool.acquire()
    assert copy.accept == ["json"]
    assert other.accept == ["json"]
