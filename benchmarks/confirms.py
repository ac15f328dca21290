"""Confirmed publishing: carrot's confirm window against kombu, pika and py-amqp.

Run from the repository root against a RabbitMQ on 127.0.0.1::

    python benchmarks/confirms.py                # 10k messages, 3 rounds
    python benchmarks/confirms.py -n 20000 --rounds 5 --window 256

Every contender publishes the same ~100 B persistent JSON message into one
durable queue; the clock stops when *every* message is confirmed by the
broker (for the unconfirmed row: when the broker holds all of them, counted
by a passive ``queue.declare``). The contenders run interleaved (A B C ...,
then B C ... A, ...) ``--rounds`` times; the table shows medians and the
ratios against carrot unconfirmed and against kombu, from the same run.

Window-1 contenders (kombu ``confirm_publish``, pika ``confirm_delivery``,
py-amqp ``confirm_publish``, carrot ``confirm=True``) wait for each
message's confirm, so they are bounded by the broker's confirm latency for
persistent messages (its disk-sync batching): they run ``--n1`` messages.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (str(HERE), str(HERE.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from clients import PAYLOAD, PAYLOAD_BYTES, Broker, Target  # noqa: E402 -- after sys.path


def carrot_publisher(target: Target, **options: Any) -> tuple[Any, Any]:
    from carrot.connection import BrokerConnection
    from carrot.messaging import Publisher

    conn = BrokerConnection(
        hostname=target.host, port=target.port, userid="guest", password="guest"
    )
    publisher = Publisher(conn, exchange=target.exchange, routing_key=target.routing_key, **options)
    return conn, publisher


def run_carrot(target: Target, broker: Broker, n: int, **options: Any) -> None:
    conn, publisher = carrot_publisher(target, **options)
    send = publisher.send
    for _ in range(n):
        send(PAYLOAD)
    if options.get("confirm"):
        publisher.wait_for_confirms()
    else:
        broker.wait_count(target.queue, n)
    publisher.close()
    conn.close()


def run_kombu(target: Target, broker: Broker, n: int) -> None:
    import kombu

    conn = kombu.Connection(
        f"amqp://guest:guest@{target.host}:{target.port}//",
        transport_options={"confirm_publish": True},
    )
    exchange = kombu.Exchange(target.exchange, type="direct", durable=True)
    producer = kombu.Producer(conn.channel(), exchange=exchange, serializer="json")
    for _ in range(n):
        producer.publish(PAYLOAD, routing_key=target.routing_key, delivery_mode=2)
    conn.release()


def run_pika(target: Target, broker: Broker, n: int) -> None:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters(host=target.host, port=target.port))
    channel = conn.channel()
    channel.confirm_delivery()
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8", delivery_mode=2
    )
    for _ in range(n):
        channel.basic_publish(
            target.exchange, target.routing_key, json.dumps(PAYLOAD).encode(), props
        )
    conn.close()


def run_pyamqp(target: Target, broker: Broker, n: int) -> None:
    import amqp

    conn = amqp.Connection(f"{target.host}:{target.port}", "guest", "guest", confirm_publish=True)
    conn.connect()
    channel = conn.channel()
    for _ in range(n):
        message = amqp.Message(
            json.dumps(PAYLOAD).encode(),
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
        )
        channel.basic_publish(message, exchange=target.exchange, routing_key=target.routing_key)
    conn.close()


def contenders(window: int) -> dict[str, tuple[Any, bool]]:
    """Row name -> (function, whether it waits for each message's confirm)."""
    return {
        "carrot unconfirmed": (lambda t, b, n: run_carrot(t, b, n), False),
        f"carrot confirm, window {window}": (
            lambda t, b, n: run_carrot(t, b, n, confirm=True, max_unconfirmed=window),
            False,
        ),
        "carrot confirm, window 1": (lambda t, b, n: run_carrot(t, b, n, confirm=True), True),
        "kombu confirm_publish": (run_kombu, True),
        "pika confirm_delivery": (run_pika, True),
        "py-amqp confirm_publish": (run_pyamqp, True),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="messages per pipelined run")
    parser.add_argument("--n1", type=int, default=1_000, help="messages per window-1 run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--window", type=int, default=256, help="carrot's max_unconfirmed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--json", help="also write the medians to this JSON file")
    args = parser.parse_args(argv)
    if min(args.n, args.n1, args.rounds, args.window) < 1:
        parser.error("-n, --n1, --rounds and --window must be 1 or more")

    tag = uuid.uuid4().hex[:10]
    target = Target(args.host, args.port, f"carrot.bench.x.{tag}", f"carrot.bench.q.{tag}", "bench")
    broker = Broker(args.host, args.port)
    broker.setup(target)
    rows = contenders(args.window)
    names = list(rows)
    rates: dict[str, list[float]] = {name: [] for name in names}
    assert len(PAYLOAD_BYTES) > 50
    try:
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                func, per_message = rows[name]
                n = args.n1 if per_message else args.n
                broker.purge(target.queue)
                started = time.perf_counter()
                func(target, broker, n)
                elapsed = time.perf_counter() - started
                held = broker.count(target.queue)
                if held != n:
                    raise SystemExit(f"{name}: the broker holds {held} of {n} messages")
                rates[name].append(n / elapsed)
                print(f"round {round_ + 1}: {name:34} {n / elapsed:9.0f} msg/s", file=sys.stderr)
    finally:
        broker.delete(target)
        broker.close()

    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["carrot unconfirmed"]
    kombu = medians["kombu confirm_publish"]
    print(f"\n{'contender':34} {'msg/s':>9} {'vs unconfirmed':>15} {'vs kombu':>9}")
    for name in names:
        rate = medians[name]
        print(f"{name:34} {rate:9.0f} {rate / base:14.2f}x {rate / kombu:8.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": medians, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
