"""Consumer behaviour, on every backend of BACKENDS."""

from __future__ import annotations

import socket

import pytest

from carrot.exceptions import CarrotError
from carrot.messaging import Consumer, FilterWithAutoAckError, Publisher


def test_send_and_fetch_round_trip(broker):
    publisher, consumer = broker.pair()
    publisher.send({"name": "carrot", "tags": [1, 2.5, None, "\u00e9"]})
    message = consumer.fetch()
    assert message is not None
    assert message.payload == {"name": "carrot", "tags": [1, 2.5, None, "\u00e9"]}
    assert message.decode() == message.payload
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert isinstance(message.body, (bytes, str))
    message.ack()
    assert consumer.fetch() is None


def test_subclass_class_attributes_and_kwargs(broker):
    queue, exchange = broker.queue(), broker.exchange()

    class FeedConsumer(Consumer):
        pass

    FeedConsumer.queue = queue
    FeedConsumer.exchange = exchange
    FeedConsumer.routing_key = "feed.import"
    FeedConsumer.durable = False
    FeedConsumer.auto_ack = True

    consumer = broker.closing(FeedConsumer(broker.connection))
    assert (consumer.queue, consumer.exchange, consumer.routing_key) == (
        queue,
        exchange,
        "feed.import",
    )
    assert consumer.durable is False
    assert consumer.auto_ack is True
    publisher = broker.closing(
        Publisher(
            broker.connection,
            exchange=exchange,
            routing_key="feed.import",
            durable=False,
            backend=consumer.backend,
        )
    )
    publisher.send("item")
    message = consumer.fetch()
    assert message.payload == "item"
    assert message.acknowledged  # auto_ack from the class attribute

    other = broker.closing(FeedConsumer(broker.connection, auto_ack=False, auto_declare=False))
    assert other.auto_ack is False
    assert other.queue == queue
    assert FeedConsumer.auto_ack is True


def test_consumer_tags_are_unique(broker):
    publisher, consumer = broker.pair()
    second = broker.closing(
        Consumer(broker.connection, queue=consumer.queue, backend=consumer.backend)
    )
    assert second.consumer_tag != consumer.consumer_tag
    got = []
    for c in (consumer, second):
        c.register_callback(lambda data, message, c=c: (got.append((c, data)), message.ack()))
        c.consume()  # the broker refuses a reused tag on one channel
    publisher.send(1)
    publisher.send(2)
    broker.drain_until(lambda: len(got) == 2)
    assert sorted(data for _, data in got) == [1, 2]


def test_receive_without_callbacks_raises(broker):
    publisher, consumer = broker.pair()
    publisher.send("lonely")
    consumer.consume()
    with pytest.raises(NotImplementedError, match="No consumer callbacks registered"):
        broker.drain_until(lambda: False)


def test_callbacks_run_in_registration_order(broker):
    publisher, consumer = broker.pair()
    calls = []
    consumer.register_callback(lambda data, message: calls.append(("first", data)))
    consumer.register_callback(lambda data, message: calls.append(("second", data)))
    consumer.register_callback(lambda data, message: message.ack())
    consumer.consume()
    publisher.send({"n": 1})
    broker.drain_until(lambda: len(calls) == 2)
    assert calls == [("first", {"n": 1}), ("second", {"n": 1})]


def test_fetch_enable_callbacks_and_auto_ack(broker):
    publisher, consumer = broker.pair()
    seen = []
    consumer.register_callback(lambda data, message: seen.append(data))
    publisher.send("a")
    publisher.send("b")
    message = consumer.fetch(auto_ack=True)
    assert message.payload == "a"
    assert message.acknowledged
    assert seen == []
    message = consumer.fetch(enable_callbacks=True)
    assert seen == ["b"]
    assert not message.acknowledged
    message.ack()


def test_fetch_without_ack_is_redelivered_after_close(broker):
    broker.require("redelivery")
    publisher, consumer = broker.pair()
    publisher.send("again")
    first = consumer.fetch()
    assert first.delivery_info["redelivered"] is False
    consumer.backend.close()  # the unacked message goes back to the queue
    second = consumer.fetch()
    assert second.payload == "again"
    assert second.delivery_info["redelivered"] is True
    second.ack()


@pytest.mark.parametrize("option", ["auto_ack", "no_ack"])
def test_fetch_auto_ack_or_no_ack_is_not_redelivered(broker, option):
    broker.require("redelivery")
    publisher, consumer = broker.pair()
    publisher.send("once")
    message = consumer.fetch(**{option: True})
    assert message.payload == "once"
    consumer.backend.close()
    assert consumer.fetch() is None


def test_fetch_no_ack_keeps_carrot_meaning(broker):
    broker.require("redelivery")
    publisher, consumer = broker.pair(no_ack=True)
    publisher.send("x")
    # compat: an explicit no_ack=False does not override the consumer's no_ack.
    assert consumer.fetch(no_ack=False).payload == "x"
    consumer.backend.close()
    assert consumer.fetch() is None


def test_process_next_warns_and_runs_callbacks(broker):
    publisher, consumer = broker.pair()
    seen = []
    consumer.register_callback(lambda data, message: (seen.append(data), message.ack()))
    publisher.send("legacy")
    with pytest.warns(DeprecationWarning, match=r"fetch\(enable_callbacks=True\)"):
        consumer.process_next()
    assert seen == ["legacy"]


def test_purge_and_discard_all_return_counts(broker):
    publisher, consumer = broker.pair()
    for i in range(3):
        publisher.send(i)
    assert consumer.purge() == 3
    assert consumer.fetch() is None
    for i in range(4):
        publisher.send(i)
    assert consumer.discard_all() == 4
    assert consumer.fetch() is None


def test_discard_all_with_filter_keeps_the_rest(broker):
    publisher, consumer = broker.pair()
    for i in range(6):
        publisher.send(i)
    assert consumer.discard_all(filterfunc=lambda m: m.payload % 3 == 0) == 2
    remaining = []
    for message in consumer.iterqueue(limit=10):
        remaining.append(message.payload)
        message.ack()
    assert sorted(remaining) == [1, 2, 4, 5]


@pytest.mark.parametrize("option", ["auto_ack", "no_ack"])
def test_discard_all_with_filter_refused_with_auto_ack(broker, option):
    publisher, consumer = broker.pair(**{option: True})
    publisher.send("keep me")
    with pytest.raises(FilterWithAutoAckError) as info:
        consumer.discard_all(filterfunc=lambda m: True)
    assert isinstance(info.value, (CarrotError, Exception))
    consumer.auto_ack = consumer.no_ack = False
    assert consumer.fetch().payload == "keep me"


def test_iterqueue_limit_loses_no_message(broker):
    publisher, consumer = broker.pair()
    for i in range(4):
        publisher.send(i)
    got = []
    for message in consumer.iterqueue(limit=3):
        got.append(message.payload)
        message.ack()
    assert got == [0, 1, 2]
    fourth = consumer.fetch()
    assert fourth is not None
    assert fourth.payload == 3
    assert fourth.delivery_info["redelivered"] is False
    fourth.ack()


def test_iterqueue_ends_or_yields_none_when_empty(broker):
    publisher, consumer = broker.pair(auto_ack=True)
    publisher.send("only")
    assert [m.payload for m in consumer.iterqueue()] == ["only"]
    publisher.send("next")
    it = iter(consumer)
    assert next(it).payload == "next"
    assert next(it) is None
    publisher.send("later")
    assert next(it).payload == "later"


def test_iterconsume_yields_true_values_up_to_limit(broker):
    publisher, consumer = broker.pair(auto_ack=True)
    seen = []
    consumer.register_callback(lambda data, message: seen.append(data))
    for i in range(3):
        publisher.send(i)
    it = consumer.iterconsume(limit=2)
    steps = []
    for _ in range(10):
        try:
            steps.append(next(it))
        except StopIteration:
            break
    assert len(steps) == 2
    assert all(steps)
    assert len(seen) >= 2  # every step dispatched at least one message
    assert seen == list(range(len(seen)))


def test_iterconsume_ends_when_closed(broker):
    publisher, consumer = broker.pair(auto_ack=True)
    seen = []

    def callback(data, message):
        seen.append(data)
        if data == "stop":
            consumer.close()

    consumer.register_callback(callback)
    publisher.send("go")
    publisher.send("stop")
    for steps, value in enumerate(consumer.iterconsume(), 1):
        assert value
        assert steps <= 10, "iterconsume did not end after close()"
    assert seen == ["go", "stop"]
    assert consumer._closed
    assert not consumer.channel_open


def test_consume_and_drain_events_dispatch(broker):
    publisher, consumer = broker.pair()
    seen = []
    consumer.register_callback(lambda data, message: (seen.append(data), message.ack()))
    consumer.consume()
    assert consumer.channel_open
    publisher.send("one")
    publisher.send("two")
    broker.drain_until(lambda: len(seen) == 2)
    assert seen == ["one", "two"]
    with pytest.raises(socket.timeout):
        broker.connection.drain_events(timeout=0.2)


def test_wait_with_limit(broker):
    publisher, consumer = broker.pair(auto_ack=True)
    seen = []
    consumer.register_callback(lambda data, message: seen.append(data))
    for i in range(3):
        publisher.send(i)
    result = consumer.wait(limit=3)
    assert len(result) == 3
    assert seen == [0, 1, 2]


def test_cancel_stops_deliveries_but_keeps_the_channel(broker):
    publisher, consumer = broker.pair()
    seen = []
    consumer.register_callback(lambda data, message: (seen.append(data), message.ack()))
    consumer.consume()
    publisher.send("before")
    broker.drain_until(lambda: seen == ["before"])
    consumer.cancel()
    assert not consumer.channel_open
    publisher.send("after")
    message = consumer.fetch()  # still in the queue, and the channel works
    assert message.payload == "after"
    message.ack()
    assert seen == ["before"]


def test_close_and_context_manager(broker):
    publisher, consumer = broker.pair()
    with consumer as c:
        assert c is consumer
        c.consume()
        assert not c._closed
    assert consumer._closed
    assert not consumer.channel_open
    publisher.send("still queued")
    with Consumer(broker.connection, queue=consumer.queue) as other:
        message = other.fetch()
        assert message.payload == "still queued"
        message.ack()


def test_flow_pauses_and_resumes(broker):
    publisher, consumer = broker.pair()
    seen = []
    consumer.register_callback(lambda data, message: (seen.append(data), message.ack()))
    consumer.consume()
    consumer.flow(False)
    publisher.send("paused")
    # A paused consumer gets nothing: the message waits in the queue.
    broker.drain_until(lambda: broker.ready(consumer.queue) == 1)
    assert seen == []
    consumer.flow(True)
    broker.drain_until(lambda: seen == ["paused"])


def test_qos_prefetch_limits_unacked_deliveries(broker):
    broker.require("prefetch")
    publisher, consumer = broker.pair()
    held = []
    consumer.register_callback(lambda data, message: held.append(message))
    consumer.qos(prefetch_count=1)
    for i in range(3):
        publisher.send(i)
    consumer.consume()
    broker.drain_until(lambda: len(held) == 1)
    assert broker.ready(consumer.queue) == 2
    held[0].ack()
    broker.drain_until(lambda: len(held) == 2)
    assert broker.ready(consumer.queue) == 1
    assert [m.payload for m in held] == [0, 1]
    held[1].ack()


def test_delivery_info_on_get_and_deliver(broker):
    publisher, consumer = broker.pair()
    publisher.send("got")
    publisher.send("delivered")
    message = consumer.fetch()
    info = message.delivery_info
    assert info["exchange"] == consumer.exchange
    assert info["routing_key"] == consumer.routing_key
    assert info["redelivered"] is False
    assert info["delivery_tag"] == message.delivery_tag
    if broker.name == "stomp":  # no basic.get over STOMP: the count is unknown
        assert "message_count" not in info
    else:
        assert info["message_count"] == 1
    message.ack()
    delivered = []
    consumer.register_callback(lambda data, m: delivered.append(m))
    consumer.consume()
    broker.drain_until(lambda: delivered)
    info = delivered[0].delivery_info
    assert info["exchange"] == consumer.exchange
    assert info["routing_key"] == consumer.routing_key
    # STOMP's get() may have prefetched it; given back to the queue, it is redelivered.
    assert info["redelivered"] is False or broker.name == "stomp"
    assert info["delivery_tag"] == delivered[0].delivery_tag
    assert info["consumer_tag"] == consumer.consumer_tag
    delivered[0].ack()


def test_requeue_redelivers(broker):
    broker.require("requeue")
    publisher, consumer = broker.pair()
    publisher.send("bounce")
    message = consumer.fetch()
    message.requeue()
    again = consumer.fetch()
    assert again.payload == "bounce"
    assert again.delivery_info["redelivered"] is True
    again.ack()


def test_reject_drops(broker):
    broker.require("reject")
    publisher, consumer = broker.pair()
    publisher.send("drop")
    consumer.fetch().reject()
    assert consumer.fetch() is None
    consumer.backend.close()
    assert consumer.fetch() is None


def test_settled_message_raises_message_state_error(broker):
    publisher, consumer = broker.pair()
    publisher.send(0)
    message = consumer.fetch()
    assert message.payload == 0
    message.ack()
    for settle in (message.ack, message.reject, message.requeue):
        with pytest.raises(message.MessageStateError):
            settle()
    assert message.payload == 0


def test_large_body_round_trip(broker):
    # 64 MiB on RabbitMQ: tests/live/test_messaging_live.py (marked slow).
    size = 4 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    publisher, consumer = broker.pair()
    publisher.send(body, content_type="application/octet-stream")
    message = consumer.fetch()
    assert message.content_encoding == "binary"
    assert len(message.body) == size
    assert message.body == body
    message.ack()
