"""Recovery time: carrot's ``auto_recover`` against kombu's ``ConsumerMixin``, on one fault proxy.

Run from the repository root against a RabbitMQ on 127.0.0.1::

    python benchmarks/recovery.py              # 3 rounds of each fault
    python benchmarks/recovery.py --rounds 5

A consumer reads a queue through the loopback fault proxy of the tests
(``tests/faultproxy.py``) while a direct connection publishes a timestamped
message every 5 ms. Then the proxy breaks the connection:

* ``cut``: every connection reset (TCP RST); the clock runs from the cut;
* ``restart``: new connections refused for about a second, open ones reset
  (a broker restart); the clock runs from the moment the proxy listens
  again. How long a client takes then depends on where its retry schedule
  falls (at most ``interval_max``), so each round refuses for a different
  time (:data:`REFUSALS`), the same for both contenders.

The clock stops at the first delivery of a message published after the
fault. Both clients retry on the same schedule (0.1 s, then +0.1 s up to
0.5 s): carrot with ``retry_policy``, kombu through
``Connection.ensure_connection`` in ``ConsumerMixin.establish_connection``.
The contenders alternate (carrot, kombu, then kombu, carrot, ...) and the
table shows the median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import amqp

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parent / "tests"), str(HERE.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from faultproxy import FaultProxy  # noqa: E402 -- after sys.path

#: The retry schedule both clients use.
POLICY = {"interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.5, "max_retries": 100}
#: Seconds between published messages.
PUBLISH_EVERY = 0.005
#: Seconds the ``restart`` fault refuses connections, by round (cycled).
REFUSALS = (0.8, 1.05, 1.3, 0.95, 1.2)
#: Seconds a round may take before it counts as a failure.
ROUND_TIMEOUT = 20.0


class Feed:
    """Publishes ``{"t": monotonic time}`` every PUBLISH_EVERY seconds on a direct connection."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.stop = threading.Event()
        self.conn = amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5)
        self.conn.connect()
        self.channel = self.conn.channel()
        self.channel.queue_declare(queue, durable=True, auto_delete=False)  # as carrot declares it
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(PUBLISH_EVERY):
            body = json.dumps({"t": time.monotonic()})
            self.channel.basic_publish(
                amqp.Message(body, content_type="application/json"), "", self.queue
            )

    def __enter__(self) -> Feed:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.channel.queue_delete(self.queue)
        self.conn.close()


class Receipts:
    """(published at, received at) of each delivery, and a wait for one after a time."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.items: list[tuple[float, float]] = []

    def add(self, published: float) -> None:
        with self.lock:
            self.items.append((published, time.monotonic()))
            self.lock.notify_all()

    def first_after(self, since: float, timeout: float) -> float:
        """Seconds from ``since`` to the delivery of the first message published after it."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for published, received in self.items:
                    if published > since:
                        return received - since
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no delivery within {timeout} s")
                self.lock.wait(remaining)


@contextmanager
def carrot_consumer(url: str, queue: str, receipts: Receipts) -> Any:
    from carrot.connection import BrokerConnection
    from carrot.messaging import Consumer

    conn = BrokerConnection(url, auto_recover=True, retry_policy=POLICY, connect_timeout=5)
    consumer = Consumer(conn, queue=queue, exchange="", routing_key=queue, auto_delete=False)
    stop = threading.Event()

    def on_message(data: Any, message: Any) -> None:
        receipts.add(data["t"])
        message.ack()

    consumer.register_callback(on_message)

    def run() -> None:
        for _ in consumer.iterconsume():
            if stop.is_set():
                break

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(ROUND_TIMEOUT)
        consumer.close()
        conn.close()


@contextmanager
def kombu_consumer(url: str, queue: str, receipts: Receipts) -> Any:
    from kombu import Connection, Queue
    from kombu.mixins import ConsumerMixin

    class Worker(ConsumerMixin):  # type: ignore[misc]
        def __init__(self, connection: Any) -> None:
            self.connection = connection

        def get_consumers(self, consumer_cls: Any, channel: Any) -> list[Any]:
            return [consumer_cls([Queue(queue, no_declare=True)], callbacks=[self.on_message])]

        def on_message(self, body: Any, message: Any) -> None:
            receipts.add(body["t"])
            message.ack()

        @contextmanager
        def establish_connection(self) -> Any:
            with self.create_connection() as conn:
                conn.ensure_connection(
                    self.on_connection_error,
                    POLICY["max_retries"],
                    interval_start=POLICY["interval_start"],
                    interval_step=POLICY["interval_step"],
                    interval_max=POLICY["interval_max"],
                )
                yield conn

    worker = Worker(Connection(url.replace("amqp://", "pyamqp://"), connect_timeout=5))
    worker.restart_limit.capacity = 100  # kombu allows one restart a second by default
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        worker.should_stop = True
        thread.join(ROUND_TIMEOUT)


CONTENDERS: dict[str, Callable[[str, str, Receipts], Any]] = {
    "carrot auto_recover": carrot_consumer,
    "kombu ConsumerMixin": kombu_consumer,
}


def one_round(contender: str, fault: str, refused_for: float = REFUSALS[0]) -> float:
    queue = f"carrot.bench.recovery.{uuid.uuid4().hex[:8]}"
    receipts = Receipts()
    with FaultProxy() as proxy, Feed(queue), CONTENDERS[contender](proxy.url(), queue, receipts):
        receipts.first_after(time.monotonic(), ROUND_TIMEOUT)  # consuming
        time.sleep(1.1)  # past kombu's restart token bucket
        if fault == "cut":
            since = time.monotonic()
            proxy.cut()
        else:
            proxy.restart(refused_for)
            if not proxy.wait_listening(refused_for + ROUND_TIMEOUT):
                raise RuntimeError("the fault proxy did not listen again")
            since = proxy.listening_since
        return receipts.first_after(since, ROUND_TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the reconnect WARNINGs of both clients
    names = list(CONTENDERS)
    results: dict[str, dict[str, list[float]]] = {
        f: {n: [] for n in names} for f in ("cut", "restart")
    }
    for fault in results:
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for name in order:
                refused_for = REFUSALS[round_no % len(REFUSALS)]
                results[fault][name].append(one_round(name, fault, refused_for))
    print(f"Recovery time, median of {args.rounds} (fault to the next delivery):")
    print(f"{'fault':<10}" + "".join(f"{name:>24}" for name in names))
    for fault, by_name in results.items():
        cells = "".join(f"{statistics.median(by_name[n]) * 1000:>21.0f} ms" for n in names)
        print(f"{fault:<10}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
