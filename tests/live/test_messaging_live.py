"""carrot.messaging on RabbitMQ: what only a real AMQP broker can show.

The backend-independent behaviour is in tests/behaviour/; these tests check
broker-side effects (durability flags, exclusivity, queue arguments,
priorities, returns, ``immediate``) through a second, raw py-amqp channel.
"""

from __future__ import annotations

import contextlib
import time

import amqp
import pytest
from amqp.exceptions import NotFound, PreconditionFailed, ResourceLocked

from carrot.backends.pyamqplib import QueueAlreadyExistsWarning
from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, ConsumerSet, Publisher

pytestmark = pytest.mark.rabbitmq

DEADLINE = 10.0


def drain_until(connection, done):
    deadline = time.monotonic() + DEADLINE
    for _ in range(100_000):
        if done():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):  # socket.timeout
            connection.drain_events(timeout=min(remaining, 1.0))
    pytest.fail(f"not done within {DEADLINE} s")


@pytest.fixture
def raw_channel():
    """A raw py-amqp channel on its own connection, to look at the broker's state."""
    with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
        yield conn.channel()


@pytest.fixture
def names(unique, amqp_cleanup):
    counter = iter(range(1, 1000))

    class Names:
        def queue(self):
            return amqp_cleanup.queue(f"{unique}.q{next(counter)}")

        def exchange(self):
            return amqp_cleanup.exchange(f"{unique}.x{next(counter)}")

    return Names()


def test_durable_flag_reaches_the_broker(amqp_connection, names, raw_channel):
    queue = names.queue()
    Consumer(amqp_connection, queue=queue, durable=False).close()
    # Redeclaring with other flags is refused: the broker has durable=False.
    with pytest.raises(PreconditionFailed):
        raw_channel.queue_declare(queue, durable=True, auto_delete=False)


def test_exclusive_queue_is_locked_and_deleted_with_its_connection(
    amqp_conninfo, names, raw_channel
):
    queue = names.queue()
    with BrokerConnection(**amqp_conninfo) as conn:
        consumer = Consumer(conn, queue=queue, exclusive=True)
        assert consumer.auto_delete is True
        with pytest.raises(ResourceLocked):
            raw_channel.queue_declare(queue, passive=True)
    with amqp.Connection("127.0.0.1:5672", "guest", "guest") as other, pytest.raises(NotFound):
        other.channel().queue_declare(queue, passive=True)


def test_queue_arguments_x_max_length(amqp_connection, names):
    queue, exchange = names.queue(), names.exchange()
    consumer = Consumer(
        amqp_connection,
        queue=queue,
        exchange=exchange,
        routing_key=queue,
        queue_arguments={"x-max-length": 2},
    )
    publisher = Publisher(amqp_connection, exchange=exchange, routing_key=queue)
    publisher.backend = consumer.backend
    for i in range(5):
        publisher.send(i)
    got = [m.payload for m in consumer.iterqueue(limit=10)]
    assert got == [3, 4]  # the oldest were dropped at the head


def test_warn_if_exists(amqp_connection, names):
    queue = names.queue()
    Consumer(amqp_connection, queue=queue).close()
    with pytest.warns(QueueAlreadyExistsWarning, match=queue):
        Consumer(amqp_connection, queue=queue, warn_if_exists=True).close()


def test_priority_orders_delivery(amqp_connection, names):
    queue, exchange = names.queue(), names.exchange()
    consumer = Consumer(
        amqp_connection,
        queue=queue,
        exchange=exchange,
        routing_key=queue,
        queue_arguments={"x-max-priority": 10},
    )
    publisher = Publisher(
        amqp_connection, exchange=exchange, routing_key=queue, backend=consumer.backend
    )
    for priority in (1, 9, 5, 0):
        publisher.send(f"p{priority}", priority=priority)
    got = []
    for message in consumer.iterqueue(limit=10):
        got.append((message.payload, message.properties["priority"]))
        message.ack()
    assert got == [("p9", 9), ("p5", 5), ("p1", 1), ("p0", 0)]


def test_mandatory_unroutable_message_is_returned(amqp_connection, names):
    exchange = names.exchange()
    publisher = Publisher(amqp_connection, exchange=exchange, routing_key="nobody")
    publisher.send({"lost": False}, mandatory=True)
    returned = publisher.backend.returned_messages
    drain_until(amqp_connection, lambda: returned)
    reply_code, _text, got_exchange, routing_key, message = returned[0]
    assert reply_code == 312  # NO_ROUTE
    assert (got_exchange, routing_key) == (exchange, "nobody")
    assert message.body in (b'{"lost":false}', '{"lost":false}', b'{"lost": false}')
    # The channel is still usable afterwards.
    publisher.send("after", mandatory=True)
    drain_until(amqp_connection, lambda: len(returned) == 2)


def test_immediate_is_delivered_to_a_ready_consumer(amqp_connection, names):
    queue, exchange = names.queue(), names.exchange()
    consumer = Consumer(amqp_connection, queue=queue, exchange=exchange, routing_key=queue)
    got = []
    consumer.register_callback(lambda data, message: (got.append(data), message.ack()))
    consumer.consume()
    publisher = Publisher(amqp_connection, exchange=exchange, routing_key=queue)
    publisher.send("now", immediate=True)
    drain_until(amqp_connection, lambda: got)
    assert got == ["now"]


def test_immediate_without_consumer_is_not_stranded(amqp_connection, names, raw_channel):
    queue, exchange = names.queue(), names.exchange()
    consumer = Consumer(amqp_connection, queue=queue, exchange=exchange, routing_key=queue)
    publisher = Publisher(
        amqp_connection, exchange=exchange, routing_key=queue, backend=consumer.backend
    )
    publisher.send("nobody listening", immediate=True)
    publisher.send("normal")
    message = consumer.fetch()  # the same channel: both publishes were handled
    assert message.payload == "normal"
    message.ack()
    assert consumer.fetch() is None
    assert raw_channel.queue_declare(queue, passive=True).message_count == 0


def test_headers_exchange_x_match_any(amqp_connection, names):
    exchange = names.exchange()
    consumer = Consumer(
        amqp_connection,
        queue=names.queue(),
        exchange=exchange,
        exchange_type="headers",
        routing_key={"x-match": "any", "format": "pdf", "type": "report"},
    )
    publisher = Publisher(
        amqp_connection, exchange=exchange, exchange_type="headers", backend=consumer.backend
    )
    publisher.send(1, routing_key={"format": "pdf"})
    publisher.send(2, routing_key={"type": "report", "format": "zip"})
    publisher.send(3, routing_key={"format": "zip"})
    got = []
    for message in consumer.iterqueue(limit=10):
        got.append((message.payload, message.headers))
        message.ack()
    assert [data for data, _ in got] == [1, 2]
    assert got[0][1] == {"format": "pdf"}


def test_consumer_set_children_and_deliveries_share_one_channel(amqp_connection, names):
    exchange = names.exchange()
    queues = [names.queue(), names.queue()]
    cset = ConsumerSet(
        amqp_connection,
        from_dict={q: {"exchange": exchange, "routing_key": q} for q in queues},
    )
    channel_id = cset.backend.channel.channel_id
    open_channels = set(amqp_connection.connection.channels)
    got = []
    cset.register_callback(lambda data, message: (got.append(message), message.ack()))
    cset.consume()
    publisher = Publisher(amqp_connection, exchange=exchange)
    for q in queues:
        publisher.send(q, routing_key=q)
    drain_until(amqp_connection, lambda: len(got) == 2)
    assert {m.amqp_message.channel.channel_id for m in got} == {channel_id}
    # Making the set's consumers opened no channel besides the set's.
    assert channel_id in open_channels
    cset.close()


@pytest.mark.slow
def test_64_mib_body_round_trip_is_byte_exact(amqp_connection, names):
    size = 64 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    queue, exchange = names.queue(), names.exchange()
    consumer = Consumer(amqp_connection, queue=queue, exchange=exchange, routing_key=queue)
    publisher = Publisher(
        amqp_connection, exchange=exchange, routing_key=queue, backend=consumer.backend
    )
    publisher.send(body, content_type="application/octet-stream")
    message = consumer.fetch()
    assert message.content_encoding == "binary"
    assert len(message.body) == size
    assert message.body == body
    message.ack()
