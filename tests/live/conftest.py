"""Fixtures of the live fault tests: a fault proxy in front of RabbitMQ, and a direct channel."""

from __future__ import annotations

from collections.abc import Iterator

import amqp
import pytest
from faultproxy import FaultProxy


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    """A :class:`faultproxy.FaultProxy` to the local RabbitMQ, stopped after the test."""
    with FaultProxy() as proxy:
        yield proxy


@pytest.fixture
def direct() -> Iterator[amqp.Channel]:
    """A channel on a direct connection (not through the proxy), to publish and inspect queues."""
    with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
        yield conn.channel()
