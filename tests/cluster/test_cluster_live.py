"""carrot on a 3-node RabbitMQ cluster with quorum queues, nodes killed with -9.

What the client does today when a node dies: the connection to that node
fails with one of ``connection.connection_errors``, and an application that
reconnects to a surviving node finds every message it had not acknowledged.
Automatic failover (broker lists, ``auto_recover``) is not part of these tests.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from carrot_cluster import QUORUM, Cluster

from carrot.messaging import Consumer, Publisher

pytestmark = pytest.mark.cluster

#: Seconds a test waits for the messages it expects.
DEADLINE = 30.0
#: Seconds the client may take to notice that its node died.
DEATH_NOTICED_WITHIN = 10.0


def quorum_consumer(conn, queue: str, prefetch: int = 0) -> Consumer:
    consumer = Consumer(connection=conn, queue=queue, durable=True, queue_arguments=QUORUM)
    if prefetch:
        consumer.qos(prefetch_count=prefetch)
    return consumer


def publish(conn, queue: str, numbers) -> None:
    """Publish ``{"n": n}`` for each number, persistent, and wait for the broker's confirms.

    Without confirms a quorum queue may drop the last messages of a channel
    that closes right after publishing (seen here after a node was killed or
    revived): a publisher that must not lose messages waits for confirms.
    """
    publisher = Publisher(
        connection=conn, exchange="", routing_key=queue, confirm=True, max_unconfirmed=200
    )
    try:
        for n in numbers:
            publisher.send({"n": n, "pad": "x" * 80})  # persistent by default
        publisher.wait_for_confirms(timeout=DEADLINE)
    finally:
        publisher.close()


def consume_numbers(conn, consumer: Consumer, expected: int, ack: bool = True) -> list[int]:
    """Consume until ``expected`` messages arrived (bounded); their numbers in order."""
    got: list[int] = []

    def on_message(data, message):
        got.append(data["n"])
        if ack:
            message.ack()

    consumer.register_callback(on_message)
    consumer.consume()
    deadline = time.monotonic() + DEADLINE
    while len(got) < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            missing = sorted(set(range(expected)) - set(got))
            pytest.fail(
                f"{len(got)} of {expected} messages within {DEADLINE} s;"
                f" missing {len(missing)}: {missing[:5]}...{missing[-5:]}"
            )
        with contextlib.suppress(TimeoutError):  # socket.timeout: nothing yet
            conn.drain_events(timeout=min(remaining, 1.0))
    return got


@pytest.mark.timeout(60, func_only=True)
def test_quorum_queue_declared_on_one_node_is_consumed_from_another(
    cluster: Cluster, connect, quorum_queue
):
    node1, node2 = connect(1), connect(2)
    quorum_consumer(node1, quorum_queue).close()
    publish(node1, quorum_queue, [7])

    assert consume_numbers(node2, quorum_consumer(node2, quorum_queue), 1) == [7]
    (info,) = [
        row
        for row in json.loads(
            cluster.ctl(3, "list_queues", "name", "type", "members", "--formatter", "json")
        )
        if row["name"] == quorum_queue
    ]
    assert info["type"] == "quorum"
    assert sorted(info["members"]) == ["c1@localhost", "c2@localhost", "c3@localhost"]


@pytest.mark.timeout(90, func_only=True)
def test_2000_persistent_messages_all_arrive_once(cluster: Cluster, connect, quorum_queue):
    publisher_conn, consumer_conn = connect(3), connect(2)
    consumer = quorum_consumer(consumer_conn, quorum_queue, prefetch=200)
    publish(publisher_conn, quorum_queue, range(2000))

    got = consume_numbers(consumer_conn, consumer, 2000)

    assert sorted(got) == list(range(2000))
    assert got == list(range(2000))  # one publisher, one queue: in order


@pytest.mark.timeout(120, func_only=True)
def test_queue_keeps_working_when_a_follower_is_killed(cluster: Cluster, connect, quorum_queue):
    quorum_consumer(connect(1), quorum_queue).close()
    leader = cluster.leader(quorum_queue)
    victim, survivor = (n for n in (1, 2, 3) if n != leader)
    publisher_conn = connect(leader)
    publish(publisher_conn, quorum_queue, range(500))

    cluster.kill(victim)
    publish(publisher_conn, quorum_queue, range(500, 1000))

    consumer_conn = connect(survivor)
    got = consume_numbers(consumer_conn, quorum_consumer(consumer_conn, quorum_queue, 200), 1000)
    assert sorted(got) == list(range(1000))
    assert cluster.leader(quorum_queue) == leader


def consumer_holding_unacked(connect, node: int, queue: str, count: int):
    """A consumer on ``node`` holding ``count`` delivered, unacknowledged messages."""
    conn = connect(node)
    consumer = quorum_consumer(conn, queue, prefetch=count)
    publish(conn, queue, range(count))
    assert sorted(consume_numbers(conn, consumer, count, ack=False)) == list(range(count))
    return conn, consumer


def next_call_error(conn) -> tuple[BaseException, float]:
    """The exception the consumer's next call raises once its node is gone, and after how long."""
    started = time.monotonic()
    deadline = started + DEATH_NOTICED_WITHIN
    while time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=0.5)
        except TimeoutError:  # socket.timeout is an OSError too: not the answer
            continue
        except Exception as exc:
            return exc, time.monotonic() - started
    pytest.fail(
        f"the consumer's connection raised nothing {DEATH_NOTICED_WITHIN} s after its node died"
    )


@pytest.mark.timeout(90, func_only=True)
def test_consumer_whose_node_is_killed_gets_a_connection_error(
    cluster: Cluster, connect, quorum_queue
):
    conn, _consumer = consumer_holding_unacked(connect, 3, quorum_queue, 10)

    cluster.kill(3)
    error, after = next_call_error(conn)

    assert isinstance(error, conn.connection_errors), repr(error)
    assert after < DEATH_NOTICED_WITHIN


@pytest.mark.timeout(120, func_only=True)
def test_manual_failover_reconnecting_to_a_survivor_gets_every_unacked_message(
    cluster: Cluster, connect, quorum_queue
):
    conn, _consumer = consumer_holding_unacked(connect, 3, quorum_queue, 50)

    cluster.kill(3)
    error, _after = next_call_error(conn)
    assert isinstance(error, conn.connection_errors), repr(error)

    # What an application does today: a new connection to another node.
    survivor = connect(1)
    redelivered: list[bool] = []
    consumer = quorum_consumer(survivor, quorum_queue, prefetch=50)
    consumer.register_callback(
        lambda _data, message: redelivered.append(message.delivery_info["redelivered"])
    )
    got = consume_numbers(survivor, consumer, 50)
    assert sorted(got) == list(range(50))
    assert all(redelivered)
