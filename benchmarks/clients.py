"""The contenders: the same publish and consume loops written for each client.

Every contender is a class with ``publish(n)`` and ``consume(n, ack)``; the
harness in :mod:`run` times them. Each opens its own connection in
``__init__`` (outside the clock) and closes it in ``close()``. Every
publisher serializes the same dict to JSON per message (carrot and kombu do
it themselves; the raw loops call :func:`json.dumps`), and every consumer
decodes the JSON of every message, so the work done is the same.
"""

from __future__ import annotations

import json
import time
from typing import Any

#: The message every publisher sends (about 100 bytes of JSON).
PAYLOAD = {
    "task": "bench.add",
    "id": "0f8f3f8e-3c55-4d6c-9d23-6c1a0e7d4a11",
    "args": [2, 2],
    "kwargs": {},
    "retries": 0,
}
PAYLOAD_BYTES = json.dumps(PAYLOAD).encode()

#: Deliveries in flight per consumer (``basic.qos`` prefetch count).
PREFETCH = 1000


class Target:
    """Where the benchmark publishes and consumes."""

    def __init__(self, host: str, port: int, exchange: str, queue: str, routing_key: str):
        self.host = host
        self.port = port
        self.exchange = exchange
        self.queue = queue
        self.routing_key = routing_key


# -- carrot --------------------------------------------------------------------


class Carrot:
    """carrot's ``Publisher.send`` / ``Consumer.iterconsume`` on the default backend."""

    name = "carrot"

    def __init__(self, target: Target, backend: str | None = None) -> None:
        from carrot.connection import BrokerConnection

        self.target = target
        self.conn = BrokerConnection(
            hostname=target.host,
            port=target.port,
            userid="guest",
            password="guest",
            backend_cls=backend,
        )

    def publish(self, n: int, delivery_mode: int = 2) -> None:
        from carrot.messaging import Publisher

        t = self.target
        publisher = Publisher(
            self.conn, exchange=t.exchange, routing_key=t.routing_key, exchange_type="direct"
        )
        send = publisher.send
        payload = PAYLOAD
        for _ in range(n):
            send(payload, delivery_mode=delivery_mode)
        publisher.close()

    def make_consumer(self) -> Any:
        from carrot.messaging import Consumer

        t = self.target
        return Consumer(
            self.conn,
            queue=t.queue,
            exchange=t.exchange,
            routing_key=t.routing_key,
            exchange_type="direct",
            durable=True,
        )

    def consume(self, n: int, ack: bool) -> int:
        consumer = self.make_consumer()
        consumer.qos(prefetch_count=PREFETCH)
        received = [0]

        if ack:

            def on_message(data: Any, message: Any) -> None:
                received[0] += 1
                message.ack()

        else:

            def on_message(data: Any, message: Any) -> None:
                received[0] += 1

        consumer.register_callback(on_message)
        it = consumer.iterconsume(no_ack=not ack)
        for _ in it:
            if received[0] >= n:
                break
        consumer.close()
        return received[0]

    def close(self) -> None:
        self.conn.close()


# -- raw py-amqp -------------------------------------------------------------------


class RawAmqp:
    """py-amqp used directly: ``basic_publish`` and ``drain_events`` loops."""

    name = "py-amqp"

    def __init__(self, target: Target) -> None:
        import amqp

        self.amqp = amqp
        self.target = target
        self.conn = amqp.Connection(f"{target.host}:{target.port}", "guest", "guest")
        self.conn.connect()

    def publish(self, n: int, delivery_mode: int = 2) -> None:
        t = self.target
        ch = self.conn.channel()
        publish = ch.basic_publish
        Message = self.amqp.Message  # noqa: N806 -- a class
        dumps = json.dumps
        payload = PAYLOAD
        for _ in range(n):
            msg = Message(
                dumps(payload).encode(),
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=delivery_mode,
            )
            publish(msg, exchange=t.exchange, routing_key=t.routing_key)
        ch.close()

    def consume(self, n: int, ack: bool) -> int:
        ch = self.conn.channel()
        ch.basic_qos(0, PREFETCH, False)
        received = [0]
        loads = json.loads

        def on_message(msg: Any) -> None:
            loads(msg.body)
            received[0] += 1
            if ack:
                ch.basic_ack(msg.delivery_tag)

        ch.basic_consume(self.target.queue, callback=on_message, no_ack=not ack)
        drain = self.conn.drain_events
        while received[0] < n:
            drain(timeout=10)
        ch.close()
        return received[0]

    def close(self) -> None:
        self.conn.close()


# -- kombu ----------------------------------------------------------------------


class Kombu:
    """kombu 5: ``Producer.publish`` (declaration cached) and ``Consumer`` callbacks."""

    name = "kombu"

    def __init__(self, target: Target) -> None:
        import kombu

        self.kombu = kombu
        self.target = target
        self.conn = kombu.Connection(f"amqp://guest:guest@{target.host}:{target.port}//")
        self.conn.connect()
        self.exchange = kombu.Exchange(target.exchange, type="direct", durable=True)
        self.queue = kombu.Queue(
            target.queue, self.exchange, routing_key=target.routing_key, durable=True
        )

    def publish(self, n: int, delivery_mode: int = 2) -> None:
        channel = self.conn.channel()
        producer = self.kombu.Producer(channel, exchange=self.exchange, serializer="json")
        publish = producer.publish
        payload = PAYLOAD
        rk = self.target.routing_key
        for _ in range(n):
            publish(payload, routing_key=rk, delivery_mode=delivery_mode, declare=[self.exchange])
        channel.close()

    def consume(self, n: int, ack: bool) -> int:
        channel = self.conn.channel()
        received = [0]

        def on_message(body: Any, message: Any) -> None:
            received[0] += 1
            if ack:
                message.ack()

        consumer = self.kombu.Consumer(
            channel, queues=[self.queue], callbacks=[on_message], no_ack=not ack
        )
        consumer.qos(prefetch_count=PREFETCH)
        with consumer:
            while received[0] < n:
                self.conn.drain_events(timeout=10)
        channel.close()
        return received[0]

    def close(self) -> None:
        self.conn.release()


# -- pika -------------------------------------------------------------------------


class Pika:
    """pika 1.x ``BlockingConnection``: ``basic_publish`` and ``basic_consume``."""

    name = "pika"

    def __init__(self, target: Target) -> None:
        import pika

        self.pika = pika
        self.target = target
        params = pika.ConnectionParameters(host=target.host, port=target.port)
        self.conn = pika.BlockingConnection(params)

    def publish(self, n: int, delivery_mode: int = 2) -> None:
        t = self.target
        ch = self.conn.channel()
        publish = ch.basic_publish
        BasicProperties = self.pika.BasicProperties  # noqa: N806 -- a class
        dumps = json.dumps
        payload = PAYLOAD
        for _ in range(n):
            props = BasicProperties(
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=delivery_mode,
            )
            publish(t.exchange, t.routing_key, dumps(payload).encode(), props)
        ch.close()

    def consume(self, n: int, ack: bool) -> int:
        ch = self.conn.channel()
        ch.basic_qos(prefetch_count=PREFETCH)
        received = [0]
        loads = json.loads

        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            loads(body)
            received[0] += 1
            if ack:
                channel.basic_ack(method.delivery_tag)
            if received[0] >= n:
                channel.stop_consuming()

        ch.basic_consume(self.target.queue, on_message, auto_ack=not ack)
        ch.start_consuming()
        ch.close()
        return received[0]

    def close(self) -> None:
        self.conn.close()


CLIENTS = {"carrot": Carrot, "py-amqp": RawAmqp, "kombu": Kombu, "pika": Pika}


# -- broker helpers -------------------------------------------------------------------


class Broker:
    """A py-amqp connection the harness uses to set up queues and count messages."""

    def __init__(self, host: str, port: int) -> None:
        import amqp

        self.amqp = amqp
        self.conn = amqp.Connection(f"{host}:{port}", "guest", "guest")
        self.conn.connect()
        self.ch = self.conn.channel()

    def setup(self, target: Target) -> None:
        ch = self.ch
        ch.exchange_declare(target.exchange, "direct", durable=True, auto_delete=False)
        ch.queue_declare(target.queue, durable=True, auto_delete=False)
        ch.queue_bind(target.queue, target.exchange, target.routing_key)

    def count(self, queue: str) -> int:
        return self.ch.queue_declare(queue, passive=True).message_count

    def wait_count(self, queue: str, n: int, deadline: float = 120.0) -> int:
        """Poll until the broker holds ``n`` messages in ``queue`` (or the deadline)."""
        end = time.monotonic() + deadline
        count = self.count(queue)
        while count < n and time.monotonic() < end:
            time.sleep(0.0005)
            count = self.count(queue)
        return count

    def purge(self, queue: str) -> None:
        self.ch.queue_purge(queue)

    def fill(self, target: Target, n: int) -> None:
        """Put ``n`` persistent messages in the queue (publisher throttled by batches)."""
        msg_args = {
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "delivery_mode": 2,
        }
        ch = self.ch
        for i in range(n):
            ch.basic_publish(
                self.amqp.Message(PAYLOAD_BYTES, **msg_args),
                exchange=target.exchange,
                routing_key=target.routing_key,
            )
            if i % 5000 == 4999:
                self.wait_count(target.queue, i + 1)
        self.wait_count(target.queue, n)

    def delete(self, target: Target) -> None:
        try:
            self.ch.queue_delete(target.queue)
            self.ch.exchange_delete(target.exchange)
        except (OSError, self.amqp.exceptions.AMQPError):
            pass

    def close(self) -> None:
        self.conn.close()
