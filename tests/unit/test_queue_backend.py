"""The in-memory backend (carrot.backends.queue): no sockets, one shared FIFO."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from carrot.backends import get_backend_cls
from carrot.backends import queue as memory
from carrot.backends.base import BaseMessage
from carrot.connection import BrokerConnection
from carrot.exceptions import MessageStateError
from carrot.messaging import Consumer, ConsumerSet, Messaging, Publisher


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    memory.reset()
    yield
    memory.reset()


@pytest.fixture
def conn() -> Iterator[BrokerConnection]:
    connection = BrokerConnection(backend_cls="memory")
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def backend(conn: BrokerConnection) -> memory.Backend:
    return conn.create_backend()


def publish(backend: memory.Backend, body, exchange="ex", routing_key="rk", **kwargs):
    message = backend.prepare_message(
        body, 2, content_type="text/plain", content_encoding="utf-8", **kwargs
    )
    backend.publish(message, exchange=exchange, routing_key=routing_key)


def drain_all(backend, expected: int, per_message_timeout: float = 5.0) -> None:
    for _ in range(expected):
        backend.drain_events(timeout=per_message_timeout)


# -- registry and basics ------------------------------------------------------


@pytest.mark.parametrize("alias", ["memory", "mem", "queue"])
def test_aliases_resolve_to_this_backend(alias):
    assert get_backend_cls(alias) is memory.Backend


def test_prepare_message_is_the_carrot_triple(backend):
    prepared = backend.prepare_message(
        "Vandelay Industries", 1, content_type="text/plain", content_encoding="ascii"
    )
    assert prepared == ("Vandelay Industries", "text/plain", "ascii")
    assert isinstance(prepared, tuple)
    body, content_type, content_encoding = prepared
    assert (body, content_type, content_encoding) == ("Vandelay Industries", "text/plain", "ascii")
    assert prepared.properties == {"delivery_mode": 1, "priority": None}


def test_prepare_message_positional_carrot_010_order(backend):
    # carrot 0.10's signature: (message_data, delivery_mode, content_type, content_encoding)
    prepared = backend.prepare_message(b"x", 1, "application/json", "utf-8")
    assert prepared == (b"x", "application/json", "utf-8")
    assert prepared.properties["priority"] is None


def test_prepare_message_priority_by_keyword(backend):
    # carrot 0.10's positions: priority is a keyword (in **kwargs) here.
    prepared = backend.prepare_message(b"x", 2, "text/plain", "utf-8", priority=7)
    assert prepared == (b"x", "text/plain", "utf-8")
    assert prepared.properties == {"delivery_mode": 2, "priority": 7}


def test_publish_rejects_something_that_is_not_a_triple(backend):
    with pytest.raises(TypeError, match="prepare_message"):
        backend.publish("just a string", exchange="e", routing_key="k")
    assert memory.mqueue.qsize() == 0


def test_get_returns_message_with_properties_and_delivery_info(backend):
    message = backend.prepare_message(b"hello", 2, "text/plain", "utf-8", priority=5)
    backend.publish(message, exchange="A", routing_key="X", headers={"h": "v"})
    received = backend.get("whatever")
    assert isinstance(received, memory.Message)
    assert received.body == b"hello"
    assert received.content_type == "text/plain"
    assert received.content_encoding == "utf-8"
    assert received.payload == "hello"
    assert received.properties["delivery_mode"] == 2
    assert received.properties["priority"] == 5
    assert received.headers == {"h": "v"}
    info = received.delivery_info
    assert info["exchange"] == "A"
    assert info["routing_key"] == "X"
    assert info["redelivered"] is False
    assert info["delivery_tag"] == received.delivery_tag
    assert info["message_count"] == 0


def test_publishing_one_prepared_message_twice_keeps_each_destination(backend):
    message = backend.prepare_message(b"m", 1, content_type="text/plain", content_encoding="utf-8")
    backend.publish(message, exchange="e1", routing_key="k1", headers={"n": 1})
    backend.publish(message, exchange="e2", routing_key="k2")
    first, second = backend.get(), backend.get()
    assert (first.delivery_info["exchange"], first.headers) == ("e1", {"n": 1})
    assert (second.delivery_info["exchange"], second.headers) == ("e2", {})


def test_delivery_tags_are_unique_and_increasing(backend):
    for i in range(5):
        publish(backend, f"m{i}")
    tags = [backend.get().delivery_tag for _ in range(5)]
    assert tags == sorted(tags)
    assert len(set(tags)) == 5


def test_get_never_blocks_on_an_empty_queue(backend):
    started = time.monotonic()
    assert backend.get() is None
    assert backend.get("q", no_ack=True) is None
    # Generous bound: get must not wait for POLL_INTERVAL or a timeout.
    assert time.monotonic() - started < 1.0


def test_fifo_order(backend):
    bodies = [f"message {i}" for i in range(20)]
    for body in bodies:
        publish(backend, body)
    assert [backend.get().body for _ in bodies] == bodies
    assert backend.get() is None


def test_no_routing_any_queue_receives_any_message(conn, backend):
    publish(backend, "for exchange A / key X", exchange="A", routing_key="X")
    other = conn.create_backend()
    received = []
    other.declare_consumer("Y", False, received.append, "consumer-on-Y")
    other.drain_events(timeout=5)
    assert [m.body for m in received] == ["for exchange A / key X"]
    assert received[0].delivery_info["routing_key"] == "X"
    assert received[0].delivery_info["consumer_tag"] == "consumer-on-Y"


def test_each_message_delivered_once(conn, backend):
    for i in range(10):
        publish(backend, i)
    got = [conn.create_backend().get() for _ in range(10)]
    assert sorted(m.body for m in got) == list(range(10))
    assert backend.get() is None


def test_queue_purge_returns_count_removed(backend):
    for i in range(7):
        publish(backend, i)
    assert backend.queue_purge("any name") == 7
    assert backend.queue_purge("any name") == 0
    assert backend.get() is None
    publish(backend, "x")
    assert backend.purge("q") == 1


def test_declarations_accepted_and_queue_declare_reports_counts(backend):
    publish(backend, "a")
    publish(backend, "b")
    backend.exchange_declare("ex", "topic", True, False)
    backend.queue_bind("q", "ex", "#")
    backend.declare_consumer("q", False, lambda m: None, "t1")
    ok = backend.queue_declare("q", True, False, False)
    assert (ok.queue, ok.message_count, ok.consumer_count) == ("q", 2, 1)
    assert backend.queue_exists("anything")
    assert backend.queue_delete("q") == 0
    assert memory.mqueue.qsize() == 2


# -- consumers ----------------------------------------------------------------


def test_consume_limit_yields_true_per_message(backend):
    for i in range(5):
        publish(backend, i)
    received = []
    backend.declare_consumer("q", False, received.append, "tag")
    results = list(backend.consume(limit=3))
    assert results == [True, True, True]
    assert [m.body for m in received] == [0, 1, 2]
    assert memory.mqueue.qsize() == 2


def test_consume_ends_when_backend_closed(backend):
    publish(backend, "only")
    received = []

    def callback(message):
        received.append(message)
        backend.close()

    backend.declare_consumer("q", False, callback, "tag")
    it = backend.consume()
    assert next(it) is True
    # The backend was closed by the callback: the generator ends.
    assert list(it) == []
    assert [m.body for m in received] == ["only"]


def test_consume_ends_when_closed_from_another_thread(backend):
    backend.declare_consumer("q", False, lambda m: None, "tag")
    result: list[list[bool]] = []
    worker = threading.Thread(target=lambda: result.append(list(backend.consume())))
    worker.start()
    backend.close()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert result == [[]]


def test_consume_ends_when_broker_connection_closed(conn, backend):
    backend.declare_consumer("q", False, lambda m: None, "tag")
    conn.close()
    assert list(backend.consume()) == []


def test_drain_events_timeout_raises_socket_timeout(backend):
    backend.declare_consumer("q", False, lambda m: None, "tag")
    with pytest.raises(socket.timeout):
        backend.drain_events(timeout=0.1)


def test_drain_events_zero_timeout_still_delivers_waiting_message(backend):
    publish(backend, "ready")
    received = []
    backend.declare_consumer("q", False, received.append, "tag")
    backend.drain_events(timeout=0)
    assert [m.body for m in received] == ["ready"]


def test_drain_events_without_consumers_leaves_the_message(backend):
    publish(backend, "stays")
    with pytest.raises(socket.timeout):
        backend.drain_events(timeout=0.1)
    assert backend.get().body == "stays"


def test_drain_events_on_closed_backend_raises_connection_error(backend):
    backend.declare_consumer("q", False, lambda m: None, "tag")
    backend.close()
    with pytest.raises(memory.ConnectionClosedError):
        backend.drain_events(timeout=1)
    assert memory.ConnectionClosedError in memory.Backend.connection_errors


def test_consumers_round_robin(backend):
    for i in range(6):
        publish(backend, i)
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for tag in seen:
        backend.declare_consumer(tag, False, lambda m, tag=tag: seen[tag].append(m.body), tag)
    drain_all(backend, 6)
    # Strict turns, in the order the consumers were declared.
    assert seen == {"a": [0, 3], "b": [1, 4], "c": [2, 5]}


def test_cancel_removes_consumer(backend):
    received = []
    backend.declare_consumer("q", False, received.append, "tag")
    backend.cancel("tag")
    backend.cancel("unknown-tag")
    publish(backend, "x")
    with pytest.raises(socket.timeout):
        backend.drain_events(timeout=0.1)
    assert received == []
    assert backend.consumers == {}
    assert memory.mqueue.qsize() == 1


def test_consume_delivers_only_to_own_consumers(conn):
    mine, theirs = conn.create_backend(), conn.create_backend()
    got_mine, got_theirs = [], []
    mine.declare_consumer("q", False, got_mine.append, "mine")
    theirs.declare_consumer("q", False, got_theirs.append, "theirs")
    for i in range(3):
        publish(mine, i)
    drain_all(mine, 3)
    assert [m.body for m in got_mine] == [0, 1, 2]
    assert got_theirs == []


def test_flow_pauses_and_resumes(backend):
    received = []
    backend.declare_consumer("q", False, received.append, "tag")
    publish(backend, "held")
    backend.flow(False)
    with pytest.raises(socket.timeout):
        backend.drain_events(timeout=0.1)
    assert received == []
    backend.flow(True)
    backend.drain_events(timeout=5)
    assert [m.body for m in received] == ["held"]


def test_qos_is_recorded(backend):
    backend.qos(0, 10, False)
    assert (backend.prefetch_size, backend.prefetch_count) == (0, 10)


# -- ack / reject / requeue ---------------------------------------------------


def test_ack_is_valid_and_final(backend):
    publish(backend, "a")
    message = backend.get()
    message.ack()
    assert message.acknowledged
    with pytest.raises(MessageStateError):
        message.requeue()
    assert backend.get() is None


def test_reject_drops(backend):
    publish(backend, "dropped")
    publish(backend, "next")
    backend.get().reject()
    assert backend.get().body == "next"
    assert backend.get() is None


def test_requeue_puts_message_back_first_marked_redelivered(backend):
    publish(backend, "first", exchange="A", routing_key="X")
    publish(backend, "second")
    message = backend.get()
    assert message.delivery_info["redelivered"] is False
    message.requeue()
    again = backend.get()
    assert again.body == "first"
    assert again.delivery_info["redelivered"] is True
    assert again.delivery_info["routing_key"] == "X"
    assert again.delivery_tag != message.delivery_tag
    assert backend.get().body == "second"


def test_requeue_from_consumer_callback(backend):
    publish(backend, "retry me")
    received = []

    def callback(message):
        received.append((message.body, message.delivery_info["redelivered"]))
        if not message.delivery_info["redelivered"]:
            message.requeue()
        else:
            message.ack()

    backend.declare_consumer("q", False, callback, "tag")
    drain_all(backend, 2)
    assert received == [("retry me", False), ("retry me", True)]
    assert memory.mqueue.qsize() == 0


def test_settling_handmade_messages_is_harmless(backend):
    # carrot 0.10's own test built messages by hand and settled them.
    messages = [memory.Message(backend=backend, body="George", delivery_tag="x") for _ in range(3)]
    messages[0].ack()
    messages[1].reject()
    messages[2].requeue()
    assert [m._state for m in messages] == ["ACK", "REJECTED", "REQUEUED"]
    assert backend.get() is None


def test_message_to_python_passes_messages_through_and_wraps_tuples(backend):
    publish(backend, "x")
    message = backend.get()
    assert backend.message_to_python(message) is message
    wrapped = backend.message_to_python(("body", "text/plain", "utf-8"))
    assert isinstance(wrapped, BaseMessage)
    assert (wrapped.body, wrapped.content_type) == ("body", "text/plain")


def test_plain_tuple_put_on_mqueue_is_received(backend):
    memory.mqueue.put(("legacy", "text/plain", "utf-8"))
    message = backend.get()
    assert message.payload == "legacy"
    assert message.delivery_info["exchange"] is None


# -- reset --------------------------------------------------------------------


def test_reset_empties_queue_and_consumers(backend):
    publish(backend, "a")
    publish(backend, "b")
    backend.declare_consumer("q", False, lambda m: None, "tag")
    memory.reset()
    assert memory.mqueue.qsize() == 0
    assert backend.consumers == {}
    publish(backend, "c")
    with pytest.raises(socket.timeout):
        backend.drain_events(timeout=0.1)
    assert backend.get().body == "c"


# -- threads ------------------------------------------------------------------


def test_threaded_publishers_one_consumer_each_message_once(conn):
    publishers, per_publisher = 4, 500
    consumer = conn.create_backend()
    received: list[object] = []
    consumer.declare_consumer("q", False, lambda m: received.append(m.body), "drain")
    start = threading.Barrier(publishers + 1)

    def produce(n: int) -> None:
        backend = conn.create_backend()
        start.wait(timeout=10)
        for i in range(per_publisher):
            publish(backend, f"{n}:{i}")

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(publishers)]
    for thread in threads:
        thread.start()
    start.wait(timeout=10)
    # Each drain waits at most 10 s: a lost message fails instead of hanging.
    drain_all(consumer, publishers * per_publisher, per_message_timeout=10)
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    expected = sorted(f"{n}:{i}" for n in range(publishers) for i in range(per_publisher))
    assert len(received) == publishers * per_publisher
    assert sorted(received) == expected
    # Per publisher, FIFO holds.
    for n in range(publishers):
        mine = [body for body in received if body.startswith(f"{n}:")]
        assert mine == [f"{n}:{i}" for i in range(per_publisher)]
    assert consumer.get() is None


def test_consumer_thread_receives_while_main_thread_publishes(conn):
    backend = conn.create_backend()
    received: list[object] = []
    backend.declare_consumer("q", False, lambda m: received.append(m.body), "tag")
    worker = threading.Thread(target=lambda: list(backend.consume(limit=50)))
    worker.start()
    publisher = conn.create_backend()
    for i in range(50):
        publish(publisher, i)
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert received == list(range(50))


# -- BrokerConnection ---------------------------------------------------------


def test_broker_connection_connects_without_hostname(conn):
    connection = conn.connect()
    assert isinstance(connection, memory.Connection)
    assert connection.connected
    assert conn.connection is connection
    assert connection.server_properties["platform"] == "in-process"
    assert conn.connection_errors == (memory.ConnectionClosedError,)
    conn.close()
    assert not connection.connected
    assert conn.connection is None


def test_broker_connection_drain_events_times_out():
    conn = BrokerConnection(backend_cls="memory")
    try:
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.1)
    finally:
        conn.close()


def test_broker_connection_drain_events_delivers_to_its_backends(conn):
    first, second = conn.create_backend(), conn.create_backend()
    got: list[tuple[str, object]] = []
    first.declare_consumer("q1", False, lambda m: got.append(("first", m.body)), "t1")
    second.declare_consumer("q2", False, lambda m: got.append(("second", m.body)), "t2")
    stranger_conn = BrokerConnection(backend_cls="memory")
    stranger = stranger_conn.create_backend()
    stranger.declare_consumer("q3", False, lambda m: got.append(("stranger", m.body)), "t3")
    for i in range(4):
        publish(first, i)
    for _ in range(4):
        conn.drain_events(timeout=5)
    assert sorted(body for _, body in got) == [0, 1, 2, 3]
    assert {who for who, _ in got} == {"first", "second"}
    stranger_conn.close()


def test_consumer_without_references_keeps_receiving(conn):
    received = []

    def start_consumer():
        consumer = Consumer(connection=conn, queue="q")
        consumer.register_callback(lambda data, message: received.append(data))
        consumer.consume()

    start_consumer()
    gc.collect()
    Publisher(connection=conn).send({"still": "here"})
    conn.drain_events(timeout=5)
    assert received == [{"still": "here"}]


def test_broker_connection_close_cancels_consumers(conn):
    backend = conn.create_backend()
    backend.declare_consumer("q", False, lambda m: None, "tag")
    conn.connect()
    conn.close()
    assert backend.consumers == {}


def test_get_channel_is_a_backend(conn):
    channel = conn.get_channel()
    assert isinstance(channel, memory.Backend)
    assert channel.connection is conn


# -- messaging on the memory backend -----------------------------------------


def test_publisher_consumer_round_trip(conn):
    to_send = ["No", "soup", "for", "you!"]
    received = []
    consumer = Consumer(connection=conn, queue="test", exchange="test", routing_key="test")
    consumer.register_callback(lambda data, message: received.append(data))
    publisher = Publisher(connection=conn, exchange="test", routing_key="test")
    for body in to_send:
        publisher.send(body)
    it = consumer.iterconsume()
    for _ in to_send:
        assert next(it)
    assert received == to_send
    consumer.close()
    publisher.close()


def test_publisher_serializers_round_trip_with_fetch(conn):
    publisher = Publisher(connection=conn, exchange="e", routing_key="k")
    consumer = Consumer(connection=conn, queue="q", exchange="e", routing_key="k")
    payload = {"name": "Cosmo Kramer", "n": [1, 2, 3]}
    for serializer in ("json", "pickle"):
        publisher.send(payload, serializer=serializer)
        message = consumer.fetch()
        assert message.payload == payload
        message.ack()
    publisher.send(b"\x00\x01", priority=3)
    raw = consumer.fetch()
    assert raw.body == b"\x00\x01"
    assert raw.content_type == "application/data"
    assert raw.properties["priority"] == 3
    assert consumer.fetch() is None


def test_messaging_send_fetch():
    messaging = Messaging(
        BrokerConnection(backend_cls=memory.Backend), exchange="t", routing_key="t", queue="t"
    )
    assert messaging.fetch() is None
    messaging.send({"name": "Cosmo Kramer"})
    assert messaging.fetch().decode() == {"name": "Cosmo Kramer"}
    assert messaging.fetch() is None
    messaging.close()


def test_consumer_set_round_trip(conn):
    received = []
    cset = ConsumerSet(conn, from_dict={"q1": {"exchange": "e1"}, "q2": {"exchange": "e2"}})
    cset.register_callback(lambda data, message: received.append(data))
    publisher = Publisher(connection=conn, exchange="e1", routing_key="q1")
    for i in range(4):
        publisher.send({"i": i})
    it = cset.iterconsume(limit=4)
    assert list(it) == [True] * 4
    assert sorted(d["i"] for d in received) == [0, 1, 2, 3]
    cset.close()
    publisher.close()


def test_get_and_publish_accept_extra_arguments_as_carrot_did(backend):
    message = backend.prepare_message(b"x", 1, "text/plain", "utf-8")
    backend.publish(message, "e", "k", mandatory=False, reply_to="ignored")
    received = backend.get("q", True, "extra", no_ack=True, accept=["json"])
    assert received.body == b"x"
    assert backend.get("q", no_ack=False) is None
