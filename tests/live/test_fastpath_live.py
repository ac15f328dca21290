"""The py-amqp fast path against RabbitMQ: what a plain py-amqp client sees must not change."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import amqp
import pytest
from amqp.exceptions import NotFound, PreconditionFailed

from carrot.backends._amqp.channel import Channel as FastChannel
from carrot.backends._amqp.connection import Connection as FastConnection
from carrot.backends._amqp.framing import PublishFramer
from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, Publisher

pytestmark = pytest.mark.rabbitmq

HOST = "127.0.0.1:5672"


def fast_connection(**kwargs: Any) -> FastConnection:
    conn = FastConnection(host=HOST, userid="guest", password="guest", connect_timeout=5, **kwargs)
    conn.connect()
    return conn


def plain_connection() -> amqp.Connection:
    conn = amqp.Connection(HOST, "guest", "guest", connect_timeout=5)
    conn.connect()
    return conn


@pytest.fixture
def queue(unique: str, amqp_cleanup: Any) -> Iterator[str]:
    """A durable queue (max priority 10) that is deleted afterwards."""
    name = amqp_cleanup.queue(unique)
    with plain_connection() as conn:
        conn.channel().queue_declare(
            name, durable=True, auto_delete=False, arguments={"x-max-priority": 10}
        )
    yield name


def drain_until(conn: Any, done: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        remaining = deadline - time.monotonic()
        assert remaining > 0, "timed out waiting for deliveries"
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=min(remaining, 1.0))


def count(queue_name: str) -> int:
    with plain_connection() as conn:
        return conn.channel().queue_declare(queue_name, passive=True).message_count


def wait_count(queue_name: str, expected: int, seconds: float = 10.0) -> int:
    deadline = time.monotonic() + seconds
    n = count(queue_name)
    while n != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        n = count(queue_name)
    return n


PROPERTIES = [
    {"content_type": "application/json", "content_encoding": "binary", "delivery_mode": 2},
    {"delivery_mode": 1, "priority": 7, "content_type": "text/plain"},
    {
        "application_headers": {"task": "add", "retries": 3, "nested": {"a": [1, "b"]}},
        "correlation_id": "c-1",
        "reply_to": "replies",
        "message_id": "m-1",
        "timestamp": 1_700_000_000,
        "type": "kind",
        "app_id": "carrot",
        "expiration": "600000",
        "priority": 3,
        "delivery_mode": 2,
    },
    {},
]


def collect(channel: Any, queue_name: str, got: list, no_ack: bool = True) -> None:
    channel.basic_consume(queue_name, callback=got.append, no_ack=no_ack)


@pytest.mark.parametrize("props", PROPERTIES)
def test_fast_publish_is_seen_by_py_amqp_as_its_own(queue, props):
    body = b"\x00binary\xffbody" * 3
    with fast_connection() as fast, plain_connection() as plain:
        fch = fast.channel()
        assert isinstance(fch, FastChannel)
        fch.fast_publish(amqp.Message(body, **props), "", queue)
        plain.channel().basic_publish(amqp.Message(body, **props), "", queue)
        got: list = []
        ch = plain.channel()
        ch.auto_decode = False
        collect(ch, queue, got)
        drain_until(plain, lambda: len(got) == 2)
    ours, theirs = got
    assert ours.body == theirs.body == body
    assert ours.properties == theirs.properties
    for key, value in props.items():
        assert ours.properties[key] == value


@pytest.mark.parametrize("props", PROPERTIES)
def test_fast_consumer_sees_what_py_amqp_sees(queue, props):
    with plain_connection() as plain:
        ch = plain.channel()
        for body in (b"one", "t\u00e9xt".encode()):
            ch.basic_publish(amqp.Message(body, **props), "", queue)
    seen: dict[str, list] = {}
    for name, factory in (("plain", plain_connection), ("fast", fast_connection)):
        with factory() as conn:
            got: list = []
            channel = conn.channel()
            channel.basic_qos(0, 10, False)
            channel.basic_consume(queue, callback=got.append)
            drain_until(conn, lambda got=got: len(got) == 2)
            seen[name] = [
                (
                    m.body,
                    m.properties,
                    {k: v for k, v in m.delivery_info.items() if k != "consumer_tag"},
                )
                for m in got
            ]
            # Not acked: requeued when the connection closes, for the next client.
    plain_view = [(b, p, {**d, "redelivered": None}) for b, p, d in seen["plain"]]
    fast_view = [(b, p, {**d, "redelivered": None}) for b, p, d in seen["fast"]]
    assert fast_view == plain_view
    assert all(d["redelivered"] for _, _, d in seen["fast"])


SMALL, BIG = 4096 - 8, 131072 - 8  # body bytes per frame: ours when publishing, the broker's


@pytest.mark.parametrize(
    "size",
    [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, BIG - 1, BIG, BIG + 1, 2 * BIG + 5, 300_000],
)
def test_bodies_across_frame_boundaries(queue, size):
    body = bytes(i % 251 for i in range(size))
    with fast_connection() as conn:
        assert conn.frame_max == 131072  # what RabbitMQ offers (py-amqp takes the server's)
        # Publish in 4 KiB frames (smaller than negotiated is allowed); receive in the broker's.
        conn.frame_max = 4096
        conn.framer = PublishFramer(4096)
        ch = conn.channel()
        ch.fast_publish(amqp.Message(body, delivery_mode=2), "", queue)
        got: list = []
        ch.basic_consume(queue, callback=got.append, no_ack=True)
        drain_until(conn, lambda: got)
    expected = body if size else ""  # py-amqp gives a bodyless message body ""
    assert got[0].body == expected


def test_heartbeats_interleave_with_deliveries(queue):
    with fast_connection(heartbeat=2) as conn, plain_connection() as publisher:
        assert conn.heartbeat == 2
        frame_types: list[int] = []
        py_amqp_handler = conn.on_inbound_frame

        def counting(frame: tuple) -> Any:
            frame_types.append(frame[0])
            return py_amqp_handler(frame)

        conn.on_inbound_frame = counting
        got: list = []
        conn.channel().basic_consume(queue, callback=got.append, no_ack=True)
        pch = publisher.channel()
        deadline = time.monotonic() + 10
        sent = 0
        # Keep delivering until the broker has sent at least two heartbeats.
        while frame_types.count(8) < 2:
            assert time.monotonic() < deadline, "no heartbeats from the broker"
            pch.basic_publish(amqp.Message(f"m{sent}".encode()), "", queue)
            sent += 1
            drain_until(conn, lambda sent=sent: len(got) == sent)
            # Stay idle long enough for the broker to send a heartbeat (it
            # sends them only when it has sent nothing else for a second).
            idle_until = time.monotonic() + 1.2
            while time.monotonic() < idle_until:
                conn.heartbeat_tick()
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.3)
        assert [m.body for m in got] == [f"m{i}".encode() for i in range(sent)]
        assert conn.connected


def test_channel_closed_by_the_broker_mid_stream(queue):
    with plain_connection() as plain:
        ch = plain.channel()
        for i in range(20):
            ch.basic_publish(amqp.Message(str(i).encode()), "", queue)
    with fast_connection() as conn:
        channel = conn.channel()
        channel.basic_qos(0, 20, False)
        got: list = []
        channel.basic_consume(queue, callback=got.append)
        drain_until(conn, lambda: len(got) >= 10)
        for message in got[:5]:
            channel.basic_ack(message.delivery_tag)  # held back, combined
        # An ack of a tag the broker never delivered: PRECONDITION_FAILED closes the channel.
        channel.basic_ack(10_000)
        with pytest.raises(PreconditionFailed):
            drain_until(conn, lambda: False, seconds=5)
        # py-amqp reopened the channel; its delivery tags start again.
        assert channel.is_open
        assert channel.acks.live == set()
    # The five combined acks reached the broker before the bad one; the rest came back.
    assert wait_count(queue, 15) == 15


def test_publish_to_a_missing_exchange_raises_on_a_later_call(unique):
    with fast_connection() as conn:
        channel = conn.channel()
        channel.fast_publish(amqp.Message(b"x"), unique + ".missing", "k")
        with pytest.raises(NotFound):
            drain_until(conn, lambda: False, seconds=5)


def test_combined_acks_requeues_and_rejects(queue):
    total = 200
    with plain_connection() as plain:
        ch = plain.channel()
        for i in range(total):
            ch.basic_publish(amqp.Message(str(i).encode()), "", queue)
    assert wait_count(queue, total) == total
    seen: set[bytes] = set()
    requeued: set[bytes] = set()
    redelivered: set[bytes] = set()
    rejected: set[bytes] = set()
    with fast_connection() as conn:
        channel = conn.channel()
        channel.auto_decode = False
        channel.basic_qos(0, 50, False)

        def on_message(message: Any) -> None:
            body = message.body
            seen.add(body)
            number = int(body)
            if message.delivery_info["redelivered"]:
                redelivered.add(body)
                channel.basic_ack(message.delivery_tag)
            elif number % 7 == 0:
                requeued.add(body)
                channel.basic_reject(message.delivery_tag, requeue=True)
            elif number % 11 == 0:
                rejected.add(body)
                channel.basic_reject(message.delivery_tag, requeue=False)
            else:
                channel.basic_ack(message.delivery_tag)

        tag = channel.basic_consume(queue, callback=on_message)
        drain_until(conn, lambda: len(seen) == total and redelivered >= requeued)
        channel.basic_cancel(tag)
        # Every delivery was settled: nothing comes back when the channel closes.
        channel.close()
    assert wait_count(queue, 0) == 0
    assert len(requeued) == len(range(0, total, 7))
    assert rejected


def test_acks_reach_the_broker_before_close(amqp_connection, unique, amqp_cleanup):
    amqp_cleanup.queue(unique)
    amqp_cleanup.exchange(unique)
    consumer = Consumer(amqp_connection, queue=unique, exchange=unique, routing_key=unique)
    publisher = Publisher(amqp_connection, exchange=unique, routing_key=unique)
    for i in range(10):
        publisher.send({"i": i})
    got: list = []

    def callback(data: Any, message: Any) -> None:
        got.append(data["i"])
        message.ack()

    consumer.register_callback(callback)
    it = consumer.iterconsume()
    deadline = time.monotonic() + 10
    while len(got) < 10 and time.monotonic() < deadline:
        next(it)
    assert got == list(range(10))
    amqp_connection.close()  # no cancel, no channel close: straight to the connection
    assert wait_count(unique, 0) == 0


def test_basic_get_after_held_back_ack(amqp_connection, unique, amqp_cleanup):
    amqp_cleanup.queue(unique)
    amqp_cleanup.exchange(unique)
    consumer = Consumer(amqp_connection, queue=unique, exchange=unique, routing_key=unique)
    publisher = Publisher(amqp_connection, exchange=unique, routing_key=unique)
    publisher.send("a")
    publisher.send("b")
    deadline = time.monotonic() + 10
    first = consumer.fetch()
    while first is None and time.monotonic() < deadline:
        first = consumer.fetch()
    first.ack()
    second = consumer.fetch()
    while second is None and time.monotonic() < deadline:
        second = consumer.fetch()
    second.ack()
    assert (first.payload, second.payload) == ("a", "b")
    consumer.close()
    assert wait_count(unique, 0) == 0


def test_mandatory_return_is_handled_by_py_amqp(amqp_connection, unique, amqp_cleanup):
    amqp_cleanup.exchange(unique)
    publisher = Publisher(amqp_connection, exchange=unique, routing_key="nowhere")
    publisher.send("lost", mandatory=True)
    backend = publisher.backend
    deadline = time.monotonic() + 10
    while not backend.returned_messages and time.monotonic() < deadline:
        with contextlib.suppress(socket.timeout):
            amqp_connection.connection.drain_events(timeout=0.2)
    assert backend.returned_messages
    reply_code, _, exchange, routing_key, _ = backend.returned_messages[-1]
    assert (reply_code, exchange, routing_key) == (312, unique, "nowhere")


def test_socket_has_no_one_second_user_timeout(amqp_connection):
    conn = amqp_connection.connection
    assert isinstance(conn, FastConnection)
    sock = conn.transport.sock
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


def test_backend_channel_is_still_the_raw_py_amqp_channel(amqp_connection):
    backend = amqp_connection.create_backend()
    assert isinstance(backend.channel, amqp.Channel)
    assert isinstance(amqp_connection.connection, amqp.Connection)
    assert isinstance(amqp_connection, BrokerConnection)
