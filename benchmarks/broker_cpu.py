"""Where the time goes: client CPU and broker CPU per message, carrot vs raw py-amqp.

Run on the broker's machine (reads the ``beam.smp`` process's CPU from
``/proc``)::

    python benchmarks/broker_cpu.py [-n 50000]

When the broker's CPU share reaches about one core while carrot runs, the
broker (its queue and channel processes) is the limit, not the client.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from clients import Broker, Carrot, RawAmqp, Target


def broker_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50_000)
    args = parser.parse_args()
    pid = int(subprocess.check_output(["pgrep", "-f", "beam.smp"]).split()[0])
    broker = Broker("127.0.0.1", 5672)
    tag = uuid.uuid4().hex[:8]
    target = Target("127.0.0.1", 5672, f"carrot.cpu.x.{tag}", f"carrot.cpu.q.{tag}", "bench")
    broker.setup(target)
    n = args.n
    try:
        for cls in (Carrot, RawAmqp, Carrot, RawAmqp):
            for mode in ("publish", "no_ack", "ack"):
                broker.purge(target.queue)
                if mode != "publish":
                    broker.fill(target, n)
                client = cls(target)
                t0, c0, b0 = time.perf_counter(), time.process_time(), broker_cpu_seconds(pid)
                if mode == "publish":
                    client.publish(n)
                    broker.wait_count(target.queue, n)
                else:
                    client.consume(n, mode == "ack")
                t1, c1, b1 = time.perf_counter(), time.process_time(), broker_cpu_seconds(pid)
                client.close()
                print(
                    f"{cls.name:8} {mode:8} {n / (t1 - t0):7.0f} msg/s  "
                    f"client {(c1 - c0) / n * 1e6:5.1f} us/msg  "
                    f"broker {(b1 - b0) / n * 1e6:5.1f} us/msg "
                    f"({(b1 - b0) / (t1 - t0) * 100:.0f}% of one core)",
                    flush=True,
                )
    finally:
        broker.delete(target)
        broker.close()


if __name__ == "__main__":
    main()
