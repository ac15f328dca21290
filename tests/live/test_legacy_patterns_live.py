"""Usage patterns of Celery 1.x-era services and Django projects, on RabbitMQ.

The same patterns as tests/unit/test_legacy_patterns.py, written as legacy
code wrote them, against a real broker; queue depths are read through a
second, raw py-amqp connection so nothing sent, lost or stranded goes unseen.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from types import SimpleNamespace

import amqp
import pytest

from carrot.backends.base import MessageStateError
from carrot.connection import BrokerConnection, DjangoBrokerConnection
from carrot.exceptions import EncodeError, SerializerNotInstalled, UnknownDeliveryModeError
from carrot.messaging import Consumer, ConsumerSet, Publisher

pytestmark = pytest.mark.rabbitmq

DEADLINE = 10.0


@pytest.fixture
def raw_channel():
    """A raw py-amqp channel on its own connection, to look at the broker's state."""
    with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
        yield conn.channel()


def depth(raw_channel, queue: str) -> int:
    return raw_channel.queue_declare(queue, passive=True).message_count


def wait_for_depth(raw_channel, queue: str, expected: int) -> None:
    """Wait (bounded) until the broker reports ``expected`` ready messages in ``queue``."""
    deadline = time.monotonic() + DEADLINE
    for _ in range(1000):
        if depth(raw_channel, queue) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert depth(raw_channel, queue) == expected


def take_the_one_message(consumer, raw_channel, queue: str):
    """Wait until ``queue`` holds exactly one message; fetch, ack and return its payload."""
    wait_for_depth(raw_channel, queue, 1)
    message = consumer.fetch()
    message.ack()
    return message.payload


def drain_until(connection, done) -> None:
    deadline = time.monotonic() + DEADLINE
    for _ in range(100_000):
        if done():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(socket.timeout):
            connection.drain_events(timeout=min(remaining, 1.0))
    pytest.fail(f"not done within {DEADLINE} s")


@pytest.fixture
def celery_names(unique, amqp_cleanup):
    """Celery 1.0's queue/exchange/routing key, made unique for this test."""
    amqp_cleanup.queue(unique)
    amqp_cleanup.exchange(unique)
    return unique


def task_classes(name: str) -> tuple[type[Publisher], type[Consumer]]:
    """Celery 1.0's TaskPublisher/TaskConsumer, with ``name`` for "celery"."""

    class TaskPublisher(Publisher):
        exchange = name
        routing_key = name
        serializer = "pickle"

    class TaskConsumer(Consumer):
        queue = name
        exchange = name
        routing_key = name
        exchange_type = "direct"

    return TaskPublisher, TaskConsumer


def test_celery_task_publisher_and_consumer(amqp_connection, celery_names, raw_channel):
    task_publisher, task_consumer = task_classes(celery_names)
    consumer = task_consumer(amqp_connection)
    publisher = task_publisher(amqp_connection)
    task = {"task": "tasks.add", "id": "1", "args": (2, 2), "kwargs": {}}
    publisher.send(task)
    wait_for_depth(raw_channel, celery_names, 1)
    message = consumer.fetch()
    assert message.content_type == "application/x-python-serialize"
    assert message.payload == task
    assert message.delivery_info["routing_key"] == celery_names
    message.ack()
    with pytest.raises(MessageStateError):
        message.ack()
    assert consumer.fetch() is None
    publisher.close()
    consumer.close()


def test_consumer_set_from_dict_iterconsume_next(amqp_connection, celery_names, raw_channel):
    task_publisher, _ = task_classes(celery_names)
    cset = ConsumerSet(
        amqp_connection,
        from_dict={
            celery_names: {
                "exchange": celery_names,
                "binding_key": celery_names,
                "exchange_type": "direct",
            }
        },
    )
    received = []

    def on_message(message_data, message):
        received.append(message_data)
        message.ack()

    cset.register_callback(on_message)
    publisher = task_publisher(amqp_connection)
    for i in range(3):
        publisher.send({"n": i})
    it = cset.iterconsume()
    for _ in range(3):  # Celery 1.0: ``while True: it.next()``
        assert next(it)
    assert received == [{"n": 0}, {"n": 1}, {"n": 2}]
    cset.close()
    assert list(itertools.islice(it, 1)) == []
    wait_for_depth(raw_channel, celery_names, 0)
    publisher.close()


def test_consumer_set_with_connection_drain_events(amqp_connection, celery_names, raw_channel):
    task_publisher, _ = task_classes(celery_names)
    cset = ConsumerSet(
        amqp_connection,
        from_dict={celery_names: {"exchange": celery_names, "binding_key": celery_names}},
    )
    received = []
    cset.register_callback(lambda data, message: (received.append(data), message.ack()))
    cset.consume()
    publisher = task_publisher(amqp_connection)
    publisher.send("a")
    publisher.send("b")
    drain_until(amqp_connection, lambda: len(received) == 2)
    assert received == ["a", "b"]
    with pytest.raises(socket.timeout):
        amqp_connection.drain_events(timeout=0.2)
    cset.close()
    publisher.close()
    wait_for_depth(raw_channel, celery_names, 0)


def test_wait_multi_on_the_raw_connection(amqp_connection, celery_names):
    # Celery 1.0 called the py-amqp connection's wait_multi with its channels.
    _, task_consumer = task_classes(celery_names)
    consumer = task_consumer(amqp_connection)
    received = []
    consumer.register_callback(lambda data, message: (received.append(data), message.ack()))
    consumer.consume()
    Publisher(amqp_connection, exchange=celery_names, routing_key=celery_names).send("w")
    deadline = time.monotonic() + DEADLINE
    for _ in range(100):
        if received or time.monotonic() > deadline:
            break
        with contextlib.suppress(socket.timeout):
            amqp_connection.connection.wait_multi([consumer.backend.channel], timeout=1.0)
    assert received == ["w"]
    consumer.close()


def test_django_broker_connection_from_settings(celery_names, raw_channel):
    settings = SimpleNamespace(
        BROKER_HOST="127.0.0.1",
        BROKER_PORT=5672,
        BROKER_USER="guest",
        BROKER_PASSWORD="guest",
        BROKER_VHOST="/",
    )
    with DjangoBrokerConnection(settings=settings) as conn:
        consumer = Consumer(conn, queue=celery_names, exchange=celery_names)
        Publisher(conn, exchange=celery_names).send({"django": True})
        assert take_the_one_message(consumer, raw_channel, celery_names) == {"django": True}
    assert conn.connection is None


def test_discard_all_counts_and_strands_nothing(amqp_connection, celery_names, raw_channel):
    consumer = Consumer(amqp_connection, queue=celery_names, exchange=celery_names)
    publisher = Publisher(amqp_connection, exchange=celery_names)
    for i in range(5):
        publisher.send(i)
    wait_for_depth(raw_channel, celery_names, 5)
    assert consumer.discard_all(filterfunc=lambda m: m.payload % 2 == 0) == 3
    # The two that did not match are back on the queue, not held unacked.
    wait_for_depth(raw_channel, celery_names, 2)
    assert consumer.discard_all() == 2
    wait_for_depth(raw_channel, celery_names, 0)
    consumer.close()
    publisher.close()


def test_no_ack_consumer_iterconsume(amqp_connection, celery_names, raw_channel):
    consumer = Consumer(amqp_connection, queue=celery_names, exchange=celery_names, no_ack=True)
    received = []
    consumer.register_callback(lambda data, message: received.append(data))
    publisher = Publisher(amqp_connection, exchange=celery_names)
    publisher.send("a")
    publisher.send("b", serializer="pickle")
    assert list(consumer.iterconsume(limit=2)) == [True, True]
    assert received == ["a", "b"]
    consumer.close()
    # no_ack: the broker forgot them on delivery, nothing comes back.
    wait_for_depth(raw_channel, celery_names, 0)
    publisher.close()


def test_with_broker_connection_block(amqp_conninfo, celery_names, raw_channel):
    with BrokerConnection(**amqp_conninfo) as conn:
        Consumer(conn, queue=celery_names, exchange=celery_names).close()
        Publisher(conn, exchange=celery_names).send("x")
        assert conn.connection.connected
    assert conn.connection is None
    wait_for_depth(raw_channel, celery_names, 1)


def test_publisher_on_the_default_exchange(amqp_connection, celery_names, raw_channel):
    consumer = Consumer(amqp_connection, queue=celery_names)  # no exchange: default binding
    publisher = Publisher(amqp_connection, exchange="", routing_key=celery_names)
    publisher.declare()  # carrot 0.10 did nothing here; RabbitMQ refuses to declare ""
    publisher.send("direct to the queue")
    assert take_the_one_message(consumer, raw_channel, celery_names) == "direct to the queue"
    consumer.close()
    publisher.close()


def test_bad_input_sends_nothing(amqp_connection, celery_names, raw_channel):
    consumer = Consumer(amqp_connection, queue=celery_names, exchange=celery_names)
    publisher = Publisher(amqp_connection, exchange=celery_names)
    with pytest.raises(EncodeError):
        publisher.send({"when": object()})
    with pytest.raises(SerializerNotInstalled, match="'bson'"):
        publisher.send({"a": 1}, serializer="bson")
    with pytest.raises(UnknownDeliveryModeError, match="3"):
        publisher.send("x", delivery_mode=3)
    with pytest.raises(UnknownDeliveryModeError, match="'sticky'"):
        Publisher(amqp_connection, exchange=celery_names, delivery_mode="sticky")
    for priority in (300, "high"):  # py-amqp's struct.error named nothing
        with pytest.raises(EncodeError, match="priority"):
            publisher.send("x", priority=priority)
    # The channel is still usable and nothing went out before.
    publisher.send("after", priority=5)
    assert take_the_one_message(consumer, raw_channel, celery_names) == "after"
    consumer.close()
    publisher.close()


def test_consumer_set_keeps_going_after_an_undecodable_body(
    amqp_connection, celery_names, raw_channel
):
    errors, received = [], []
    cset = ConsumerSet(
        amqp_connection,
        from_dict={celery_names: {"exchange": celery_names, "binding_key": celery_names}},
        on_decode_error=lambda message, exc: (errors.append(message.body), message.reject()),
    )
    cset.register_callback(lambda data, message: (received.append(data), message.ack()))
    publisher = Publisher(amqp_connection, exchange=celery_names, routing_key=celery_names)
    publisher.send(b"{not json", content_type="application/json", content_encoding="binary")
    publisher.send({"ok": 1})
    cset.consume()
    drain_until(amqp_connection, lambda: len(errors) + len(received) == 2)
    assert errors == [b"{not json"]
    assert received == [{"ok": 1}]
    cset.close()
    publisher.close()
    wait_for_depth(raw_channel, celery_names, 0)


def test_auto_ack_with_no_ack_keeps_the_channel(amqp_connection, celery_names, raw_channel):
    consumer = Consumer(
        amqp_connection, queue=celery_names, exchange=celery_names, no_ack=True, auto_ack=True
    )
    received = []
    consumer.register_callback(lambda data, message: received.append(data))
    publisher = Publisher(amqp_connection, exchange=celery_names)
    for body in ("a", "b", "c"):
        publisher.send(body)
    assert list(consumer.iterconsume(limit=3)) == [True, True, True]
    assert received == ["a", "b", "c"]
    consumer.cancel()
    # The channel is still open: an ack of a no_ack delivery would have closed it.
    publisher.send("d")
    wait_for_depth(raw_channel, celery_names, 1)
    # basic_get waits for the broker's answer, so a closed channel shows here.
    assert consumer.fetch().payload == "d"  # no_ack: nothing to ack
    assert consumer.backend.channel.is_open
    consumer.close()
    publisher.close()


@pytest.mark.redis
def test_discard_all_with_a_filter_keeps_the_order_on_redis(unique):
    conn = BrokerConnection(hostname="redis://127.0.0.1:6379/0", backend_cls="redis")
    consumer = Consumer(conn, queue=unique, exchange=unique, routing_key=unique)
    try:
        publisher = Publisher(conn, exchange=unique, routing_key=unique)
        for i in range(6):
            publisher.send(i)
        assert consumer.discard_all(filterfunc=lambda m: m.payload % 2 == 0) == 3
        rest = []
        for message in consumer.iterqueue(limit=10):
            rest.append(message.payload)
            message.ack()
        assert rest == [1, 3, 5]
    finally:
        with contextlib.suppress(Exception):
            consumer.backend.queue_delete(unique)
        conn.close()


def test_discard_all_with_a_filter_keeps_the_order_on_rabbitmq(
    amqp_connection, celery_names, raw_channel
):
    publisher = Publisher(amqp_connection, exchange=celery_names)
    consumer = Consumer(amqp_connection, queue=celery_names, exchange=celery_names)
    for i in range(6):
        publisher.send(i)
    wait_for_depth(raw_channel, celery_names, 6)
    assert consumer.discard_all(filterfunc=lambda m: m.payload % 2 == 0) == 3
    wait_for_depth(raw_channel, celery_names, 3)
    rest = []
    for message in consumer.iterqueue(limit=10):
        rest.append(message.payload)
        message.ack()
    assert rest == [1, 3, 5]
    consumer.close()
    publisher.close()


def test_celery_1_0_mainloop_on_the_raw_connection(amqp_connection, celery_names, amqp_cleanup):
    control_queue = amqp_cleanup.queue(f"{celery_names}.ctl")
    control_exchange = amqp_cleanup.exchange(f"{celery_names}.ctlx")
    task_publisher, _ = task_classes(celery_names)
    tasks, control = [], []
    cset = ConsumerSet(
        amqp_connection,
        from_dict={celery_names: {"exchange": celery_names, "binding_key": celery_names}},
    )
    cset.register_callback(lambda data, message: (tasks.append(data), message.ack()))
    cset.qos(prefetch_count=4)
    broadcast = Consumer(
        amqp_connection, queue=control_queue, exchange=control_exchange, exchange_type="fanout"
    )
    broadcast.register_callback(lambda data, message: (control.append(data), message.ack()))
    raw_connection = amqp_connection.connection
    assert hasattr(raw_connection, "drain_events")
    cset.iterconsume()  # Celery 1.0 dropped the iterator and drained the connection
    broadcast.consume()
    task_publisher(amqp_connection).send("task")
    Publisher(amqp_connection, exchange=control_exchange, exchange_type="fanout").send("ping")
    drain_until(raw_connection, lambda: tasks and control)
    assert (tasks, control) == (["task"], ["ping"])
    cset.close()
    broadcast.close()
