"""Shared fixtures: live-service markers, connections and unique names.

Tests marked ``rabbitmq``, ``redis`` or ``stomp`` need that service on
127.0.0.1. When it does not answer they skip with the reason, unless
``CARROT_REQUIRE_BROKER=1`` (set by ``.ci/run``), where they fail instead.

Tests marked ``kombu`` (or ``redis``: carrot's Redis backend is kombu's)
need the kombu package. It is an extra, absent where amqp is older than kombu
5.7 allows (tox's amqp52/amqp53), so those tests skip without it, always.
"""

from __future__ import annotations

import importlib.util
import socket
import uuid
from collections.abc import Iterator

import pytest
from unavailable import unavailable

from carrot.connection import BrokerConnection

#: marker -> (host, port) of the live service it needs.
SERVICES = {
    "rabbitmq": ("127.0.0.1", 5672),
    "redis": ("127.0.0.1", 6379),
    "stomp": ("127.0.0.1", 61613),
}

_service_up: dict[str, bool] = {}

#: Whether the kombu package (the ``kombu`` extra) is installed.
KOMBU_INSTALLED = importlib.util.find_spec("kombu") is not None


def service_answers(name: str) -> bool:
    """Whether the service behind marker ``name`` accepts a TCP connection."""
    if name not in _service_up:
        host, port = SERVICES[name]
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError:
            _service_up[name] = False
        else:
            _service_up[name] = True
    return _service_up[name]


def pytest_runtest_setup(item: pytest.Item) -> None:
    # carrot's Redis backend is kombu's Redis transport: ``redis`` implies ``kombu``.
    needs_kombu = item.get_closest_marker("kombu") or item.get_closest_marker("redis")
    if needs_kombu and not KOMBU_INSTALLED:
        pytest.skip("kombu is not installed (pip install carrot[kombu])")
    for name, (host, port) in SERVICES.items():
        if item.get_closest_marker(name) and not service_answers(name):
            unavailable(f"{name} is not answering on {host}:{port}")


@pytest.fixture
def unique() -> str:
    """A name no other test uses: ``carrot.test.<hex>``."""
    return f"carrot.test.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def amqp_conninfo() -> dict[str, object]:
    """Keyword arguments for a BrokerConnection to the local RabbitMQ."""
    return {
        "hostname": "127.0.0.1",
        "userid": "guest",
        "password": "guest",
        "virtual_host": "/",
        "port": 5672,
    }


@pytest.fixture
def amqp_connection(amqp_conninfo: dict[str, object]) -> Iterator[BrokerConnection]:
    """A BrokerConnection to the local RabbitMQ, closed after the test."""
    conn = BrokerConnection(**amqp_conninfo)
    try:
        yield conn
    finally:
        conn.close()


class AMQPCleanup:
    """Records queues and exchanges a test declares and deletes them afterwards."""

    def __init__(self) -> None:
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def queue(self, name: str) -> str:
        self.queues.append(name)
        return name

    def exchange(self, name: str) -> str:
        self.exchanges.append(name)
        return name

    def run(self) -> None:
        if not (self.queues or self.exchanges):
            return
        import amqp

        with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
            for name in self.queues:
                ch = conn.channel()
                try:
                    ch.queue_delete(name)
                finally:
                    if ch.is_open:
                        ch.close()
            for name in self.exchanges:
                ch = conn.channel()
                try:
                    ch.exchange_delete(name)
                finally:
                    if ch.is_open:
                        ch.close()


@pytest.fixture
def amqp_cleanup() -> Iterator[AMQPCleanup]:
    """Register names with ``.queue(name)``/``.exchange(name)``; deleted at teardown."""
    cleanup = AMQPCleanup()
    try:
        yield cleanup
    finally:
        cleanup.run()
