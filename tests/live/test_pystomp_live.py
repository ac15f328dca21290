"""The STOMP backend against RabbitMQ's STOMP plugin (127.0.0.1:61613).

Queues are checked (and deleted afterwards) over AMQP on the same broker.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import amqp
import pytest

from carrot.backends.pystomp import StompError
from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, ConsumerSet, Publisher

pytestmark = [pytest.mark.stomp, pytest.mark.rabbitmq]

STOMP_ARGS = {"hostname": "127.0.0.1", "userid": "guest", "password": "guest", "virtual_host": "/"}
DEADLINE = 10.0


@pytest.fixture
def stomp_conn() -> Iterator[BrokerConnection]:
    conn = BrokerConnection(backend_cls="stomp", **STOMP_ARGS)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def channel(amqp_connection: BrokerConnection) -> Any:
    """A raw py-amqp channel, to look at the queues the test made."""
    return amqp_connection.connection.channel()


def ready(channel: Any, queue: str) -> int:
    return channel.queue_declare(queue=queue, passive=True).message_count


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    for _ in range(1000):
        if predicate():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    pytest.fail(f"not within {DEADLINE} s: {what}")


def drain_until(conn: BrokerConnection, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    for _ in range(10_000):
        if done():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=min(remaining, 1.0))
    pytest.fail(f"not done within {DEADLINE} s")


def get_within(backend: Any, queue: str, no_ack: bool = False) -> Any:
    """backend.get() until a message comes (a publish on another connection may lag)."""
    deadline = time.monotonic() + DEADLINE
    for _ in range(100):
        message = backend.get(queue, no_ack=no_ack)
        if message is not None or time.monotonic() > deadline:
            return message
    return None


def test_publish_get_round_trip(stomp_conn, amqp_cleanup, unique, channel) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    backend = stomp_conn.create_backend()
    backend.queue_declare(queue, durable=False)
    assert ready(channel, queue) == 0  # declared on the broker
    message = backend.prepare_message(
        b'{"x": [1, 2]}', 2, priority=4, content_type="application/json", content_encoding="utf-8"
    )
    backend.publish(message, "", queue, headers={"x-trace": "t1"})
    received = get_within(backend, queue)
    assert received is not None
    assert received.payload == {"x": [1, 2]}
    assert received.content_type == "application/json"
    assert received.properties == {"delivery_mode": 2, "priority": 4}
    assert received.headers["x-trace"] == "t1"
    assert received.delivery_info["routing_key"] == queue
    received.ack()
    wait_for(lambda: ready(channel, queue) == 0, "queue empty after the ack")
    assert backend.get(queue) is None
    backend.close()


def test_binary_body_survives(stomp_conn, amqp_cleanup, unique) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    backend = stomp_conn.create_backend()
    backend.queue_declare(queue)
    body = bytes(range(256)) * 4
    backend.publish(backend.prepare_message(body, 1, content_type="application/data",
                                            content_encoding="binary"), "", queue)  # fmt: skip
    received = get_within(backend, queue, no_ack=True)
    assert received.body == body
    assert received.content_encoding == "binary"
    backend.close()


def test_consume_with_callbacks_and_ack(stomp_conn, amqp_cleanup, unique, channel) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    consumer = Consumer(stomp_conn, queue=queue, exchange="amq.direct", routing_key=queue)
    publisher = Publisher(stomp_conn, exchange="amq.direct", routing_key=queue)
    received: list[Any] = []
    threads: set[threading.Thread] = set()

    def callback(data: Any, message: Any) -> None:
        received.append(data)
        threads.add(threading.current_thread())
        message.ack()

    consumer.register_callback(callback)
    for i in range(3):
        publisher.send({"n": i})
    it = consumer.iterconsume(limit=3)
    assert list(it) == [True, True, True]
    assert received == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert threads == {threading.current_thread()}  # never stomp.py's receiver thread
    wait_for(lambda: ready(channel, queue) == 0, "acked messages gone")
    consumer.close()
    publisher.close()


def test_drain_events_timeout(stomp_conn, amqp_cleanup, unique) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    consumer = Consumer(stomp_conn, queue=queue, exchange="amq.direct", routing_key=queue)
    received: list[Any] = []
    consumer.register_callback(lambda data, message: (received.append(data), message.ack()))
    consumer.consume()
    with pytest.raises(TimeoutError):  # socket.timeout
        stomp_conn.drain_events(timeout=0.2)
    Publisher(stomp_conn, exchange="amq.direct", routing_key=queue).send("hello")
    stomp_conn.drain_events(timeout=DEADLINE)
    assert received == ["hello"]
    consumer.close()


def test_requeue_redelivers(stomp_conn, amqp_cleanup, unique) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    consumer = Consumer(stomp_conn, queue=queue, exchange="amq.direct", routing_key=queue)
    Publisher(stomp_conn, exchange="amq.direct", routing_key=queue).send("again")
    seen: list[Any] = []

    def callback(data: Any, message: Any) -> None:
        seen.append((data, message.delivery_info["redelivered"]))
        if len(seen) == 1:
            message.requeue()
        else:
            message.ack()

    consumer.register_callback(callback)
    consumer.consume()
    drain_until(stomp_conn, lambda: len(seen) >= 2)
    assert seen == [("again", False), ("again", True)]
    consumer.close()


def test_reject_drops(stomp_conn, amqp_cleanup, unique, channel) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    consumer = Consumer(stomp_conn, queue=queue, exchange="amq.direct", routing_key=queue)
    Publisher(stomp_conn, exchange="amq.direct", routing_key=queue).send("drop me")
    seen: list[Any] = []

    def callback(data: Any, message: Any) -> None:
        seen.append(data)
        message.reject()

    consumer.register_callback(callback)
    consumer.consume()
    drain_until(stomp_conn, lambda: bool(seen))
    consumer.close()
    stomp_conn.close()  # nothing unacked is left to come back
    wait_for(lambda: ready(channel, queue) == 0, "the rejected message is gone")
    assert seen == ["drop me"]


def test_no_ack_consumer(stomp_conn, amqp_cleanup, unique, channel) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    consumer = Consumer(
        stomp_conn, queue=queue, exchange="amq.direct", routing_key=queue, no_ack=True
    )
    Publisher(stomp_conn, exchange="amq.direct", routing_key=queue).send("once")
    seen: list[Any] = []
    consumer.register_callback(lambda data, message: seen.append(data))
    consumer.consume()
    drain_until(stomp_conn, lambda: bool(seen))
    stomp_conn.close()  # an unacked message would come back now; this one was not held
    wait_for(lambda: ready(channel, queue) == 0, "consumed without ack")
    assert seen == ["once"]


def test_unacked_get_goes_back_on_close(stomp_conn, amqp_cleanup, unique, channel) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    consumer = Consumer(stomp_conn, queue=queue, exchange="amq.direct", routing_key=queue)
    Publisher(stomp_conn, exchange="amq.direct", routing_key=queue).send("keep")
    deadline = time.monotonic() + DEADLINE
    message = None
    while message is None and time.monotonic() < deadline:
        message = consumer.fetch()
    assert message is not None and message.payload == "keep"
    consumer.close()  # not acked: back in the queue
    wait_for(lambda: ready(channel, queue) == 1, "the unacked message is back")


def test_purge(stomp_conn, amqp_cleanup, unique, channel) -> None:
    queue = amqp_cleanup.queue(f"{unique}.q")
    consumer = Consumer(stomp_conn, queue=queue, exchange="amq.direct", routing_key=queue)
    publisher = Publisher(stomp_conn, exchange="amq.direct", routing_key=queue)
    for i in range(5):
        publisher.send(i)
    wait_for(lambda: ready(channel, queue) == 5, "five messages ready")
    assert consumer.purge() == 5
    assert ready(channel, queue) == 0
    consumer.close()


def test_consumer_set(stomp_conn, amqp_cleanup, unique, amqp_connection) -> None:
    exchange = amqp_cleanup.exchange(f"{unique}.x")
    amqp_connection.create_backend().exchange_declare(exchange, "topic", False, True)
    queues = [amqp_cleanup.queue(f"{unique}.q{i}") for i in range(2)]
    cset = ConsumerSet(stomp_conn)
    for i, queue in enumerate(queues):
        cset.add_consumer_from_dict(
            queue=queue, exchange=exchange, exchange_type="topic", routing_key=f"k{i}.#"
        )
    received: list[Any] = []
    cset.register_callback(lambda data, message: (received.append(data), message.ack()))
    publisher = Publisher(stomp_conn, exchange=exchange, exchange_type="topic")
    publisher.send("to0", routing_key="k0.a")
    publisher.send("to1", routing_key="k1.b")
    publisher.send("nowhere", routing_key="k2.c")
    it = cset.iterconsume()
    deadline = time.monotonic() + DEADLINE
    while len(received) < 2 and time.monotonic() < deadline:
        next(it)
    assert sorted(received) == ["to0", "to1"]
    with pytest.raises(TimeoutError):
        stomp_conn.drain_events(timeout=0.3)  # the unrouted one went nowhere
    cset.close()
    publisher.close()


def test_amqp_to_stomp(stomp_conn, amqp_cleanup, unique, amqp_connection) -> None:
    exchange = amqp_cleanup.exchange(f"{unique}.x")
    queue = amqp_cleanup.queue(f"{unique}.q")
    amqp_consumer = Consumer(amqp_connection, queue=queue, exchange=exchange, routing_key="rk")
    amqp_consumer.close()  # declared and bound over AMQP
    Publisher(amqp_connection, exchange=exchange, routing_key="rk").send(
        {"from": "amqp", "n": [1, 2]}, priority=2
    )
    consumer = Consumer(stomp_conn, queue=queue, exchange=exchange, routing_key="rk")
    received: list[Any] = []

    def callback(data: Any, message: Any) -> None:
        received.append((data, message))
        message.ack()

    consumer.register_callback(callback)
    consumer.consume()
    drain_until(stomp_conn, lambda: bool(received))
    data, message = received[0]
    assert data == {"from": "amqp", "n": [1, 2]}
    assert message.delivery_info["exchange"] == exchange
    assert message.delivery_info["routing_key"] == "rk"
    assert message.properties["priority"] == 2
    consumer.close()


def test_stomp_to_amqp(stomp_conn, amqp_cleanup, unique, amqp_connection) -> None:
    exchange = amqp_cleanup.exchange(f"{unique}.x")
    queue = amqp_cleanup.queue(f"{unique}.q")
    amqp_consumer = Consumer(amqp_connection, queue=queue, exchange=exchange, routing_key="rk")
    Publisher(stomp_conn, exchange=exchange, routing_key="rk").send(
        {"from": "stomp"}, delivery_mode=1
    )
    deadline = time.monotonic() + DEADLINE
    message = None
    while message is None and time.monotonic() < deadline:
        message = amqp_consumer.fetch()
    assert message is not None
    assert message.payload == {"from": "stomp"}
    assert message.content_type == "application/json"
    assert message.delivery_info["routing_key"] == "rk"
    message.ack()
    amqp_consumer.close()


def test_subscribing_to_a_missing_queue_raises(stomp_conn, unique) -> None:
    backend = stomp_conn.create_backend()
    backend._queues.created(f"{unique}.missing")  # as if declared: /amq/queue/ does not create
    with pytest.raises(StompError):
        backend.declare_consumer(f"{unique}.missing", False, lambda frame: None, "tag")


def test_binding_to_a_missing_exchange_raises(stomp_conn, unique, channel) -> None:
    with pytest.raises(StompError, match="no exchange"):
        Consumer(stomp_conn, queue=f"{unique}.q", exchange=f"{unique}.nox", routing_key="k")
    with pytest.raises(amqp.exceptions.NotFound):
        ready(channel, f"{unique}.q")  # nothing was declared either


def test_publishing_to_a_missing_exchange_raises_on_drain(stomp_conn, unique) -> None:
    Publisher(stomp_conn, exchange=f"{unique}.nox", routing_key="k").send("lost")
    # As AMQP closes the channel, RabbitMQ's STOMP sends ERROR and closes the connection.
    with pytest.raises(StompError, match="no exchange"):
        stomp_conn.drain_events(timeout=DEADLINE)
    with pytest.raises(stomp_conn.connection_errors):
        stomp_conn.drain_events(timeout=DEADLINE)


def test_bad_password_is_refused() -> None:
    conn = BrokerConnection(backend_cls="stomp", **{**STOMP_ARGS, "password": "wrong-pw"})
    with pytest.raises(StompError) as excinfo:
        conn.connect()
    assert "wrong-pw" not in str(excinfo.value)
    conn.close()


# -- faults -------------------------------------------------------------------------


class CuttableProxy:
    """A loopback TCP proxy to RabbitMQ's STOMP port whose connections the test can cut."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 61613)) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(60)
        with contextlib.suppress(OSError):
            for _ in range(1_000_000):
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self.cut()
        self._thread.join(5)


def test_lost_connection_raises_a_connection_error_and_reconnects(amqp_cleanup, unique) -> None:
    proxy = CuttableProxy()
    conn = BrokerConnection(backend_cls="stomp", **{**STOMP_ARGS, "port": proxy.port})
    try:
        queue = amqp_cleanup.queue(f"{unique}.q")
        consumer = Consumer(conn, queue=queue, exchange="amq.direct", routing_key=queue)
        consumer.register_callback(lambda data, message: message.ack())
        consumer.consume()
        lost = conn.connection
        proxy.cut()
        with pytest.raises(conn.connection_errors):
            conn.drain_events(timeout=DEADLINE)
        assert not lost.connected
        conn.ensure_connection(max_retries=3, interval_start=0.1, interval_step=0.1)
        assert conn.connection is not lost
        assert conn.connection.connected
    finally:
        conn.close()
        proxy.close()


def test_silent_server_times_out() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        conn = BrokerConnection(
            backend_cls="stomp",
            **{**STOMP_ARGS, "port": server.getsockname()[1]},
            connect_timeout=0.3,
        )
        with pytest.raises(conn.connection_errors, match="no CONNECTED"):
            conn.connect()
        conn.close()
    finally:
        server.close()


def test_refused_port_is_a_connection_error() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()  # nothing listens there now
    conn = BrokerConnection(backend_cls="stomp", **{**STOMP_ARGS, "port": port})
    with pytest.raises(conn.connection_errors):
        conn.connect()
    conn.close()
