"""Compare this checkout's carrot with another checkout's, interleaved, on RabbitMQ.

A change to a hot path (publish, deliver, ack, confirm) is measured before
and after in one run::

    git worktree add /tmp/before main          # the code before the change
    python benchmarks/ab.py --base /tmp/before  # this checkout is "after"

Each round runs ``benchmarks/run.py`` (carrot and py-amqp, the four
throughput scenarios, one round) once from each checkout, in a child
process whose ``carrot`` is that checkout's, alternating which goes first.
py-amqp runs in the same child as a control: it is the same code in both,
so a difference in its figures is the machine's noise, not the change.
Printed per scenario: the median carrot CPU µs/msg and msg/s of each
checkout, the ratio after/before, and carrot's rate relative to py-amqp's
in the same child (the figure least moved by a busy machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS = ("publish", "publish_transient", "consume_ack", "consume_no_ack")


def run_once(tree: Path, n: int, host: str, port: int) -> dict[str, Any]:
    """One round of run.py from ``tree``; its throughput results."""
    script = tree / "benchmarks" / "run.py"
    if not script.is_file():
        raise SystemExit(f"ab: {tree} has no benchmarks/run.py")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                str(script),
                "-n",
                str(n),
                "--rounds",
                "1",
                "--clients",
                "carrot,py-amqp",
                "--skip",
                "latency,rss,memory",
                "--host",
                host,
                "--port",
                str(port),
                "--json",
                out.name,
            ],
            cwd=tree,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
        )
        throughput: dict[str, Any] = json.loads(Path(out.name).read_text())["throughput"]
        return throughput


def figures(runs: list[dict[str, Any]], scenario: str, client: str, key: str) -> float:
    return statistics.median(run[scenario][client][key] for run in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=Path, help="the checkout to compare with")
    parser.add_argument("-n", type=int, default=20000, help="messages per run (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    args = parser.parse_args(argv)

    trees = {"before": args.base.resolve(), "after": HERE.parent}
    if trees["before"] == trees["after"]:
        raise SystemExit("ab: --base is this checkout")
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for rnd in range(args.rounds):
        order = ("before", "after") if rnd % 2 == 0 else ("after", "before")
        for name in order:
            results[name].append(run_once(trees[name], args.n, args.host, args.port))
            print(f"round {rnd + 1}/{args.rounds}: {name} done", file=sys.stderr)

    print(f"{args.rounds} interleaved rounds of {args.n} messages; medians")
    print(f"before: {trees['before']}\nafter:  {trees['after']}\n")
    header = (
        f"{'scenario':18} {'CPU us/msg':>17} {'after/before':>12}"
        f" {'msg/s':>19} {'after/before':>12} {'vs py-amqp':>15}"
    )
    print(header)
    print("-" * len(header))
    for scenario in SCENARIOS:
        cpu = {k: figures(v, scenario, "carrot", "cpu_us") for k, v in results.items()}
        rate = {k: figures(v, scenario, "carrot", "rate") for k, v in results.items()}
        relative = {
            k: statistics.median(
                run[scenario]["carrot"]["rate"] / run[scenario]["py-amqp"]["rate"] for run in v
            )
            for k, v in results.items()
        }
        print(
            f"{scenario:18} {cpu['before']:8.2f} {cpu['after']:8.2f}"
            f" {cpu['after'] / cpu['before']:12.3f}"
            f" {rate['before']:9.0f} {rate['after']:9.0f} {rate['after'] / rate['before']:12.3f}"
            f" {relative['before']:6.2f}x {relative['after']:6.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
