"""auto_recover through the fault proxy against the local RabbitMQ.

Each test talks to RabbitMQ through a :class:`faultproxy.FaultProxy`, breaks
the connection (RST, or a "broker restart": refuse for a while) and checks
that carrot reconnects, declares and consumes again and carries on. A second,
direct connection (not through the proxy) publishes or inspects queues.
"""

from __future__ import annotations

import logging
import threading
import time

import amqp
import pytest
from faultproxy import FaultProxy

from carrot.connection import BrokerConnection, ConnectionPool
from carrot.messaging import Consumer, ConsumerSet, Publisher

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]

#: Short delays, so the tests are quick: 0.2 s, 0.4 s, then 0.5 s between attempts.
FAST = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5, "max_retries": 40}


def recovering(proxy: FaultProxy, **kwargs: object) -> BrokerConnection:
    kwargs.setdefault("retry_policy", FAST)
    return BrokerConnection(proxy.url(), auto_recover=True, connect_timeout=5, **kwargs)


def publish(channel: amqp.Channel, queue: str, body: str) -> None:
    channel.basic_publish(amqp.Message(f'"{body}"', content_type="application/json"), "", queue)


def fetch_all(channel: amqp.Channel, queue: str) -> list[str]:
    bodies = []
    while (message := channel.basic_get(queue, no_ack=True)) is not None:
        bodies.append(message.body.decode() if isinstance(message.body, bytes) else message.body)
    return bodies


def test_cut_mid_consume_with_a_consumer_set_of_two_queues(
    proxy, direct, unique, amqp_cleanup, caplog
):
    queues = [amqp_cleanup.queue(f"{unique}.{i}") for i in range(2)]
    conn = recovering(proxy)
    consumer_set = ConsumerSet(
        conn,
        from_dict={q: {"exchange": "", "routing_key": q, "auto_delete": False} for q in queues},
    )
    consumer_set.qos(prefetch_count=5)
    expected = {f"{q}:{i}" for q in queues for i in range(10)}
    for body in sorted(expected):
        publish(direct, body.split(":")[0], body)
    received: list[str] = []
    redelivered: list[str] = []

    def on_message(data: str, message: object) -> None:
        if len(received) == 4 and not redelivered and proxy.links():
            proxy.cut()  # mid-consume: this message's ack goes nowhere
        received.append(data)
        if message.delivery_info.get("redelivered"):
            redelivered.append(data)
        message.ack()

    consumer_set.register_callback(on_message)
    with caplog.at_level(logging.INFO, logger="carrot.connection"):
        for _ in consumer_set.iterconsume(limit=200):
            if expected <= set(received):
                break
    assert expected <= set(received)
    assert redelivered  # the messages unacked at the cut came again
    assert proxy.accepted == 2
    assert "lost (ConnectionResetError" in caplog.text
    assert "recovered: connected to amqp://guest:***@127.0.0.1" in caplog.text
    assert ":guest@" not in caplog.text
    # Both consumers live on: a message published now to each queue arrives.
    later = {f"{q}:later" for q in queues}
    for body in later:
        publish(direct, body.split(":")[0], body)
    for _ in consumer_set.iterconsume(limit=50):
        if later <= set(received):
            break
    assert later <= set(received)
    consumer_set.close()
    conn.close()
    assert all(fetch_all(direct, q) == [] for q in queues)


def test_broker_restart_back_within_the_retry_interval_plus_one_second(
    proxy, direct, unique, amqp_cleanup, caplog
):
    queue = amqp_cleanup.queue(unique)
    direct.queue_declare(queue)
    policy = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 1.0, "max_retries": None}
    conn = recovering(proxy, retry_policy=policy)
    publisher = Publisher(conn, exchange="", routing_key=queue)
    publisher.send("before")
    refused_for = 2.0
    with caplog.at_level(logging.WARNING, logger="carrot.connection"):
        proxy.restart(refused_for)
        started = time.monotonic()
        publisher.send("after")  # blocks while the broker is away
        elapsed = time.monotonic() - started
    assert refused_for <= elapsed <= refused_for + policy["interval_max"] + 1
    attempts = [r for r in caplog.records if "reconnect attempt" in r.getMessage()]
    assert len(attempts) >= 2
    assert all(r.levelno == logging.WARNING for r in attempts)
    assert "reconnect attempt 1 to amqp://guest:***@127.0.0.1" in attempts[0].getMessage()
    assert "next attempt in 0.5 s" in attempts[0].getMessage()
    assert "next attempt in 1.0 s" in attempts[1].getMessage()
    publisher.send("again")
    publisher.close()
    conn.close()
    assert fetch_all(direct, queue)[-2:] == ["after", "again"]


def test_max_retries_spent_raises_the_last_connection_error(proxy, unique):
    conn = recovering(proxy, retry_policy={**FAST, "max_retries": 2})
    publisher = Publisher(conn, exchange="", routing_key=unique)
    publisher.send("declared nothing")
    proxy.restart()  # refused until allow()
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        publisher.send("x")
        publisher.send("y")
    assert time.monotonic() - started < 5
    proxy.allow()
    conn.close()


def test_exclusive_queue_declared_again(proxy, direct, unique):
    conn = recovering(proxy)
    consumer = Consumer(conn, queue=unique, exchange="", routing_key=unique, exclusive=True)
    assert consumer.fetch() is None
    proxy.cut()
    # The broker deletes the exclusive queue with its connection; recovery
    # declares it again (waiting out the broker's lock on the old one).
    assert consumer.fetch() is None
    publish(direct, unique, "to the new queue")
    deadline = time.monotonic() + 5
    message = consumer.fetch()
    while message is None and time.monotonic() < deadline:
        time.sleep(0.02)
        message = consumer.fetch()
    assert message is not None and message.payload == "to the new queue"
    message.ack()
    with pytest.raises(amqp.exceptions.ResourceLocked):
        direct.queue_declare(unique, passive=True, exclusive=True)
    consumer.close()
    conn.close()


def test_ack_of_a_message_from_the_lost_connection_does_nothing(
    proxy, direct, unique, amqp_cleanup
):
    queue = amqp_cleanup.queue(unique)
    conn = recovering(proxy)
    consumer = Consumer(conn, queue=queue, exchange="", routing_key=queue, auto_delete=False)
    publish(direct, queue, "once")
    deadline = time.monotonic() + 5
    stale = consumer.fetch()
    while stale is None and time.monotonic() < deadline:
        time.sleep(0.02)
        stale = consumer.fetch()
    assert stale is not None and not stale.delivery_info["redelivered"]
    proxy.cut()
    again = consumer.fetch()  # recovers; the broker put the message back
    assert again is not None
    assert again.payload == "once" and again.delivery_info["redelivered"]
    stale.ack()  # delivered on the lost connection: a no-op, no channel error
    assert stale.acknowledged
    again.ack()
    assert consumer.fetch() is None  # the channel lives on, the queue is empty
    consumer.close()
    conn.close()
    assert fetch_all(direct, queue) == []


def test_wait_carries_on_after_a_cut(proxy, direct, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    conn = recovering(proxy)
    consumer = Consumer(conn, queue=queue, exchange="", routing_key=queue, auto_delete=False)
    consumer.qos(prefetch_count=1)
    got: list[str] = []

    def on_message(data: str, message: object) -> None:
        got.append(data)
        message.ack()
        if len(got) == 2:
            proxy.cut()
        if len(got) == 3:
            publish(direct, queue, "after the cut")

    consumer.register_callback(on_message)
    for i in range(3):
        publish(direct, queue, f"m{i}")
    consumer.wait(limit=4)
    assert "after the cut" in got
    assert {"m0", "m1", "m2"} <= set(got)
    consumer.close()
    conn.close()


def test_eight_threads_through_a_pool_with_repeated_cuts(proxy, direct, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    direct.queue_declare(queue)
    pool = ConnectionPool(recovering(proxy), min=8)
    errors: list[BaseException] = []
    stop_cutting = threading.Event()

    def work(n: int) -> None:
        conn = pool.acquire()
        try:
            publisher = Publisher(conn, exchange="", routing_key=queue)
            for i in range(40):
                publisher.send(f"t{n}-{i}")
                time.sleep(0.005)
            stop_cutting.wait(20)
            publisher.send(f"t{n}-last")  # after the cuts: must arrive
            publisher.close()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.release()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    cuts = 0
    for _ in range(5):
        time.sleep(0.1)
        cuts += proxy.cut() > 0
    stop_cutting.set()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert errors == []
    assert cuts >= 3
    bodies = set()
    deadline = time.monotonic() + 5
    while not {f"t{n}-last" for n in range(8)} <= bodies and time.monotonic() < deadline:
        bodies.update(fetch_all(direct, queue))
        time.sleep(0.02)
    assert {f"t{n}-last" for n in range(8)} <= bodies
    for conn in (*pool._idle, *pool._dirty):
        conn.close()


def test_failover_to_the_next_broker_on_recovery(proxy, direct, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    direct.queue_declare(queue)
    with FaultProxy() as second:
        conn = BrokerConnection(
            [proxy.url(), second.url()], auto_recover=True, retry_policy=FAST, connect_timeout=5
        )
        publisher = Publisher(conn, exchange="", routing_key=queue)
        publisher.send("first")
        assert conn.port == proxy.port
        proxy.cut()
        publisher.send("second")
        publisher.send("third")
        # Recovery moved on to the next broker, even though the first answers.
        assert conn.port == second.port
        assert f"127.0.0.1:{second.port}" in repr(conn)
        assert second.accepted == 1
        publisher.close()
        conn.close()
    assert fetch_all(direct, queue)[-2:] == ["second", "third"]


def test_without_auto_recover_the_error_reaches_the_application(proxy, unique):
    conn = BrokerConnection(proxy.url(), connect_timeout=5)
    publisher = Publisher(conn, exchange="", routing_key=unique)
    assert "send" not in vars(publisher)  # no wrapper: the hot path is untouched
    publisher.send("x")
    proxy.cut()
    with pytest.raises(conn.connection_errors):
        for _ in range(3):
            publisher.send("y")
    conn.close()


# -- every network backend ----------------------------------------------------------

BACKENDS = [
    pytest.param("amqp", 5672, id="amqp"),
    pytest.param("pika", 5672, id="pika", marks=pytest.mark.rabbitmq),
    pytest.param("stomp", 61613, id="stomp", marks=pytest.mark.stomp),
    pytest.param("redis", 6379, id="redis", marks=pytest.mark.redis),
]


def fetch_within(consumer: Consumer, seconds: float = 5) -> object:
    deadline = time.monotonic() + seconds
    message = consumer.fetch()
    while message is None and time.monotonic() < deadline:
        time.sleep(0.02)
        message = consumer.fetch()
    return message


@pytest.mark.parametrize("scheme, port", BACKENDS)
def test_publisher_and_consumer_recover_on_every_backend(scheme, port, unique, amqp_cleanup):
    if scheme == "redis":
        pytest.importorskip("redis")
    if scheme in ("pika", "stomp"):
        pytest.importorskip({"pika": "pika", "stomp": "stomp"}[scheme])
    # STOMP declares no exchange: it publishes to the queue by name.
    exchange = "" if scheme == "stomp" else unique
    if scheme != "redis":
        amqp_cleanup.queue(unique)
        if exchange:
            amqp_cleanup.exchange(exchange)
    with FaultProxy(("127.0.0.1", port)) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0" if scheme == "redis" else proxy.url(scheme)
        conn = BrokerConnection(url, auto_recover=True, retry_policy=FAST, connect_timeout=5)
        consumer = Consumer(conn, queue=unique, exchange=exchange, routing_key=unique)
        publisher = Publisher(conn, exchange=exchange, routing_key=unique)
        try:
            publisher.send("one")
            stale = fetch_within(consumer)
            assert stale is not None and stale.payload == "one"
            assert proxy.cut() >= 1
            publisher.send("two")
            publisher.send("three")
            got = []
            while (message := fetch_within(consumer, 2)) is not None:
                got.append(message.payload)
                message.ack()
            stale.ack()  # delivered before the cut: never an error
            if scheme == "redis":
                # kombu's Redis client reconnects by itself: no connection
                # error reaches carrot, and "one" stays unacked on the channel.
                assert got == ["two", "three"]
            else:
                assert sorted(got) == ["one", "three", "two"]
                assert proxy.accepted >= 2
        finally:
            if scheme == "redis":
                consumer.backend.queue_delete(unique)
            consumer.close()
            publisher.close()
            conn.close()


@pytest.mark.parametrize("max_unconfirmed", [1, 50])
def test_confirmed_publisher_recovers_in_confirm_mode(
    proxy, direct, unique, amqp_cleanup, max_unconfirmed
):
    queue = amqp_cleanup.queue(unique)
    direct.queue_declare(queue)
    conn = recovering(proxy)
    publisher = Publisher(
        conn, exchange="", routing_key=queue, confirm=True, max_unconfirmed=max_unconfirmed
    )
    for i in range(20):
        publisher.send(f"m{i}")
        if i == 9:
            proxy.cut()
    publisher.wait_for_confirms(timeout=10)
    assert proxy.accepted == 2
    bodies = set()
    deadline = time.monotonic() + 5
    while len(bodies) < 20 and time.monotonic() < deadline:
        bodies.update(fetch_all(direct, queue))
        time.sleep(0.02)
    # At least once: every message confirmed arrived (some perhaps twice).
    assert bodies == {f"m{i}" for i in range(20)}
    publisher.close()
    conn.close()


@pytest.mark.parametrize(
    "contender",
    ["carrot auto_recover", pytest.param("kombu ConsumerMixin", marks=pytest.mark.kombu)],
)
def test_the_recovery_benchmark_measures_a_round(contender, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import recovery as bench

    seconds = bench.one_round(contender, "cut")
    assert 0 < seconds < 5
