"""Heartbeats and bounded calls on the py-amqp backend, through the fault proxy.

The proxy's blackhole stops forwarding but keeps both sockets open: the
broker goes silent without a FIN or RST, as behind a dead link or a load
balancer that dropped the flow. A second, direct connection publishes.
"""

from __future__ import annotations

import threading
import time

import amqp
import pytest
from faultproxy import FaultProxy

from carrot.backends._amqp.plain import PlainConnection
from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, Publisher

pytestmark = [pytest.mark.rabbitmq]

#: The heartbeat the silent-peer tests use, in seconds.
N = 1


def heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("carrot-heartbeat-")]


def publish(channel: amqp.Channel, queue: str, body: str) -> None:
    channel.basic_publish(amqp.Message(f'"{body}"', content_type="application/json"), "", queue)


def blackhole_later(proxy: FaultProxy, delay: float) -> dict[str, float]:
    """Blackhole the proxy after ``delay`` seconds, from a timer; returns when it did."""
    when: dict[str, float] = {}

    def go() -> None:
        proxy.blackhole()
        when["at"] = time.monotonic()

    timer = threading.Timer(delay, go)
    timer.daemon = True
    timer.start()
    return when


@pytest.mark.timeout(20)
def test_heartbeat_negotiated_and_the_thread_ends_with_close(proxy):
    before = set(heartbeat_threads())
    conn = BrokerConnection(proxy.url(), heartbeat=2)
    amqp_conn = conn.connection
    assert amqp_conn.heartbeat == 2
    monitor = amqp_conn.heartbeat_monitor
    assert monitor is not None and monitor.thread.is_alive() and monitor.thread.daemon
    assert monitor.thread.name == f"carrot-heartbeat-127.0.0.1:{proxy.port}"
    conn.close()
    assert not monitor.thread.is_alive()
    assert set(heartbeat_threads()) <= before


@pytest.mark.timeout(20)
def test_no_heartbeat_no_thread(proxy):
    conn = BrokerConnection(proxy.url())
    assert conn.connection.heartbeat == 0
    assert conn.connection.heartbeat_monitor is None
    conn.close()


@pytest.mark.timeout(30)
def test_blackhole_while_blocked_in_wait_raises_within_two_heartbeats(proxy, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    conn = BrokerConnection(proxy.url(), heartbeat=N)
    consumer = Consumer(conn, queue=queue, exchange="", routing_key=queue, auto_delete=False)
    received = []
    consumer.register_callback(lambda data, message: received.append(data))
    when = blackhole_later(proxy, 0.5)
    with pytest.raises(conn.connection_errors) as caught:
        consumer.wait()
    elapsed = time.monotonic() - when["at"]
    assert elapsed <= 2 * N + 1
    assert isinstance(caught.value, amqp.exceptions.ConnectionForced)
    assert "no data from the broker" in str(caught.value)
    assert not conn.connection.connected
    proxy.heal()
    started = time.monotonic()
    conn.close()
    assert time.monotonic() - started < 1
    assert not heartbeat_threads()


@pytest.mark.timeout(30)
def test_blackhole_while_blocked_in_drain_events(proxy, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    conn = BrokerConnection(proxy.url(), heartbeat=N)
    consumer = Consumer(conn, queue=queue, exchange="", routing_key=queue, auto_delete=False)
    consumer.consume()
    when = blackhole_later(proxy, 0.5)
    with pytest.raises(conn.connection_errors):
        conn.drain_events()
    assert time.monotonic() - when["at"] <= 2 * N + 1
    conn.close()


@pytest.mark.timeout(30)
def test_blackhole_during_a_synchronous_call(proxy, unique):
    conn = BrokerConnection(proxy.url(), heartbeat=N)
    consumer = Consumer(conn, queue=unique, exchange="", routing_key=unique, exclusive=True)
    proxy.blackhole()
    time.sleep(0.2)  # the proxy's links notice within one of its polls (0.02 s)
    started = time.monotonic()
    with pytest.raises(conn.connection_errors):
        consumer.fetch()  # basic.get waits for get-ok / get-empty
    assert time.monotonic() - started <= 2 * N + 1
    conn.close()


@pytest.mark.timeout(60)
def test_publisher_stuck_writing_to_a_silent_peer(proxy, unique, amqp_cleanup):
    # The broker's unread heartbeats wait in the socket while the
    # publisher's writes fill every buffer on the way: a stuck write.
    queue = amqp_cleanup.queue(unique)
    conn = BrokerConnection(proxy.url(), heartbeat=N)
    publisher = Publisher(conn, exchange="", routing_key=queue, serializer="raw")
    publisher.backend.queue_declare(queue, durable=False, exclusive=False, auto_delete=False)
    publisher.send(b"x", content_type="application/data")
    time.sleep(1.2)  # the broker's heartbeats arrive, unread
    proxy.blackhole()
    started = time.monotonic()
    body = b"x" * (1024 * 1024)
    with pytest.raises(conn.connection_errors):
        for _ in range(500):  # 500 MiB: far more than the buffers hold
            publisher.send(body, content_type="application/data")
    # The buffers take some seconds to fill; then 2 * N more at most.
    assert time.monotonic() - started <= 20
    assert conn.connection.heartbeat_lost is not None
    conn.close()


@pytest.mark.timeout(60)
def test_a_callback_busy_for_five_heartbeats_keeps_the_connection(
    proxy, direct, unique, amqp_cleanup
):
    queue = amqp_cleanup.queue(unique)
    conn = BrokerConnection(proxy.url(), heartbeat=N)
    consumer = Consumer(conn, queue=queue, exchange="", routing_key=queue, auto_delete=False)
    consumer.qos(prefetch_count=1)
    received: list[str] = []

    def on_message(data: str, message: object) -> None:
        if not received:
            time.sleep(5 * N)  # busy outside carrot
        received.append(data)
        message.ack()

    consumer.register_callback(on_message)
    publish(direct, queue, "slow")
    publish(direct, queue, "next")
    it = consumer.iterconsume()
    deadline = time.monotonic() + 20
    while len(received) < 2 and time.monotonic() < deadline:
        next(it)
    assert received == ["slow", "next"]
    # Still connected: the broker did not drop us, the monitor did not give up.
    amqp_conn = conn.connection
    assert amqp_conn.connected and amqp_conn.heartbeat_lost is None
    publish(direct, queue, "after")
    while len(received) < 3 and time.monotonic() < deadline:
        next(it)
    assert received == ["slow", "next", "after"]
    assert proxy.accepted == 1
    consumer.close()
    conn.close()
    assert direct.queue_declare(queue, passive=True).message_count == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("heartbeat", [0, 10])
def test_close_on_a_silent_peer_returns_within_connect_timeout(proxy, heartbeat):
    conn = BrokerConnection(proxy.url(), heartbeat=heartbeat, connect_timeout=2)
    amqp_conn = conn.connection
    proxy.blackhole()
    started = time.monotonic()
    conn.close()
    assert time.monotonic() - started <= 2 + 0.5
    assert not amqp_conn.connected
    assert not heartbeat_threads()


@pytest.mark.timeout(30)
def test_plain_py_amqp_connection_gives_a_silent_peer_up_too(proxy):
    # The connection the backend falls back to when the fast path is off.
    conn = PlainConnection(
        host=f"127.0.0.1:{proxy.port}", userid="guest", password="guest", heartbeat=N
    )
    conn.connect()
    assert conn.heartbeat == N
    time.sleep(3 * N)  # idle: heartbeats both ways keep it
    assert conn.connected
    conn.channel()
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(amqp.exceptions.ConnectionForced):
        conn.drain_events()
    assert time.monotonic() - started <= 2 * N + 1
    conn.close()
    assert not heartbeat_threads()


@pytest.mark.timeout(40)
def test_pika_backend_negotiates_the_heartbeat_and_gives_a_silent_peer_up(proxy):
    pytest.importorskip("pika")
    conn = BrokerConnection(proxy.url(), backend_cls="pika", heartbeat=N)
    pika_connection = conn.connection.pika_connection
    assert pika_connection._impl.params.heartbeat == N  # negotiated
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(conn.connection_errors):
        conn.drain_events()
    # pika looks every N + 5 s and closes a connection that was silent
    # through one whole interval: within 2 * (N + 5) s.
    assert time.monotonic() - started <= 2 * (N + 5) + 1
    conn.close()


@pytest.mark.timeout(30)
def test_consumer_close_on_a_silent_peer_returns_within_connect_timeout(proxy, unique):
    conn = BrokerConnection(proxy.url(), connect_timeout=1)
    consumer = Consumer(conn, queue=unique, exchange="", routing_key=unique, exclusive=True)
    consumer.consume()
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # no cancel-ok: socket.timeout, a connection error
        consumer.close()
    assert time.monotonic() - started <= 1 + 0.5
    consumer.backend.close()  # no channel close-ok: given up quietly
    conn.close()
    assert time.monotonic() - started <= 3 * 1 + 0.5


@pytest.mark.timeout(60)
def test_auto_recover_rides_through_a_silent_broker(proxy, direct, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    policy = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5, "max_retries": 60}
    conn = BrokerConnection(
        proxy.url(), heartbeat=N, connect_timeout=1, auto_recover=True, retry_policy=policy
    )
    consumer = Consumer(conn, queue=queue, exchange="", routing_key=queue, auto_delete=False)
    received: list[str] = []

    def on_message(data: str, message: object) -> None:
        received.append(data)
        message.ack()

    consumer.register_callback(on_message)
    publish(direct, queue, "before")
    it = consumer.iterconsume()
    next(it)
    assert received == ["before"]
    time.sleep(0.5)  # the ack of "before" passes the proxy before it goes silent
    proxy.blackhole()

    def heal() -> None:
        # Long after the heartbeat gave the silent broker up (2 * N s);
        # "after" can only reach the consumer on a new connection.
        proxy.heal()
        publish(direct, queue, "after")

    healer = threading.Timer(2 * N + 3, heal)
    healer.daemon = True
    healer.start()
    deadline = time.monotonic() + 40
    while len(received) < 2 and time.monotonic() < deadline:
        next(it)
    assert received == ["before", "after"]
    assert proxy.accepted >= 2  # given up, then connected again
    healer.join(5)
    consumer.close()
    conn.close()
