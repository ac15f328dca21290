"""Publisher behaviour and routing, on every backend of BACKENDS."""

from __future__ import annotations

import pytest

from carrot.exceptions import EncodeError
from carrot.messaging import Consumer, Publisher


def bound_consumer(broker, exchange, exchange_type, routing_key, backend=None):
    return broker.closing(
        Consumer(
            broker.connection,
            queue=broker.queue(),
            exchange=exchange,
            exchange_type=exchange_type,
            routing_key=routing_key,
            backend=backend,
        )
    )


def drain(consumer):
    """Fetch and ack everything waiting on ``consumer``'s queue; return the payloads."""
    got = []
    for message in consumer.iterqueue(limit=100):
        got.append(message.payload)
        message.ack()
    return got


@pytest.mark.parametrize(
    ("exchange_type", "bindings", "sends", "expected"),
    [
        (
            "direct",
            ["red", "blue"],
            [("red", "r"), ("blue", "b"), ("green", "g")],
            [["r"], ["b"]],
        ),
        (
            "topic",
            ["stock.#", "*.eur"],
            [("stock.usd", 1), ("stock.eur", 2), ("bond.eur", 3), ("bond.usd", 4)],
            [[1, 2], [2, 3]],
        ),
        ("fanout", ["ignored", "also"], [("whatever", "all")], [["all"], ["all"]]),
        (
            "headers",
            [{"format": "pdf"}, {"format": "zip", "x-match": "all"}],
            [({"format": "pdf"}, "p"), ({"format": "zip"}, "z"), ({"format": "txt"}, "t")],
            [["p"], ["z"]],
        ),
    ],
)
def test_exchange_types_route(broker, exchange_type, bindings, sends, expected):
    broker.require("routing", "exchange_types")
    exchange = broker.exchange()
    publisher = broker.closing(
        Publisher(broker.connection, exchange=exchange, exchange_type=exchange_type)
    )
    consumers = [
        bound_consumer(broker, exchange, exchange_type, key, backend=publisher.backend)
        for key in bindings
    ]
    for routing_key, data in sends:
        publisher.send(data, routing_key=routing_key)
    assert [drain(consumer) for consumer in consumers] == expected


def test_send_routing_key_and_exchange_override(broker):
    broker.require("routing")
    publisher, consumer = broker.pair()
    other_exchange = broker.exchange()
    other = bound_consumer(broker, other_exchange, "direct", "elsewhere", publisher.backend)
    publisher.send("default")
    publisher.send("nowhere", routing_key="no.such.key")
    publisher.send("override", routing_key="elsewhere", exchange=other_exchange)
    assert drain(consumer) == ["default"]
    assert drain(other) == ["override"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("transient", 1),
        ("non-persistent", 1),
        ("persistent", 2),
        (1, 1),
        (2, 2),
        (None, 2),
    ],
)
def test_delivery_mode_is_delivered(broker, mode, expected):
    broker.require("properties")
    publisher, consumer = broker.pair()
    publisher.send("by send", delivery_mode=mode)
    by_default = Publisher(
        broker.connection,
        exchange=publisher.exchange,
        routing_key=consumer.queue,
        delivery_mode=mode,
        backend=publisher.backend,
    )
    by_default.send("by default")
    for _ in range(2):
        message = consumer.fetch()
        assert message.properties["delivery_mode"] == expected
        message.ack()


def test_delivery_mode_from_constructor(broker):
    broker.require("properties")
    publisher, consumer = broker.pair(publisher_kwargs={"delivery_mode": "transient"})
    assert publisher.delivery_mode == 1
    publisher.send("t")
    message = consumer.fetch()
    assert message.properties["delivery_mode"] == 1
    message.ack()


@pytest.mark.parametrize(
    ("serializer", "data", "content_type"),
    [
        ("json", {"a": [1, "\u00e9"]}, "application/json"),
        ("pickle", {"a": (1, 2), "b": {3}}, "application/x-python-serialize"),
        ("yaml", {"a": [1, "two"]}, "application/x-yaml"),
        ("msgpack", {"a": [1, 2]}, "application/x-msgpack"),
    ],
)
def test_serializers_round_trip(broker, serializer, data, content_type):
    publisher, consumer = broker.pair()
    publisher.send(data, serializer=serializer)
    message = consumer.fetch()
    assert message.content_type == content_type
    assert message.payload == data
    message.ack()
    publisher.serializer = serializer
    publisher.send(data)
    message = consumer.fetch()
    assert message.content_type == content_type
    assert message.payload == data
    message.ack()


def test_raw_bodies_and_explicit_content_type(broker):
    publisher, consumer = broker.pair()
    publisher.send(b"\x00\x01\xff")
    publisher.send("plain \u00e9")
    publisher.send("caf\u00e9", content_type="text/x-latin", content_encoding="latin-1")
    publisher.send(b'{"pre": "encoded"}', content_type="application/json", content_encoding="utf-8")
    publisher.send(b"opaque", content_type="application/x-custom")
    messages = [consumer.fetch() for _ in range(5)]
    assert [(m.content_type, m.content_encoding) for m in messages] == [
        ("application/data", "binary"),
        ("text/plain", "utf-8"),
        ("text/x-latin", "latin-1"),
        ("application/json", "utf-8"),
        ("application/x-custom", "binary"),
    ]
    assert [m.payload for m in messages] == [
        b"\x00\x01\xff",
        "plain \u00e9",
        "caf\u00e9",
        {"pre": "encoded"},
        b"opaque",
    ]
    for message in messages:
        message.ack()


def test_create_message_then_publish(broker):
    publisher, consumer = broker.pair()
    message = publisher.create_message({"made": "by hand"}, delivery_mode=1, priority=3)
    publisher.backend.publish(message, exchange=publisher.exchange, routing_key=consumer.queue)
    received = consumer.fetch()
    assert received.payload == {"made": "by hand"}
    assert received.content_type == "application/json"
    if broker.has("properties"):
        assert received.properties["delivery_mode"] == 1
        assert received.properties["priority"] == 3
    received.ack()


def test_encoding_error_sends_nothing(broker):
    publisher, consumer = broker.pair()
    with pytest.raises(EncodeError):
        publisher.send({"not": object()})
    with pytest.raises(EncodeError):
        publisher.send({"a": 1}, content_type="application/json")
    publisher.send("sentinel")
    message = consumer.fetch()
    assert message.payload == "sentinel"
    message.ack()
    assert consumer.fetch() is None


def test_publisher_close_and_context_manager(broker):
    queue, exchange = broker.queue(), broker.exchange()
    consumer = broker.closing(
        Consumer(broker.connection, queue=queue, exchange=exchange, routing_key=queue)
    )
    with Publisher(broker.connection, exchange=exchange, routing_key=queue) as publisher:
        assert not publisher._closed
        publisher.send("from the block")
    assert publisher._closed
    got = []
    consumer.register_callback(lambda data, message: (got.append(data), message.ack()))
    consumer.consume()
    broker.drain_until(lambda: got)
    assert got == ["from the block"]
