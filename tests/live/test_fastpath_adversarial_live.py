"""Adversarial checks of the py-amqp fast path against RabbitMQ.

Every message must arrive intact exactly once (apart from redeliveries the
broker flags), every ack must reach the broker, and nothing may be left
unacknowledged or stranded.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from typing import Any

import amqp
import pytest

from carrot.backends._amqp.connection import Connection as FastConnection
from carrot.messaging import Consumer, Publisher

pytestmark = pytest.mark.rabbitmq

HOST = "127.0.0.1:5672"


def plain_connection() -> amqp.Connection:
    conn = amqp.Connection(HOST, "guest", "guest", connect_timeout=5)
    conn.connect()
    return conn


def fast_connection() -> FastConnection:
    conn = FastConnection(host=HOST, userid="guest", password="guest", connect_timeout=5)
    conn.connect()
    return conn


def ready_count(queue: str) -> int:
    with plain_connection() as conn:
        return conn.channel().queue_declare(queue, passive=True).message_count


def wait_for(predicate: Any, seconds: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def unacked(queue: str) -> int | None:
    """``messages_unacknowledged`` of ``queue`` per rabbitmqctl (None: no rabbitmqctl)."""
    if shutil.which("rabbitmqctl") is None:
        return None
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages_unacknowledged"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue:
            return int(parts[1])
    raise AssertionError(f"queue {queue} not listed")


def fill(queue: str, n: int) -> None:
    """Put ``n`` messages ``b"0"`` .. ``b"n-1"`` on ``queue`` (through the fast path)."""
    conn = fast_connection()
    try:
        channel = conn.channel()
        channel.queue_declare(queue, durable=False, auto_delete=False)
        for i in range(n):
            channel.fast_publish(amqp.Message(str(i).encode()), "", queue)
        assert wait_for(lambda: ready_count(queue) == n), ready_count(queue)
    finally:
        conn.close()


def consumer_for(connection: Any, queue: str, prefetch: int) -> Consumer:
    consumer = Consumer(connection, queue=queue, exchange="", routing_key=queue, auto_declare=False)
    consumer.qos(prefetch_count=prefetch)
    return consumer


def drain_once(connection: Any, timeout: float = 1) -> None:
    """Dispatch the next event, waiting at most ``timeout`` seconds, so a deadline can fire."""
    with contextlib.suppress(socket.timeout):
        connection.drain_events(timeout=timeout)


# -- attack 4: volume, requeues, acks then close ----------------------------------------------


def test_20k_messages_acked_one_by_one_leave_nothing_unacked(amqp_connection, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    n = 20_000
    fill(queue, n)
    consumer = consumer_for(amqp_connection, queue, 1000)
    seen: Counter = Counter()

    def callback(data: Any, message: Any) -> None:
        assert not message.delivery_info["redelivered"]
        seen[message.body] += 1
        message.ack()

    consumer.register_callback(callback)
    consumer.consume()
    deadline = time.monotonic() + 120
    while len(seen) < n and time.monotonic() < deadline:
        drain_once(amqp_connection)
    assert len(seen) == n and set(seen.values()) == {1}
    assert seen.keys() == {str(i).encode() for i in range(n)}
    # The consumer stays connected and idle: every ack must already be out.
    if unacked(queue) is not None:
        assert wait_for(lambda: unacked(queue) == 0, step=0.5), unacked(queue)
    assert ready_count(queue) == 0
    amqp_connection.close()
    # Closing requeues whatever the broker still counted as unacked: nothing.
    assert wait_for(lambda: ready_count(queue) == 0) and ready_count(queue) == 0


def test_ack_every_other_requeue_the_rest_acks_each_exactly_once(
    amqp_connection, unique, amqp_cleanup
):
    queue = amqp_cleanup.queue(unique)
    n = 3000
    fill(queue, n)
    consumer = consumer_for(amqp_connection, queue, 200)
    deliveries: Counter = Counter()
    acked: Counter = Counter()
    problems: list[str] = []
    parity = iter(range(10**9))

    def callback(data: Any, message: Any) -> None:
        body = message.body
        if acked[body]:
            problems.append(f"{body!r} delivered after it was acked")
        if deliveries[body] and not message.delivery_info["redelivered"]:
            problems.append(f"{body!r} delivered again without the redelivered flag")
        deliveries[body] += 1
        if next(parity) % 2 == 0:
            acked[body] += 1
            message.ack()
        else:
            message.requeue()

    consumer.register_callback(callback)
    consumer.consume()
    deadline = time.monotonic() + 120
    while len(acked) < n and time.monotonic() < deadline:
        drain_once(amqp_connection)
    assert problems == []
    assert len(acked) == n and set(acked.values()) == {1}
    assert sum(deliveries.values()) > n  # requeued ones came back
    if unacked(queue) is not None:
        assert wait_for(lambda: unacked(queue) == 0, step=0.5), unacked(queue)
    amqp_connection.close()
    assert wait_for(lambda: ready_count(queue) == 0) and ready_count(queue) == 0


def test_acks_made_by_wait_reach_the_broker_before_the_socket_dies(
    amqp_connection, unique, amqp_cleanup
):
    # wait(limit=5) with 50 prefetched: deliveries 6.. are already read when
    # it returns. The 5 acks must be on the wire then, not held for a next
    # read that never comes (the process dies here without closing).
    queue = amqp_cleanup.queue(unique)
    fill(queue, 50)
    consumer = consumer_for(amqp_connection, queue, 50)
    consumer.register_callback(lambda data, message: message.ack())
    consumer.wait(limit=5)
    conn = amqp_connection.connection
    assert wait_for(lambda: ready_count(queue) == 0)  # all 50 delivered
    conn.transport.sock.shutdown(socket.SHUT_RDWR)  # as a killed process: no close handshake
    conn.transport.sock.close()
    # The broker requeues the 45 unacked; the 5 acked are gone.
    assert wait_for(lambda: ready_count(queue) == 45), ready_count(queue)
    with contextlib.suppress(Exception):
        amqp_connection.close()


def test_ack_then_close_connection_immediately(amqp_connection, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    fill(queue, 300)
    consumer = consumer_for(amqp_connection, queue, 300)
    got: list = []

    def callback(data: Any, message: Any) -> None:
        got.append(message.body)
        message.ack()
        if len(got) == 100:
            amqp_connection.close()  # from inside the callback, with acks held

    consumer.register_callback(callback)
    consumer.consume()
    deadline = time.monotonic() + 60
    # close() in the callback ends the loop: the next drain raises
    with contextlib.suppress(Exception):
        while len(got) < 300 and time.monotonic() < deadline:
            drain_once(amqp_connection)
    # As with py-amqp, deliveries already read are still dispatched while
    # close() waits for close-ok; their acks come after connection.close and
    # the broker ignores them. The 100 acks made before close() all count.
    assert len(got) >= 100
    assert got[:100] == [str(i).encode() for i in range(100)]
    assert wait_for(lambda: ready_count(queue) == 200), ready_count(queue)


# -- attack 3: publishing ------------------------------------------------------------------------


def test_mandatory_returns_while_publishing_fast(amqp_connection, unique, amqp_cleanup):
    exchange = amqp_cleanup.exchange(unique)
    queue = amqp_cleanup.queue(unique)
    publisher = Publisher(amqp_connection, exchange=exchange, routing_key="bound")
    backend = publisher.backend
    backend.queue_declare(queue, durable=False, exclusive=False, auto_delete=False)
    backend.queue_bind(queue, exchange, "bound")
    n = 400
    for i in range(n):
        publisher.send({"i": i}, routing_key="nowhere", mandatory=True)
        publisher.send({"i": i}, routing_key="bound", mandatory=True)
    conn = amqp_connection.connection

    def returned() -> int:
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=0.05)
        return len(backend.returned_messages)

    assert wait_for(lambda: returned() >= n, seconds=20, step=0)
    assert len(backend.returned_messages) == n
    codes = {code for code, _text, _ex, _rk, _m in backend.returned_messages}
    assert codes == {312}
    assert [rk for *_rest, rk, _m in backend.returned_messages] == ["nowhere"] * n
    bodies = [m.body for *_rest, m in backend.returned_messages]
    assert bodies == [f'{{"i": {i}}}'.encode() for i in range(n)] or len(set(bodies)) == n
    assert wait_for(lambda: ready_count(queue) == n)


def test_confirm_select_then_publish_gets_every_confirm(unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    conn = fast_connection()
    try:
        channel = conn.channel()
        channel.queue_declare(queue, auto_delete=False)
        confirmed: list = []
        channel.events["basic_ack"].add(lambda tag, multiple: confirmed.append((tag, multiple)))
        channel.confirm_select()
        for i in range(500):
            channel.fast_publish(amqp.Message(str(i).encode()), "", queue)

        def highest() -> int:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.05)
            return max((tag for tag, _m in confirmed), default=0)

        assert wait_for(lambda: highest() == 500, seconds=20, step=0)
        assert wait_for(lambda: ready_count(queue) == 500)
    finally:
        conn.close()


def test_two_threads_publishing_on_two_channels_never_interleave(unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    conn = fast_connection()
    per_thread = 1500
    errors: list[BaseException] = []

    def body(thread: int, i: int) -> bytes:
        # Sizes from tiny to several frames, with the digest at the front.
        size = (i * 7919) % 300_000 if i % 10 == 0 else (i * 31) % 2000
        payload = bytes([thread]) * (size + 1) + i.to_bytes(4, "big")
        return hashlib.sha1(payload).digest() + payload

    try:
        conn.channel().queue_declare(queue, auto_delete=False)
        channels = [conn.channel(), conn.channel()]

        def publish(thread: int) -> None:
            try:
                for i in range(per_thread):
                    channels[thread].fast_publish(
                        amqp.Message(body(thread, i), content_type="application/x-test"), "", queue
                    )
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=(t,)) for t in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert conn.connected
    finally:
        conn.close()
    assert wait_for(lambda: ready_count(queue) == 2 * per_thread, seconds=30)
    got: list = []
    with plain_connection() as reader:
        channel = reader.channel()
        channel.basic_qos(0, 500, False)
        channel.basic_consume(queue, callback=got.append, no_ack=True)
        deadline = time.monotonic() + 60
        while len(got) < 2 * per_thread and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                reader.drain_events(timeout=1)
    assert len(got) == 2 * per_thread
    seen = set()
    for message in got:
        data = message.body
        digest, payload = data[:20], data[20:]
        assert hashlib.sha1(payload).digest() == digest
        assert message.properties == {"content_type": "application/x-test"}
        seen.add(payload[-4:] + payload[:1])
    assert len(seen) == 2 * per_thread


def test_queue_deleted_while_deliveries_are_buffered(amqp_connection, unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    fill(queue, 500)
    consumer = consumer_for(amqp_connection, queue, 500)
    got: list = []
    consumer.register_callback(lambda data, message: (got.append(message.body), message.ack()))
    backend = consumer.backend
    cancelled: list = []
    backend.channel.cancel_callbacks[consumer.consumer_tag] = cancelled.append
    it = consumer.iterconsume()
    next(it)
    with plain_connection() as other:
        other.channel().queue_delete(queue)
    conn = amqp_connection.connection
    deadline = time.monotonic() + 20
    while not cancelled and time.monotonic() < deadline:
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=0.2)
    assert cancelled == [consumer.consumer_tag]
    # What the broker delivered before deleting the queue arrived once each, in order.
    assert got == [str(i).encode() for i in range(len(got))]
    assert backend.channel.is_open


def test_worker_thread_acks_while_the_consumer_waits(unique, amqp_cleanup):
    # The consuming thread blocks in drain_events with prefetch used up; a
    # worker acks what it was handed. Every ack must reach the broker then,
    # or no further delivery ever comes.
    import queue as queue_module

    name = amqp_cleanup.queue(unique)
    n = 200
    fill(name, n)
    conn = fast_connection()
    handed: queue_module.Queue = queue_module.Queue()
    acked: list = []
    try:
        channel = conn.channel()
        channel.basic_qos(0, 10, False)
        channel.basic_consume(name, callback=handed.put)
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                try:
                    message = handed.get(timeout=0.1)
                except queue_module.Empty:
                    continue
                channel.basic_ack(message.delivery_tag)
                acked.append(message.body)

        thread = threading.Thread(target=worker)
        thread.start()
        deadline = time.monotonic() + 30
        try:
            while len(acked) < n and time.monotonic() < deadline:
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=5)
        finally:
            stop.set()
            thread.join(10)
        assert sorted(acked, key=int) == [str(i).encode() for i in range(n)]
    finally:
        conn.close()
    assert wait_for(lambda: ready_count(name) == 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_settlement_on_two_channels_against_rabbitmq(seed, unique, amqp_cleanup):
    # Any ack of a tag the broker does not hold unacked closes the channel
    # with PRECONDITION_FAILED; any combined ack covering an unsettled
    # delivery makes it vanish (never redelivered, never settled by us).
    import random

    rng = random.Random(seed)
    n = 300
    queues = [amqp_cleanup.queue(f"{unique}.{i}") for i in (1, 2)]
    for name in queues:
        fill(name, n)
    conn = fast_connection()
    final: Counter = Counter()  # (queue, body) -> times acked or dropped
    held: dict = {}  # (channel id, tag) -> (channel, queue, body)
    problems: list[str] = []
    try:
        channels = [conn.channel(), conn.channel()]

        def settle(channel: Any, queue: str, tag: int, body: bytes) -> None:
            roll = rng.random()
            if roll < 0.55:
                channel.basic_ack(tag)
                final[(queue, body)] += 1
            elif roll < 0.65:
                channel.basic_reject(tag, requeue=False)
                final[(queue, body)] += 1
            elif roll < 0.75:
                channel.basic_reject(tag, requeue=True)
            elif roll < 0.8:
                channel.basic_nack(tag, multiple=False, requeue=True)
            elif roll < 0.88:
                mine = sorted(t for (cid, t) in held if cid == channel.channel_id and t < tag)
                for t in mine:
                    _ch, q, b = held.pop((channel.channel_id, t))
                    final[(q, b)] += 1
                channel.basic_ack(tag, multiple=True)
                final[(queue, body)] += 1
            else:
                held[(channel.channel_id, tag)] = (channel, queue, body)

        for channel, name in zip(channels, queues, strict=True):
            channel.basic_qos(0, 40, False)

            def callback(message: Any, channel: Any = channel, name: str = name) -> None:
                if final[(name, message.body)]:
                    problems.append(f"{name} {message.body!r} delivered after settled")
                settle(channel, name, message.delivery_tag, message.body)

            channel.basic_consume(name, callback=callback)
        deadline = time.monotonic() + 60
        while sum(1 for _k in final) < 2 * n and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.2)
            if held and rng.random() < 0.3:
                for key in rng.sample(sorted(held), min(len(held), 3)):
                    if key in held:
                        channel, name, body = held.pop(key)
                        settle(channel, name, key[1], body)
            if rng.random() < 0.05:
                message = channels[0].basic_get(queues[0])
                if message is not None:
                    settle(channels[0], queues[0], message.delivery_tag, message.body)
            if time.monotonic() > deadline - 30:
                # Wind down: settle whatever is held, oldest first.
                for (_cid, tag), (channel, name, body) in sorted(held.items()):
                    channel.basic_ack(tag)
                    final[(name, body)] += 1
                held.clear()
        assert problems == []
        assert all(ch.is_open for ch in channels)  # no PRECONDITION_FAILED
        assert len(final) == 2 * n and set(final.values()) == {1}
    finally:
        conn.close()
    for name in queues:
        assert wait_for(lambda name=name: ready_count(name) == 0), ready_count(name)


def test_one_thread_consumes_while_another_publishes_on_the_same_connection(unique, amqp_cleanup):
    name = amqp_cleanup.queue(unique)
    n = 5000
    conn = fast_connection()
    got: Counter = Counter()
    errors: list[BaseException] = []
    try:
        consuming = conn.channel()
        consuming.queue_declare(name, auto_delete=False)
        consuming.basic_qos(0, 100, False)

        def callback(message: Any) -> None:
            got[message.body] += 1
            consuming.basic_ack(message.delivery_tag)

        consuming.basic_consume(name, callback=callback)
        publishing = conn.channel()

        def publish() -> None:
            try:
                for i in range(n):
                    publishing.fast_publish(amqp.Message(b"%d" % i + b"." * (i % 700)), "", name)
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=publish)
        thread.start()
        deadline = time.monotonic() + 60
        try:
            while len(got) < n and time.monotonic() < deadline and not errors:
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.5)
        finally:
            thread.join(30)
        assert errors == []
        assert len(got) == n and set(got.values()) == {1}
        assert {body.rstrip(b".") for body in got} == {b"%d" % i for i in range(n)}
    finally:
        conn.close()
    assert wait_for(lambda: ready_count(name) == 0)


def test_close_from_another_thread_while_one_waits_in_drain_events():
    conn = fast_connection()
    conn.channel()
    outcome: list = []

    def reader() -> None:
        try:
            conn.drain_events(timeout=10)
            outcome.append("returned")
        except Exception as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    assert wait_for(lambda: conn.held_acks.dispatching == 1, seconds=5, step=0.01)
    conn.close()  # must complete, not raise or hang
    thread.join(15)
    assert not thread.is_alive()
    assert not conn.connected
    assert len(outcome) == 1
