"""The 3-node test cluster (``cluster.sh``), started once for the session.

Tests marked ``cluster`` use the :func:`cluster` fixture. The session starts
the cluster on first use and always stops it at the end (failure, Ctrl-C and
all), then checks that no node process, directory or port of it is left. When
the cluster cannot start the tests skip with the reason, or fail under
``CARROT_REQUIRE_BROKER=1``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import amqp
import pytest
from carrot_cluster import Cluster, ClusterError, cluster_available, owned_cluster
from unavailable import unavailable

from carrot.connection import BrokerConnection


@pytest.fixture(scope="session")
def cluster_session() -> Iterator[Cluster]:
    reason = cluster_available()
    if reason:
        unavailable(f"the test cluster cannot run: {reason}")
    with contextlib.ExitStack() as stack:
        try:
            running = stack.enter_context(owned_cluster())
        except ClusterError as exc:
            unavailable(f"the test cluster did not start: {exc}")
        yield running


@pytest.fixture
def cluster(cluster_session: Cluster) -> Cluster:
    """The running cluster, every node up: nodes an earlier test killed are revived."""
    cluster_session.revive_all()
    return cluster_session


@pytest.fixture
def connect(cluster: Cluster) -> Iterator[Callable[[int], BrokerConnection]]:
    """``connect(n)``: a BrokerConnection to node n, closed after the test."""
    opened: list[BrokerConnection] = []

    def connect(node: int) -> BrokerConnection:
        conn = BrokerConnection(
            hostname="127.0.0.1",
            port=cluster.port(node),
            userid="guest",
            password="guest",
            virtual_host="/",
            connect_timeout=5,
        )
        opened.append(conn)
        return conn

    try:
        yield connect
    finally:
        for conn in opened:
            conn.close()


@pytest.fixture
def quorum_queue(cluster: Cluster) -> Iterator[str]:
    """A unique queue name, deleted from the cluster after the test.

    With a node down the queue is left to ``cluster.sh stop`` at the end of
    the session (which deletes every node's data): deleting a quorum queue
    with a member down waits about 5 s for it.
    """
    name = f"carrot.test.cluster.{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        if not cluster.down:
            with amqp.Connection(
                f"127.0.0.1:{cluster.port(1)}", "guest", "guest", connect_timeout=5
            ) as conn:
                conn.channel().queue_delete(name)
