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
from carrot_cluster import QUORUM, owned_cluster  # noqa: E402 -- after sys.path
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


def run(n: int, rounds: int) -> dict[str, dict[str, float]]:
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
                    if scenario == "consume_ack":
                        seconds = consume(port, queue, arguments, 2 * n)  # both publishes
                    else:
                        seconds = publish(port, queue, n, confirm=scenario == "publish_confirm")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="messages per publish (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, median kept (default 3)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        parser.error(f"-n and --rounds must be at least 1, not {args.n} and {args.rounds}")
    t0 = time.perf_counter()
    with owned_cluster() as cluster:
        ports = ", ".join(map(str, cluster.ports))
        log(f"cluster up on {ports} in {time.perf_counter() - t0:.1f} s")
        summary = run(args.n, args.rounds)
    print(f"\nmedian of {args.rounds} rounds, n={args.n}, msg/s (ratio to single):")
    print(f"{'scenario':16} " + " ".join(f"{name:>24}" for name in TARGETS))
    for scenario, per_target in summary.items():
        base = per_target["single"]
        cells = [f"{rate:8.0f} ({rate / base:4.2f}x)" for rate in per_target.values()]
        print(f"{scenario:16} " + " ".join(f"{cell:>24}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
