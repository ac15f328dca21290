"""carrot on the 3-node test cluster's quorum queue vs the single broker's classic queue.

Run from the repository root, as root (the cluster's nodes run as the
rabbitmq user), with the machine's RabbitMQ on 127.0.0.1:5672::

    python benchmarks/cluster.py                 # 3,000 messages, 3 rounds
    python benchmarks/cluster.py -n 5000 --rounds 5

It starts the cluster with ``tests/cluster/cluster.sh`` and always stops it.
Targets, interleaved each round (median reported):

- ``single``: a classic durable queue on the machine's broker (5672);
- ``quorum-leader``: a quorum queue declared on node 1 (its leader), the
  client on node 1 (5681);
- ``quorum-follower``: the same queue, the client on node 2 (5682), so every
  message crosses the cluster's distribution link.

Scenarios, ~100 B persistent JSON (benchmarks/clients.py's ``PAYLOAD``):

- ``publish``: no confirms; the clock stops once the queue holds all N
  (a passive ``queue.declare`` counts them);
- ``publish_confirm``: ``confirm=True``, ``max_unconfirmed=200``; the clock
  stops when every message is confirmed;
- ``consume_ack``: prefetch 200, each message acked; the clock stops after
  the N-th message and the channel's close.

``--failover`` measures instead the failover gaps of a client given the
three nodes as a broker list with ``auto_recover`` (kill -9 of the node it
is connected to, from another thread, after a third of N messages; each
kill is followed by a revive):

- ``publish``: ``confirm=True``, window 256; from issuing the kill to the
  first send that returned on a survivor;
- ``consume``: prefetch 50, 1 ms of work per message; from issuing the kill
  to the first delivery from a survivor.

kombu (``--failover --kombu``) is given the same broker list
(``kombu.Connection("amqp://...;amqp://...")``): its producer publishes
with ``confirm_publish`` (a window of 1: py-amqp waits for each confirm) and
``retry=True`` with the same fast retry policy, a nack (leader election)
published again by the benchmark; its consumer is a ``ConsumerMixin`` (the
way kombu recovers a consumer), reconnecting under kombu's defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT), str(ROOT / "tests" / "cluster")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import amqp  # noqa: E402 -- after sys.path
from carrot_cluster import (  # noqa: E402 -- after sys.path
    PORTS,
    QUORUM,
    BackgroundKill,
    Cluster,
    owned_cluster,
)
from clients import PAYLOAD  # noqa: E402 -- after sys.path

from carrot.connection import BrokerConnection  # noqa: E402 -- after sys.path
from carrot.messaging import Consumer, Publisher  # noqa: E402 -- after sys.path

#: Target name -> (port the client uses, port the queue is declared on, queue arguments).
TARGETS = {
    "single": (5672, 5672, None),
    "quorum-leader": (5681, 5681, QUORUM),
    "quorum-follower": (5682, 5681, QUORUM),
}
SCENARIOS = ("publish", "publish_confirm", "consume_ack")
PREFETCH = 200
WINDOW = 200
DEADLINE = 120.0


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def connection(port: int) -> BrokerConnection:
    return BrokerConnection(
        hostname="127.0.0.1", port=port, userid="guest", password="guest", connect_timeout=5
    )


def count(port: int, queue: str) -> int:
    with amqp.Connection(f"127.0.0.1:{port}", "guest", "guest", connect_timeout=5) as conn:
        return conn.channel().queue_declare(queue, passive=True).message_count


def wait_count(port: int, queue: str, n: int) -> int:
    deadline = time.monotonic() + DEADLINE
    held = count(port, queue)
    while held < n and time.monotonic() < deadline:
        time.sleep(0.005)
        held = count(port, queue)
    return held


def publish(port: int, queue: str, n: int, confirm: bool) -> float:
    """Seconds to publish ``n`` messages (see the module docstring for the clock)."""
    with connection(port) as conn:
        publisher = Publisher(
            connection=conn,
            exchange="",
            routing_key=queue,
            confirm=confirm or None,
            max_unconfirmed=WINDOW if confirm else None,
        )
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                publisher.send(PAYLOAD)
            if confirm:
                publisher.wait_for_confirms(timeout=DEADLINE)
            else:
                held = wait_count(port, queue, n)
                if held != n:
                    raise RuntimeError(f"the queue holds {held} of {n} messages")
            return time.perf_counter() - t0
        finally:
            publisher.close()


def consume(port: int, queue: str, arguments: dict[str, Any] | None, n: int) -> float:
    """Seconds to consume and ack ``n`` messages."""
    with connection(port) as conn:
        consumer = Consumer(connection=conn, queue=queue, durable=True, queue_arguments=arguments)
        consumer.qos(prefetch_count=PREFETCH)
        got = 0

        def on_message(_data: Any, message: Any) -> None:
            nonlocal got
            got += 1
            message.ack()

        consumer.register_callback(on_message)
        t0 = time.perf_counter()
        consumer.consume()
        deadline = time.monotonic() + DEADLINE
        while got < n and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1.0)
        consumer.close()
        seconds = time.perf_counter() - t0
    if got < n:
        raise RuntimeError(f"consumed {got} of {n} within {DEADLINE} s")
    return seconds


def kombu_publish(port: int, queue: str, n: int, confirm: bool) -> float:
    """kombu's ``Producer.publish`` (``confirm_publish`` for the confirmed scenario)."""
    import kombu

    options = {"confirm_publish": True} if confirm else {}
    with kombu.Connection(
        f"amqp://guest:guest@127.0.0.1:{port}//", transport_options=options
    ) as conn:
        producer = kombu.Producer(conn.channel(), serializer="json")
        t0 = time.perf_counter()
        for _ in range(n):
            producer.publish(PAYLOAD, routing_key=queue, delivery_mode=2)
        if not confirm:
            held = wait_count(port, queue, n)
            if held != n:
                raise RuntimeError(f"the queue holds {held} of {n} messages")
        return time.perf_counter() - t0


def kombu_consume(port: int, queue: str, arguments: dict[str, Any] | None, n: int) -> float:
    """kombu's ``Consumer`` with a callback that acks, prefetch as carrot's."""
    import kombu

    with kombu.Connection(f"amqp://guest:guest@127.0.0.1:{port}//") as conn:
        channel = conn.channel()
        got = 0

        def on_message(_body: Any, message: Any) -> None:
            nonlocal got
            got += 1
            message.ack()

        kqueue = kombu.Queue(queue, durable=True, queue_arguments=arguments, no_declare=True)
        consumer = kombu.Consumer(channel, queues=[kqueue], callbacks=[on_message])
        consumer.qos(prefetch_count=PREFETCH)
        t0 = time.perf_counter()
        deadline = time.monotonic() + DEADLINE
        with consumer:
            while got < n and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=1.0)
        seconds = time.perf_counter() - t0
    if got < n:
        raise RuntimeError(f"kombu consumed {got} of {n} within {DEADLINE} s")
    return seconds


def run(n: int, rounds: int, client: str = "carrot") -> dict[str, dict[str, float]]:
    queues = {name: f"carrot.bench.cluster.{uuid.uuid4().hex[:10]}" for name in TARGETS}
    for name, (_port, declare_port, arguments) in TARGETS.items():
        with connection(declare_port) as conn:
            Consumer(
                connection=conn, queue=queues[name], durable=True, queue_arguments=arguments
            ).close()
    rates: dict[str, dict[str, list[float]]] = {s: {t: [] for t in TARGETS} for s in SCENARIOS}
    names = list(TARGETS)
    try:
        for rnd in range(rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                port, declare_port, arguments = TARGETS[name]
                queue = queues[name]
                for scenario in SCENARIOS:
                    do_publish, do_consume = (
                        (kombu_publish, kombu_consume) if client == "kombu" else (publish, consume)
                    )
                    if scenario == "consume_ack":
                        seconds = do_consume(port, queue, arguments, 2 * n)  # both publishes
                    else:
                        seconds = do_publish(port, queue, n, confirm=scenario == "publish_confirm")
                    rate = (2 * n if scenario == "consume_ack" else n) / seconds
                    rates[scenario][name].append(rate)
                    log(f"round {rnd + 1} {scenario:16} {name:16} {rate:8.0f} msg/s")
                if count(declare_port, queue):
                    raise RuntimeError(f"{queue} is not empty after consuming")
    finally:
        for name, (_port, declare_port, _arguments) in TARGETS.items():
            with amqp.Connection(
                f"127.0.0.1:{declare_port}", "guest", "guest", connect_timeout=5
            ) as conn:
                conn.channel().queue_delete(queues[name])
    return {
        scenario: {name: statistics.median(r) for name, r in per_target.items()}
        for scenario, per_target in rates.items()
    }


FAST = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5, "max_retries": 60}


def node_of(conn: BrokerConnection) -> int:
    return PORTS.index(int(conn.port)) + 1


def failover_connection(cluster: Cluster) -> BrokerConnection:
    return BrokerConnection(
        ";".join(cluster.urls), auto_recover=True, retry_policy=FAST, connect_timeout=5
    )


def publish_gap(cluster: Cluster, queue: str, n: int) -> float:
    """Seconds from killing the publisher's node to its first send on a survivor."""
    with failover_connection(cluster) as conn:
        Consumer(connection=conn, queue=queue, durable=True, queue_arguments=QUORUM).close()
        publisher = Publisher(
            connection=conn, exchange="", routing_key=queue, confirm=True, max_unconfirmed=256
        )
        victim, killer, recovered = node_of(conn), BackgroundKill(cluster), 0.0
        for i in range(n):
            if i == n // 3:
                killer.trigger(victim)
            elif i == 2 * (n // 3):
                killer.join()
            publisher.send(PAYLOAD)
            if not recovered and i >= n // 3 and node_of(conn) != victim:
                recovered = time.monotonic()
        publisher.wait_for_confirms(timeout=DEADLINE)
        publisher.close()
    if not recovered:
        raise RuntimeError("the publisher never sent on a survivor")
    return recovered - killer.issued


def fill_quorum_queue(queue: str, n: int) -> None:
    """Declare ``queue`` a quorum queue (through node 2) holding ``n`` confirmed messages."""
    with connection(PORTS[2]) as conn:
        Consumer(connection=conn, queue=queue, durable=True, queue_arguments=QUORUM).close()
        publisher = Publisher(
            connection=conn, exchange="", routing_key=queue, confirm=True, max_unconfirmed=256
        )
        for _ in range(n):
            publisher.send(PAYLOAD)
        publisher.close()


def consume_gap(cluster: Cluster, queue: str, n: int) -> float:
    """Seconds from killing the consumer's node to its first delivery from a survivor."""
    fill_quorum_queue(queue, n)
    with failover_connection(cluster) as conn:
        consumer = Consumer(connection=conn, queue=queue, durable=True, queue_arguments=QUORUM)
        consumer.qos(prefetch_count=50)
        victim, killer = node_of(conn), BackgroundKill(cluster)
        got, first_after = 0, 0.0

        def on_message(_data: Any, message: Any) -> None:
            nonlocal got, first_after
            got += 1
            if got == n // 3:
                killer.trigger(victim)
            if not first_after and killer.issued and node_of(conn) != victim:
                first_after = time.monotonic()
            time.sleep(0.001)
            message.ack()

        consumer.register_callback(on_message)
        for _ in consumer.iterconsume():
            if first_after and got >= n:
                break
        killer.join()
    return first_after - killer.issued


def kombu_port(amqp_connection: Any) -> int:
    """The port a py-amqp connection (under kombu) is connected to."""
    return int(amqp_connection.host.rsplit(":", 1)[1])


def kombu_publish_gap(cluster: Cluster, queue: str, n: int) -> float:
    """As :func:`publish_gap`, for kombu's producer with ``retry=True``."""
    import kombu
    from amqp.exceptions import MessageNacked

    with kombu.Connection(
        ";".join(cluster.urls), transport_options={"confirm_publish": True}
    ) as conn:
        declared = kombu.Queue(queue, durable=True, queue_arguments=QUORUM)
        producer = conn.Producer()
        victim, killer, recovered = None, BackgroundKill(cluster), 0.0
        for i in range(n):
            if i == n // 3:
                victim = PORTS.index(kombu_port(conn.connection)) + 1
                killer.trigger(victim)
            elif i == 2 * (n // 3):
                killer.join()
            while True:
                try:
                    producer.publish(
                        PAYLOAD,
                        routing_key=queue,
                        serializer="json",
                        delivery_mode=2,
                        declare=[declared],
                        retry=True,
                        retry_policy=FAST,
                    )
                    break
                except MessageNacked:
                    time.sleep(FAST["interval_start"])  # a leaderless queue: again
            if not recovered and victim and PORTS.index(kombu_port(conn.connection)) + 1 != victim:
                recovered = time.monotonic()
    if not recovered:
        raise RuntimeError("kombu never sent on a survivor")
    return recovered - killer.issued


def kombu_consume_gap(cluster: Cluster, queue: str, n: int) -> float:
    """As :func:`consume_gap`, for a kombu ``ConsumerMixin``."""
    import kombu
    from kombu.mixins import ConsumerMixin

    fill_quorum_queue(queue, n)
    killer = BackgroundKill(cluster)

    class Worker(ConsumerMixin):
        def __init__(self, conn: Any) -> None:
            self.connection = conn
            self.got = 0
            self.victim = 0
            self.first_after = 0.0

        def get_consumers(self, consumer_cls: Any, channel: Any) -> list[Any]:
            declared = kombu.Queue(queue, durable=True, queue_arguments=QUORUM)
            return [consumer_cls(queues=[declared], callbacks=[self.on_message], prefetch_count=50)]

        def on_message(self, _body: Any, message: Any) -> None:
            node = PORTS.index(kombu_port(message.channel.connection)) + 1
            self.got += 1
            if self.got == n // 3:
                self.victim = node
                killer.trigger(node)
            if not self.first_after and self.victim and node != self.victim:
                self.first_after = time.monotonic()
            time.sleep(0.001)
            message.ack()
            if self.first_after and self.got >= n:
                self.should_stop = True

    with kombu.Connection(";".join(cluster.urls)) as conn:
        worker = Worker(conn)
        worker.run()
    killer.join()
    return worker.first_after - killer.issued


def failover(n: int, rounds: int, with_kombu: bool) -> None:
    measures = [("carrot", "publish", publish_gap), ("carrot", "consume", consume_gap)]
    if with_kombu:
        measures += [
            ("kombu", "publish", kombu_publish_gap),
            ("kombu", "consume", kombu_consume_gap),
        ]
    gaps: dict[tuple[str, str], list[float]] = {(c, s): [] for c, s, _m in measures}
    with owned_cluster() as cluster:
        for rnd in range(rounds):
            for client, scenario, measure in measures:
                queue = f"carrot.bench.failover.{uuid.uuid4().hex[:10]}"
                gaps[client, scenario].append(measure(cluster, queue, n))
                gap = gaps[client, scenario][-1]
                log(f"round {rnd + 1} {client:6} {scenario:8} gap {gap:.3f} s")
                cluster.revive_all()
    print(f"\nfailover gaps, n={n}, {rounds} round(s), seconds (min / median / max):")
    for (client, scenario), values in gaps.items():
        low, mid, high = min(values), statistics.median(values), max(values)
        print(f"{client:6} {scenario:8} {low:6.3f} {mid:6.3f} {high:6.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="messages per publish (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, median kept (default 3)")
    parser.add_argument(
        "--failover", action="store_true", help="measure the failover gaps instead of the rates"
    )
    parser.add_argument(
        "--kombu",
        action="store_true",
        help="measure kombu too: its gaps (with --failover) or its rates",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        parser.error(f"-n and --rounds must be at least 1, not {args.n} and {args.rounds}")
    if args.failover:
        failover(args.n, args.rounds, args.kombu)
        return 0
    t0 = time.perf_counter()
    with owned_cluster() as cluster:
        ports = ", ".join(map(str, cluster.ports))
        log(f"cluster up on {ports} in {time.perf_counter() - t0:.1f} s")
        summaries = {"carrot": run(args.n, args.rounds)}
        if args.kombu:
            summaries["kombu"] = run(args.n, args.rounds, client="kombu")
    for client, summary in summaries.items():
        print(f"\n{client}: median of {args.rounds} rounds, n={args.n}, msg/s (ratio to single):")
        print(f"{'scenario':16} " + " ".join(f"{name:>24}" for name in TARGETS))
        for scenario, per_target in summary.items():
            base = per_target["single"]
            cells = [f"{rate:8.0f} ({rate / base:4.2f}x)" for rate in per_target.values()]
            print(f"{scenario:16} " + " ".join(f"{cell:>24}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
