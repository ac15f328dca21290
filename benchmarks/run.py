"""Benchmark carrot's default backend against py-amqp, kombu and pika.

Run from the repository root against a RabbitMQ on 127.0.0.1::

    python benchmarks/run.py                 # 20k messages, 3 rounds, RSS to 100k
    python benchmarks/run.py --full          # RSS after 1M consumed messages
    python benchmarks/run.py -n 50000 --rounds 5 --json out.json --chart out.png
    python benchmarks/run.py --rounds 5 --full --save   # update benchmarks/results.json

The JSON results go to ``--json PATH`` (alias ``--output``), or with
``--save`` to the tracked ``benchmarks/results.json`` that the docs quote;
otherwise to a new temporary file, whose path is printed.

Every scenario runs the clients interleaved (A B C D, then B C D A, ...)
against the same broker, ``--rounds`` times, and reports the median.
A publish clock stops only when the broker holds all N messages (a passive
``queue.declare`` counts them), not when the socket took them. A consume
clock stops after the N-th message was handled and the channel closed (so
acknowledgements still buffered in the client have reached the broker).
Client CPU is :func:`time.process_time` (user + system) around the loop.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The tracked results the docs quote: written only with ``--save``.
SAVED_RESULTS = HERE / "results.json"
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from clients import CLIENTS, PAYLOAD, Broker, Carrot, Target  # noqa: E402 -- after sys.path

#: Scenario name -> what it measures, in table order.
SCENARIOS = {
    "publish": "publish, persistent, ~100 B JSON",
    "publish_transient": "publish, transient (delivery_mode 1)",
    "consume_ack": "consume + per-message ack()",
    "consume_no_ack": "consume, no_ack",
}


def rss_kib() -> int:
    """This process's resident set size in KiB (Linux ``/proc``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def new_target(host: str, port: int) -> Target:
    tag = uuid.uuid4().hex[:10]
    return Target(host, port, f"carrot.bench.x.{tag}", f"carrot.bench.q.{tag}", "bench")


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- throughput -------------------------------------------------------------------


def time_publish(
    cls: type, target: Target, broker: Broker, n: int, delivery_mode: int = 2
) -> dict[str, float]:
    broker.purge(target.queue)
    client = cls(target)
    try:
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        client.publish(n, delivery_mode)
        c1 = time.process_time()
        held = broker.wait_count(target.queue, n)
        t1 = time.perf_counter()
    finally:
        client.close()
    if held != n:
        raise RuntimeError(f"{cls.name}: broker holds {held} of {n} messages")
    return {"rate": n / (t1 - t0), "cpu_us": (c1 - c0) / n * 1e6, "seconds": t1 - t0}


def time_consume(cls: type, target: Target, broker: Broker, n: int, ack: bool) -> dict[str, float]:
    broker.purge(target.queue)
    broker.fill(target, n)
    client = cls(target)
    try:
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        got = client.consume(n, ack)
        c1, t1 = time.process_time(), time.perf_counter()
    finally:
        client.close()
    left = broker.count(target.queue)
    if got < n or left:
        raise RuntimeError(f"{cls.name}: consumed {got} of {n}, {left} left in the queue")
    return {"rate": n / (t1 - t0), "cpu_us": (c1 - c0) / n * 1e6, "seconds": t1 - t0}


def run_throughput(args: argparse.Namespace, broker: Broker, target: Target) -> dict[str, Any]:
    names = [name for name in CLIENTS if name in args.clients]
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        scenario: {name: [] for name in names} for scenario in SCENARIOS
    }
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for scenario in SCENARIOS:
            n = args.n
            for name in order:
                cls = CLIENTS[name]
                if scenario.startswith("publish"):
                    mode = 1 if scenario == "publish_transient" else 2
                    res = time_publish(cls, target, broker, n, mode)
                else:
                    res = time_consume(cls, target, broker, n, ack=scenario == "consume_ack")
                results[scenario][name].append(res)
                log(
                    f"round {rnd + 1} {scenario:15} {name:8} {res['rate']:9.0f} msg/s "
                    f"{res['cpu_us']:6.1f} us/msg CPU"
                )
    summary: dict[str, Any] = {}
    for scenario, per_client in results.items():
        summary[scenario] = {
            name: {
                "rate": statistics.median(r["rate"] for r in runs),
                "cpu_us": statistics.median(r["cpu_us"] for r in runs),
                "runs": runs,
            }
            for name, runs in per_client.items()
        }
    return summary


# -- latency ----------------------------------------------------------------------


def latency_carrot(target: Target, count: int) -> list[float]:
    from carrot.messaging import Publisher

    pub_side = Carrot(target)
    sub_side = Carrot(target)
    consumer = sub_side.make_consumer()
    consumer.register_callback(lambda data, message: message.ack())
    it = consumer.iterconsume()
    publisher = Publisher(pub_side.conn, exchange=target.exchange, routing_key=target.routing_key)
    samples = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            publisher.send(PAYLOAD)
            next(it)
            samples.append(time.perf_counter() - t0)
    finally:
        publisher.close()
        consumer.close()
        pub_side.close()
        sub_side.close()
    return samples


def latency_raw(target: Target, count: int) -> list[float]:
    import amqp

    pub = amqp.Connection(f"{target.host}:{target.port}", "guest", "guest")
    sub = amqp.Connection(f"{target.host}:{target.port}", "guest", "guest")
    pub.connect()
    sub.connect()
    pch, sch = pub.channel(), sub.channel()
    got = []
    sch.basic_consume(
        target.queue, callback=lambda m: (got.append(1), sch.basic_ack(m.delivery_tag))
    )
    samples = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            msg = amqp.Message(
                json.dumps(PAYLOAD).encode(),
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
            )
            pch.basic_publish(msg, exchange=target.exchange, routing_key=target.routing_key)
            while not got:
                sub.drain_events(timeout=10)
            got.clear()
            samples.append(time.perf_counter() - t0)
    finally:
        pub.close()
        sub.close()
    return samples


def latency_kombu(target: Target, count: int) -> list[float]:
    import kombu

    url = f"amqp://guest:guest@{target.host}:{target.port}//"
    exchange = kombu.Exchange(target.exchange, type="direct", durable=True)
    queue = kombu.Queue(target.queue, exchange, routing_key=target.routing_key, durable=True)
    got = []
    samples = []
    with kombu.Connection(url) as pub, kombu.Connection(url) as sub:
        producer = kombu.Producer(pub.channel(), exchange=exchange, serializer="json")
        with kombu.Consumer(
            sub.channel(), [queue], callbacks=[lambda b, m: (got.append(1), m.ack())]
        ):
            for _ in range(count):
                t0 = time.perf_counter()
                producer.publish(PAYLOAD, routing_key=target.routing_key, delivery_mode=2)
                while not got:
                    sub.drain_events(timeout=10)
                got.clear()
                samples.append(time.perf_counter() - t0)
    return samples


LATENCY = {"carrot": latency_carrot, "py-amqp": latency_raw, "kombu": latency_kombu}


def run_latency(args: argparse.Namespace, broker: Broker, target: Target) -> dict[str, Any]:
    out = {}
    for name, fn in LATENCY.items():
        if name not in args.clients:
            continue
        broker.purge(target.queue)
        samples = sorted(fn(target, args.latency_n))
        out[name] = {
            "p50_us": samples[len(samples) // 2] * 1e6,
            "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6,
        }
        log(f"latency {name:8} p50 {out[name]['p50_us']:.0f} us  p99 {out[name]['p99_us']:.0f} us")
    return out


# -- memory -----------------------------------------------------------------------


def rss_child(
    queue_name: str, exchange: str, total: int, checkpoint: int, host: str, port: int
) -> None:
    """Consume ``total`` messages with carrot, printing RSS after ``checkpoint`` and at the end."""
    target = Target(host, port, exchange, queue_name, "bench")
    client = Carrot(target)
    consumer = client.make_consumer()
    consumer.qos(prefetch_count=1000)
    seen = [0]
    marks: dict[str, int] = {}

    def on_message(data: Any, message: Any) -> None:
        seen[0] += 1
        message.ack()
        if seen[0] == checkpoint:
            gc.collect()
            marks["rss_kib_checkpoint"] = rss_kib()

    consumer.register_callback(on_message)
    for _ in consumer.iterconsume():
        if seen[0] >= total:
            break
    gc.collect()
    marks["rss_kib_final"] = rss_kib()
    marks["consumed"] = seen[0]
    consumer.close()
    client.close()
    print(json.dumps(marks), flush=True)


def run_rss(args: argparse.Namespace, broker: Broker, target: Target) -> dict[str, Any]:
    from carrot.messaging import Publisher

    total = args.rss_n
    checkpoint = 10_000
    broker.purge(target.queue)
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--rss-child",
            target.queue,
            target.exchange,
            str(total),
            str(checkpoint),
            "--host",
            args.host,
            "--port",
            str(args.port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    feeder = Carrot(target)
    publisher = Publisher(feeder.conn, exchange=target.exchange, routing_key=target.routing_key)
    sent = 0
    deadline = time.monotonic() + max(600, total / 500)
    try:
        while sent < total and time.monotonic() < deadline:
            if broker.count(target.queue) < 20_000:
                batch = min(10_000, total - sent)
                for _ in range(batch):
                    publisher.send(PAYLOAD, delivery_mode="transient")
                sent += batch
            else:
                time.sleep(0.01)
            if child.poll() is not None:
                break
        out, _ = child.communicate(timeout=max(60, total / 2000))
    finally:
        publisher.close()
        feeder.close()
        if child.poll() is None:
            child.kill()
    marks = json.loads(out.strip().splitlines()[-1])
    marks["checkpoint"] = checkpoint
    marks["total"] = total
    marks["growth_pct"] = 100.0 * (marks["rss_kib_final"] / marks["rss_kib_checkpoint"] - 1)
    log(
        f"RSS after {checkpoint} consumed: {marks['rss_kib_checkpoint']} KiB, after {total}: "
        f"{marks['rss_kib_final']} KiB ({marks['growth_pct']:+.1f}%)"
    )
    return marks


def run_memory_backend(args: argparse.Namespace) -> dict[str, Any] | None:
    """carrot's in-process memory backend: publish N then consume N with acks."""
    try:
        from carrot.backends import get_backend_cls

        get_backend_cls("memory")
    except Exception as exc:
        log(f"memory backend not available: {exc!r}")
        return None
    from carrot.connection import BrokerConnection
    from carrot.messaging import Consumer, Publisher

    rates = {"publish": [], "consume_ack": []}
    for _ in range(args.rounds):
        conn = BrokerConnection(hostname="localhost", userid="", password="", backend_cls="memory")
        q = f"bench.mem.{uuid.uuid4().hex[:8]}"
        consumer = Consumer(conn, queue=q, exchange=q, routing_key=q)
        publisher = Publisher(conn, exchange=q, routing_key=q)
        n = args.n
        t0 = time.perf_counter()
        for _ in range(n):
            publisher.send(PAYLOAD)
        t1 = time.perf_counter()
        got = 0
        for message in consumer.iterqueue(limit=n):
            message.ack()
            got += 1
        t2 = time.perf_counter()
        conn.close()
        if got != n:
            raise RuntimeError(f"memory backend: consumed {got} of {n}")
        rates["publish"].append(n / (t1 - t0))
        rates["consume_ack"].append(n / (t2 - t1))
    out = {key: statistics.median(vals) for key, vals in rates.items()}
    log(f"memory backend: publish {out['publish']:.0f}, fetch+ack {out['consume_ack']:.0f} msg/s")
    return out


# -- report -----------------------------------------------------------------------


def format_table(results: dict[str, Any]) -> str:
    tp = results["throughput"]
    lines = []
    header = (
        f"{'scenario':32} {'client':8} {'msg/s':>9} {'CPU us/msg':>10} "
        f"{'vs py-amqp':>10} {'vs kombu':>9}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for scenario, label in SCENARIOS.items():
        per = tp[scenario]
        raw = per.get("py-amqp", {}).get("rate")
        kombu = per.get("kombu", {}).get("rate")
        for name, res in per.items():
            vs_raw = f"{res['rate'] / raw:.2f}x" if raw else "-"
            vs_kombu = f"{res['rate'] / kombu:.2f}x" if kombu else "-"
            lines.append(
                f"{label:32} {name:8} {res['rate']:9.0f} {res['cpu_us']:10.1f} "
                f"{vs_raw:>10} {vs_kombu:>9}"
            )
            label = ""
    if results.get("latency"):
        lines.append("")
        lines.append(
            f"{'round trip (publish -> delivered)':32} {'client':8} {'p50 us':>9} {'p99 us':>10}"
        )
        for name, lat in results["latency"].items():
            lines.append(f"{'':32} {name:8} {lat['p50_us']:9.0f} {lat['p99_us']:10.0f}")
    rss = results.get("rss")
    if rss:
        lines.append("")
        lines.append(
            f"carrot consumer RSS: {rss['rss_kib_checkpoint'] / 1024:.1f} MiB after "
            f"{rss['checkpoint']:,} messages, {rss['rss_kib_final'] / 1024:.1f} MiB after "
            f"{rss['total']:,} ({rss['growth_pct']:+.1f}%)"
        )
    mem = results.get("memory_backend")
    if mem:
        lines.append(
            f"memory backend (in process): publish {mem['publish']:.0f} msg/s, "
            f"fetch + ack {mem['consume_ack']:.0f} msg/s"
        )
    return "\n".join(lines)


def results_path(args: argparse.Namespace) -> Path:
    """Where the JSON results go: ``--json``, the tracked file with ``--save``, or a temp file.

    A run never overwrites the tracked results unless asked to.
    """
    if args.save:
        return SAVED_RESULTS
    if args.json:
        return Path(args.json)
    fd, name = tempfile.mkstemp(prefix="carrot-bench-", suffix=".json")
    os.close(fd)
    return Path(name)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages per run (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help="comma-separated subset of: " + ", ".join(CLIENTS),
    )
    parser.add_argument("--latency-n", type=int, default=2000, help="round trips sampled")
    parser.add_argument("--rss-n", type=int, default=100_000, help="messages for the RSS check")
    parser.add_argument("--full", action="store_true", help="RSS check over 1,000,000 messages")
    parser.add_argument("--skip", default="", help="comma-separated: latency, rss, memory")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--json",
        "--output",
        metavar="PATH",
        help="write the JSON results here (default: a new temporary file)",
    )
    where.add_argument(
        "--save",
        action="store_true",
        help=f"write the JSON results to the tracked {SAVED_RESULTS.relative_to(ROOT)}",
    )
    parser.add_argument("--chart", default=None, help="write a PNG chart here (needs matplotlib)")
    parser.add_argument(
        "--replot", metavar="JSON", help="only draw --chart from an earlier --json file"
    )
    parser.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.replot:
        from chart import write_chart

        results = json.loads(Path(args.replot).read_text())
        print(format_table(results))
        return 0 if write_chart(results, args.chart or str(HERE / "benchmark.png")) else 1

    if args.rss_child:
        queue_name, exchange, total, checkpoint = args.rss_child
        rss_child(queue_name, exchange, int(total), int(checkpoint), args.host, args.port)
        return 0

    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if args.full:
        args.rss_n = 1_000_000
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    broker = Broker(args.host, args.port)
    target = new_target(args.host, args.port)
    broker.setup(target)
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "broker": broker.conn.server_properties.get("version"),
        },
        "n": args.n,
        "rounds": args.rounds,
    }
    try:
        results["throughput"] = run_throughput(args, broker, target)
        if "latency" not in skip:
            results["latency"] = run_latency(args, broker, target)
        if "rss" not in skip and "carrot" in args.clients:
            results["rss"] = run_rss(args, broker, target)
        if "memory" not in skip:
            results["memory_backend"] = run_memory_backend(args)
    finally:
        broker.delete(target)
        broker.close()

    print(format_table(results))
    path = results_path(args)
    path.write_text(json.dumps(results, indent=2, default=str))
    log(f"wrote {path}")
    if args.chart:
        from chart import write_chart

        if write_chart(results, args.chart):
            log(f"wrote {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
