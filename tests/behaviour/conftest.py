"""The carrot.messaging behaviour suite, run once per backend.

Every test here takes the ``broker`` fixture (or ``backend_name``) and so
runs for each entry of :data:`BACKENDS`. To add a backend:

* append ``pytest.param("<name>", marks=..., id="<name>")`` to
  :data:`BACKENDS` (mark it with the live service it needs);
* add the keyword arguments of its ``BrokerConnection`` to
  :data:`CONNECTION_ARGS`;
* list what it supports beyond the common contract in :data:`FEATURES`
  (tests needing a feature it lacks skip, naming the feature);
* if it stores queues on the local RabbitMQ, add it to :data:`ON_RABBITMQ`;
  otherwise, to delete its queues after each test, to :data:`CLEANUP`;
* optionally, a function in :data:`RESET` run before each test (isolation)
  and one in :data:`READY_COUNT` counting the ready messages of a queue.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, Publisher

_AMQP_ARGS = {
    "hostname": "127.0.0.1",
    "userid": "guest",
    "password": "guest",
    "virtual_host": "/",
    "port": 5672,
}

#: The backends the suite runs on, as ``pytest.param(name, marks=..., id=name)``.
BACKENDS: list[Any] = [
    pytest.param("amqp", marks=pytest.mark.rabbitmq, id="amqp"),
    pytest.param("memory", id="memory"),
    pytest.param("kombu", marks=pytest.mark.kombu, id="kombu"),
    pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.kombu], id="redis"),
    pytest.param("pika", marks=pytest.mark.rabbitmq, id="pika"),
    # Exchanges are declared over AMQP (STOMP cannot): hence both marks.
    pytest.param("stomp", marks=[pytest.mark.stomp, pytest.mark.rabbitmq], id="stomp"),
]

#: backend name -> keyword arguments for its BrokerConnection.
CONNECTION_ARGS: dict[str, dict[str, Any]] = {
    "amqp": {**_AMQP_ARGS, "backend_cls": "amqp"},
    "memory": {"backend_cls": "memory"},
    "kombu": {"backend_cls": "kombu"},
    "redis": {"hostname": "127.0.0.1", "port": 6379, "virtual_host": "/", "backend_cls": "redis"},
    "pika": {**_AMQP_ARGS, "backend_cls": "pika"},
    "stomp": {**_AMQP_ARGS, "port": 61613, "backend_cls": "stomp"},
}

#: backend name -> what it supports beyond publish/get/consume/ack:
#:
#: * ``routing``: messages reach only the queues bound for them; queues are
#:   separate (the memory backend has one shared FIFO);
#: * ``exchange_types``: direct, topic, fanout and headers exchanges;
#: * ``redelivery``: an unacked message comes back when its channel closes;
#: * ``reject``/``requeue``: the broker drops / puts back a message;
#: * ``prefetch``: ``qos(prefetch_count=...)`` limits deliveries;
#: * ``properties``: delivery_mode and priority travel with the message;
#: * ``channel_id``: backends expose ``channel.channel_id``.
FEATURES: dict[str, set[str]] = {
    "amqp": {
        "routing",
        "exchange_types",
        "redelivery",
        "reject",
        "requeue",
        "prefetch",
        "properties",
        "channel_id",
    },
    "memory": {"requeue", "reject", "properties"},
    "kombu": {
        "routing",
        "exchange_types",
        "redelivery",
        "reject",
        "requeue",
        "prefetch",
        "properties",
        "channel_id",
    },
    # Redis fanout is PUB/SUB: only running consumers get it, never get()
    # (carrot.backends.kombu_transport).
    "redis": {"routing", "redelivery", "reject", "requeue", "prefetch", "properties", "channel_id"},
    # pika's channels are numbered by ``channel_number``, not ``channel_id``.
    "pika": {
        "routing",
        "exchange_types",
        "redelivery",
        "reject",
        "requeue",
        "prefetch",
        "properties",
    },
    # No exchange declaration, no basic.get message_count (carrot.backends.pystomp).
    "stomp": {"routing", "redelivery", "reject", "requeue", "prefetch", "properties"},
}


def _reset_memory() -> None:
    from carrot.backends import queue

    queue.reset()


def _memory_ready_count(broker: Broker, queue: str) -> int:
    from carrot.backends import queue as memory

    return memory.mqueue.qsize()


def _amqp_ready_count(broker: Broker, queue: str) -> int:
    channel = broker.connection.connection.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    finally:
        channel.close()


def _pika_ready_count(broker: Broker, queue: str) -> int:
    channel = broker.connection.connection.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).method.message_count
    finally:
        channel.close()


def _kombu_ready_count(broker: Broker, queue: str) -> int:
    backend = broker.connection.create_backend()
    try:
        return backend._message_count(queue)
    finally:
        backend.close()


def _stomp_ready_count(broker: Broker, queue: str) -> int:
    # STOMP cannot count a queue: ask over AMQP (same RabbitMQ).
    with BrokerConnection(**CONNECTION_ARGS["amqp"]) as conn:
        channel = conn.connection.channel()
        return channel.queue_declare(queue=queue, passive=True).message_count


#: backend name -> function run before each test, for isolation.
RESET: dict[str, Callable[[], None]] = {"memory": _reset_memory}

#: backend name -> ``count(broker, queue)``: messages ready in ``queue``.
READY_COUNT: dict[str, Callable[[Broker, str], int]] = {
    "amqp": _amqp_ready_count,
    "memory": _memory_ready_count,
    "kombu": _kombu_ready_count,
    "redis": _kombu_ready_count,
    "pika": _pika_ready_count,
    "stomp": _stomp_ready_count,
}

#: Backends whose queues and exchanges live on the local RabbitMQ and are
#: deleted after each test (fixture ``amqp_cleanup``).
ON_RABBITMQ: set[str] = {"amqp", "pika"}


class _KombuCleanup:
    """Deletes the queues a test on a kombu backend declared (memory is process-wide)."""

    def __init__(self, backend_name: str) -> None:
        self.backend_name = backend_name
        self.queues: list[str] = []

    def queue(self, name: str) -> str:
        self.queues.append(name)
        return name

    def exchange(self, name: str) -> str:
        return name

    def run(self) -> None:
        with BrokerConnection(**CONNECTION_ARGS[self.backend_name]) as conn:
            backend = conn.create_backend()
            for name in self.queues:
                backend.queue_delete(name)
            backend.close()


#: backend name -> cleanup for backends not on RabbitMQ: ``queue(name)``,
#: ``exchange(name)`` record names, ``run()`` deletes them after the test.
class _StompCleanup:
    """Declares a test's exchanges over AMQP (STOMP cannot), deletes all it made after."""

    def __init__(self, backend_name: str) -> None:
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def queue(self, name: str) -> str:
        self.queues.append(name)
        return name

    def exchange(self, name: str) -> str:
        with BrokerConnection(**CONNECTION_ARGS["amqp"]) as conn:
            conn.create_backend().exchange_declare(name, "direct", False, False)
        self.exchanges.append(name)
        return name

    def run(self) -> None:
        with BrokerConnection(**CONNECTION_ARGS["amqp"]) as conn:
            backend = conn.create_backend()
            for name in self.queues:
                backend.queue_delete(name)
            for name in self.exchanges:
                backend.channel.exchange_delete(name)
            backend.close()


CLEANUP: dict[str, Callable[[str], Any]] = {
    "kombu": _KombuCleanup,
    "redis": _KombuCleanup,
    "stomp": _StompCleanup,
}

#: Seconds a test waits for something that should happen.
DEADLINE = 10.0


class Broker:
    """What a behaviour test needs of the backend under test."""

    def __init__(self, name: str, connection: BrokerConnection, cleanup: Any, unique: str):
        self.name = name
        self.connection = connection
        self._cleanup = cleanup
        self._unique = unique
        self._counter = 0
        self._extra: list[BrokerConnection] = []
        self._closables: list[Any] = []

    def has(self, feature: str) -> bool:
        return feature in FEATURES.get(self.name, set())

    def require(self, *features: str) -> None:
        """Skip the test unless the backend has every one of ``features``."""
        for feature in features:
            if not self.has(feature):
                pytest.skip(f"the {self.name} backend has no {feature!r} (see FEATURES)")

    def _name(self, kind: str) -> str:
        self._counter += 1
        return f"{self._unique}.{kind}{self._counter}"

    def queue(self) -> str:
        """A unique queue name, deleted after the test."""
        return self._cleanup.queue(self._name("q"))

    def exchange(self) -> str:
        """A unique exchange name, deleted after the test."""
        return self._cleanup.exchange(self._name("x"))

    def pair(
        self, publisher_kwargs: dict[str, Any] | None = None, **consumer_kwargs: Any
    ) -> tuple[Publisher, Consumer]:
        """A publisher and a consumer of a new queue bound to a new direct exchange.

        The routing key is the queue's name; both are closed after the test.
        They share one backend (channel), so a ``fetch`` right after a
        ``send`` finds the message: a broker handles one channel's methods
        in order, but not those of two channels.
        """
        queue, exchange = self.queue(), self.exchange()
        consumer = Consumer(
            self.connection, queue=queue, exchange=exchange, routing_key=queue, **consumer_kwargs
        )
        publisher_kwargs = {"backend": consumer.backend, **(publisher_kwargs or {})}
        publisher = Publisher(
            self.connection, exchange=exchange, routing_key=queue, **publisher_kwargs
        )
        self.closing(consumer)
        self.closing(publisher)
        return publisher, consumer

    def closing(self, thing: Any) -> Any:
        """Close ``thing`` after the test (before the connection)."""
        self._closables.append(thing)
        return thing

    def new_connection(self) -> BrokerConnection:
        """Another connection to the same broker, closed after the test."""
        conn = BrokerConnection(**CONNECTION_ARGS[self.name])
        self._extra.append(conn)
        return conn

    def ready(self, queue: str) -> int:
        """How many messages are ready in ``queue``."""
        return READY_COUNT[self.name](self, queue)

    def drain_until(
        self, done: Callable[[], bool], connection: BrokerConnection | None = None
    ) -> None:
        """Drain events until ``done()`` is true; fail after :data:`DEADLINE` seconds."""
        connection = connection or self.connection
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

    def close(self) -> None:
        errors = (OSError, *self.connection.connection_errors)
        for thing in reversed(self._closables):
            with contextlib.suppress(*errors):  # the test closed the connection under it
                thing.close()
        for conn in self._extra:
            conn.close()


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test (one run per :data:`BACKENDS` entry)."""
    return request.param


@pytest.fixture
def broker(backend_name: str, amqp_cleanup: Any, unique: str) -> Iterator[Broker]:
    """A :class:`Broker` for the backend under test, with a fresh connection."""
    reset = RESET.get(backend_name)
    if reset is not None:
        reset()
    connection = BrokerConnection(**CONNECTION_ARGS[backend_name])
    if backend_name not in ON_RABBITMQ:
        amqp_cleanup = (
            CLEANUP[backend_name](backend_name) if backend_name in CLEANUP else _NoCleanup()
        )
    b = Broker(backend_name, connection, amqp_cleanup, unique)
    try:
        yield b
    finally:
        b.close()
        connection.close()
        if backend_name in CLEANUP:
            amqp_cleanup.run()
        if reset is not None:
            reset()


class _NoCleanup:
    def queue(self, name: str) -> str:
        return name

    def exchange(self, name: str) -> str:
        return name
