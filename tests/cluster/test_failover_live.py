"""Automatic failover on the 3-node cluster: a broker list, ``auto_recover``, nodes killed with -9.

Every client here is given the three nodes as one broker list
(``"amqp://...:5681//;amqp://...:5682//;amqp://...:5683//"``), so it starts
on node 1, and the test kills the node it is connected to. The figures each
test measures (failover gaps, duplicates) are printed (``pytest -s``) and
recorded as test properties (``--junitxml``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import amqp
import pytest
from carrot_cluster import PORTS, QUORUM, BackgroundKill, Cluster
from test_cluster_live import consume_numbers, publish, quorum_consumer

from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, Publisher

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
#: Retry quickly: the survivors answer at once, and a quorum queue whose
#: leader died nacks until the new leader is elected (about a second here).
FAST = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5, "max_retries": 60}
#: What a failover may take at most here (the figures measured are far below).
GAP_BOUND = 15.0


def node_of(conn: BrokerConnection) -> int:
    """The cluster node (1-3) the connection is on now."""
    return PORTS.index(int(conn.port)) + 1


@pytest.fixture
def broker_list(cluster: Cluster) -> Iterator[Callable[[], BrokerConnection]]:
    """``broker_list()``: an auto-recovering connection to the 3 nodes, closed after the test."""
    opened: list[BrokerConnection] = []

    def broker_list() -> BrokerConnection:
        conn = BrokerConnection(
            ";".join(cluster.urls), auto_recover=True, retry_policy=FAST, connect_timeout=5
        )
        opened.append(conn)
        return conn

    try:
        yield broker_list
    finally:
        for conn in opened:
            conn.close()


def report(record_property: Callable[[str, object], None], **figures: object) -> None:
    for name, value in figures.items():
        record_property(name, value)
    print(" ".join(f"{name}={value}" for name, value in figures.items()))


def held(node: int, queue: str) -> int:
    """How many messages ``queue`` holds (ready), asked of ``node``."""
    with amqp.Connection(f"127.0.0.1:{PORTS[node - 1]}", "guest", "guest", connect_timeout=5) as c:
        return int(c.channel().queue_declare(queue, passive=True).message_count)


# Publishing: about 2 s for 20,000 confirmed messages with a window of 256
# here, plus the failover; consuming them again about 1 s.
@pytest.mark.timeout(150, func_only=True)
def test_confirmed_publisher_loses_nothing_when_its_node_is_killed(
    cluster: Cluster, broker_list, connect, quorum_queue, record_property, caplog
):
    caplog.set_level("INFO")
    count, window = 20_000, 256
    kill_at = count // 3
    conn = broker_list()
    quorum_consumer(conn, quorum_queue).close()  # declared on node 1, which leads it
    leader = cluster.leader(quorum_queue)
    publisher = Publisher(
        connection=conn,
        exchange="",
        routing_key=quorum_queue,
        confirm=True,
        max_unconfirmed=window,
    )
    pad = "x" * 80  # ~100 B of JSON
    victim = node_of(conn)
    killer = BackgroundKill(cluster)
    recovered_at = None
    longest_stall, last = 0.0, time.monotonic()
    for n in range(count):
        if n == kill_at:
            killer.trigger(victim)
        elif n == 2 * kill_at:
            killer.join()  # so the node dies mid-stream, however fast this runs
        publisher.send({"n": n, "pad": pad})  # persistent by default
        now = time.monotonic()
        longest_stall, last = max(longest_stall, now - last), now
        if recovered_at is None and n >= kill_at and node_of(conn) != victim:
            recovered_at = now  # the first send that returned on a survivor
    publisher.wait_for_confirms(timeout=60)
    survivor = node_of(conn)
    publisher.close()

    assert victim == 1 and survivor != victim
    assert recovered_at is not None
    gap = recovered_at - killer.issued
    total = held(survivor, quorum_queue)
    consumer_conn = connect(survivor)
    got = consume_numbers(
        consumer_conn, quorum_consumer(consumer_conn, quorum_queue, prefetch=500), total
    )
    seen = Counter(got)
    lost = sorted(set(range(count)) - set(seen))
    duplicates = len(got) - len(seen)
    report(
        record_property,
        publish_failover_gap_s=round(gap, 3),
        kill_took_s=round(killer.took, 3),
        longest_send_stall_s=round(longest_stall, 3),
        duplicates=duplicates,
        killed_node_led_queue=leader == victim,
    )
    assert not lost, f"{len(lost)} confirmed messages lost: {lost[:10]}"
    assert set(seen) == set(range(count))
    # At-least-once: what the lost channel (and any nacking channel
    # replaced) left unconfirmed may be stored twice, nothing else.
    assert duplicates <= 4 * window
    assert gap < GAP_BOUND
    # The new leader's election nacks a few messages on the survivor; the
    # channel replaced closes without a warning for each confirm it still gets.
    flood = [r for r in caplog.records if "during closing channel" in r.getMessage()]
    assert not flood, f"{len(flood)} warnings: {flood[0].getMessage()}"


@pytest.mark.timeout(120, func_only=True)
def test_consumer_carries_on_against_a_survivor_when_its_node_is_killed(
    cluster: Cluster, broker_list, connect, quorum_queue, record_property
):
    total = 3000
    conn = broker_list()
    consumer = Consumer(connection=conn, queue=quorum_queue, durable=True, queue_arguments=QUORUM)
    consumer.qos(prefetch_count=50)
    publish(connect(3), quorum_queue, range(total))
    victim = node_of(conn)
    got: list[int] = []
    deliveries: list[tuple[float, int]] = []  # (when, node)
    killer = BackgroundKill(cluster)
    in_callback: list[BaseException] = []

    def on_message(data, message):
        got.append(data["n"])
        deliveries.append((time.monotonic(), node_of(conn)))
        if len(got) == total // 3:
            killer.trigger(victim)
        time.sleep(0.001)  # some work per message, so the kill lands mid-stream
        try:
            message.ack()  # on the lost connection: nothing (the broker redelivers)
        except Exception as exc:
            in_callback.append(exc)
            raise

    consumer.register_callback(on_message)
    # No exception may come out of here: recovery carries the loop on.
    for _ in consumer.iterconsume():
        if len(set(got)) == total:
            break
    killer.join()

    survivor = node_of(conn)
    after = [when for when, node in deliveries if node != victim]
    assert after, "every message came before the node died"
    gap = after[0] - killer.issued
    times = [when for when, _node in deliveries]
    longest = max(b - a for a, b in itertools.pairwise(times))
    duplicates = len(got) - len(set(got))
    report(
        record_property,
        consume_failover_gap_s=round(gap, 3),
        kill_took_s=round(killer.took, 3),
        longest_delivery_gap_s=round(longest, 3),
        redelivered=duplicates,
    )
    assert survivor != victim
    assert not in_callback, f"the application's callback got {in_callback!r}"
    assert set(got) == set(range(total))  # every message at least once
    assert 0 < gap < GAP_BOUND


@pytest.mark.timeout(120, func_only=True)
def test_ping_with_a_broker_list_names_the_node_that_answered(cluster_session: Cluster):
    # Node 1 down, node 2 up; saves reviving what the test before killed.
    cluster = cluster_session
    if 2 in cluster.down:
        cluster.revive(2)
    if 1 not in cluster.down:
        cluster.kill(1)
    result = subprocess.run(
        [sys.executable, "-m", "carrot", "ping", ";".join(cluster.urls), "--count", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=45,
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"connected to amqp://guest:***@127.0.0.1:{PORTS[1]}//: RabbitMQ ")
    assert "guest:guest" not in result.stdout + result.stderr
