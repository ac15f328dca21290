"""ConsumerSet and Messaging behaviour, on every backend of BACKENDS."""

from __future__ import annotations

import pytest

from carrot.messaging import Consumer, ConsumerSet, Messaging, Publisher


def make_set(broker, queues=2, **options):
    """A ConsumerSet over ``queues`` new queues, each bound to its own key on one exchange.

    Returns ``(cset, publisher, routing keys)``; messages sent with key ``i``
    reach queue ``i``.
    """
    exchange = broker.exchange()
    names = [broker.queue() for _ in range(queues)]
    from_dict = {name: {"exchange": exchange, "binding_key": name} for name in names}
    cset = broker.closing(ConsumerSet(broker.connection, from_dict=from_dict, **options))
    publisher = broker.closing(
        Publisher(broker.connection, exchange=exchange, backend=cset.backend)
    )
    return cset, publisher, names


def test_consumes_every_queue_on_one_channel(broker):
    cset, publisher, names = make_set(broker, queues=3)
    assert [c.queue for c in cset.consumers] == names
    assert [c.routing_key for c in cset.consumers] == names  # binding_key
    assert all(c.backend is cset.backend for c in cset.consumers)
    if broker.has("channel_id"):
        assert len({c.backend.channel.channel_id for c in cset.consumers}) == 1
    got = []
    cset.register_callback(lambda data, message: (got.append((data, message)), message.ack()))
    cset.consume()
    for name in names:
        publisher.send(name, routing_key=name)
    broker.drain_until(lambda: len(got) == 3)
    assert sorted(data for data, _ in got) == sorted(names)
    if broker.has("routing"):
        tags = {c.queue: c.consumer_tag for c in cset.consumers}
        for data, message in got:
            assert message.delivery_info["consumer_tag"] == tags[data]


def test_iterconsume_yields_true_and_ends_on_close(broker):
    cset, publisher, names = make_set(broker, auto_ack=True)
    got = []

    def callback(data, message):
        got.append(data)
        if data == "stop":
            cset.close()

    cset.register_callback(callback)
    publisher.send("go", routing_key=names[0])
    publisher.send("stop", routing_key=names[0])
    for steps, value in enumerate(cset.iterconsume(), 1):
        assert value
        assert steps <= 10, "iterconsume did not end after close()"
    assert got == ["go", "stop"]
    assert not any(c.channel_open for c in cset.consumers)


def test_iterconsume_limit(broker):
    cset, publisher, names = make_set(broker, auto_ack=True)
    got = []
    cset.register_callback(lambda data, message: got.append(data))
    for i in range(3):
        publisher.send(i, routing_key=names[0])
    steps = list(cset.iterconsume(limit=2))
    assert len(steps) == 2
    assert all(steps)
    assert got[:2] == [0, 1]


def test_on_decode_error_keeps_consuming(broker):
    errors = []

    def on_decode_error(message, exc):
        errors.append((message.body, exc))
        message.ack()

    cset, publisher, names = make_set(broker, on_decode_error=on_decode_error)
    got = []
    cset.register_callback(lambda data, message: (got.append(data), message.ack()))
    publisher.send(b"{broken json", routing_key=names[0], content_type="application/json")
    publisher.send({"fine": True}, routing_key=names[0])
    it = cset.iterconsume()
    for _ in range(10):
        if got:
            break
        next(it)
    assert got == [{"fine": True}]
    assert len(errors) == 1
    body, exc = errors[0]
    assert body in (b"{broken json", "{broken json")
    assert isinstance(exc, ValueError)


def test_decode_error_without_handler_raises(broker):
    cset, publisher, names = make_set(broker, callbacks=[lambda data, message: None])
    publisher.send(b"{broken", routing_key=names[0], content_type="application/json")
    cset.consume()
    with pytest.raises(ValueError):
        broker.drain_until(lambda: False)


def test_consumer_added_at_run_time(broker):
    cset, publisher, names = make_set(broker, queues=1)
    got = []
    cset.register_callback(lambda data, message: (got.append(data), message.ack()))
    cset.consume()
    late_queue = broker.queue()
    cset.consumers.append(
        Consumer(
            broker.connection,
            queue=late_queue,
            exchange=publisher.exchange,
            routing_key=late_queue,
            backend=cset.backend,
        )
    )
    cset.consume()
    publisher.send("late", routing_key=late_queue)
    publisher.send("early", routing_key=names[0])
    broker.drain_until(lambda: len(got) == 2)
    assert sorted(got) == ["early", "late"]


def test_add_consumer_moves_it_to_the_set_channel(broker):
    cset, publisher, _names = make_set(broker, queues=1)
    extra = broker.queue()
    consumer = Consumer(
        broker.connection, queue=extra, exchange=publisher.exchange, routing_key=extra
    )
    cset.add_consumer(consumer)
    assert consumer.backend is cset.backend
    got = []
    cset.register_callback(lambda data, message: (got.append(data), message.ack()))
    cset.consume()
    publisher.send("to extra", routing_key=extra)
    broker.drain_until(lambda: got)
    assert got == ["to extra"]


def test_child_consumer_keeps_its_callbacks(broker):
    broker.require("routing")
    cset, publisher, names = make_set(broker)
    calls = []
    cset.register_callback(lambda data, message: calls.append(("set", data)))
    cset.consumers[1].register_callback(
        lambda data, message: (calls.append(("child", data)), message.ack())
    )
    cset.register_callback(lambda data, message: message.ack() if data == "a" else None)
    cset.consume()
    publisher.send("a", routing_key=names[0])
    broker.drain_until(lambda: calls == [("set", "a")])
    publisher.send("b", routing_key=names[1])
    broker.drain_until(lambda: len(calls) == 2)
    # compat: the child's messages go to its callbacks only, as in carrot.
    assert calls == [("set", "a"), ("child", "b")]


def test_cancel_by_queue(broker):
    broker.require("routing")
    cset, publisher, names = make_set(broker)
    got = []
    cset.register_callback(lambda data, message: (got.append(data), message.ack()))
    cset.consume()
    cset.cancel_by_queue(names[0])
    assert [c.queue for c in cset.consumers] == [names[1]]
    cset.consume()  # does not start the cancelled consumer again
    publisher.send("cancelled", routing_key=names[0])
    publisher.send("live", routing_key=names[1])
    broker.drain_until(lambda: got == ["live"])
    broker.drain_until(lambda: broker.ready(names[0]) == 1)


def test_cancel_stops_every_consumer(broker):
    cset, publisher, names = make_set(broker)
    got = []
    cset.register_callback(lambda data, message: (got.append(data), message.ack()))
    cset.consume()
    cset.cancel()
    assert not any(c.channel_open for c in cset.consumers)
    publisher.send("waits", routing_key=names[0])
    broker.drain_until(lambda: broker.ready(names[0]) == 1)
    assert got == []
    cset.consume()  # starts again
    broker.drain_until(lambda: got == ["waits"])


def test_discard_all_sums_the_queues(broker):
    cset, publisher, names = make_set(broker)
    for i in range(2):
        publisher.send(i, routing_key=names[0])
    for i in range(3):
        publisher.send(i, routing_key=names[1])
    assert cset.discard_all() == 5
    assert cset.consumers[0].fetch() is None


def test_auto_ack(broker):
    broker.require("redelivery")
    cset, publisher, names = make_set(broker, auto_ack=True)
    got = []
    cset.register_callback(lambda data, message: got.append(message.acknowledged))
    cset.consume()
    publisher.send("acked", routing_key=names[0])
    broker.drain_until(lambda: got)
    assert got == [True]
    cset.backend.close()
    assert cset.consumers[0].fetch() is None


def test_flow_and_qos(broker):
    cset, publisher, names = make_set(broker, queues=1)
    held = []
    cset.register_callback(lambda data, message: held.append(message))
    cset.qos(prefetch_count=1)
    cset.consume()
    cset.flow(False)
    publisher.send(0, routing_key=names[0])
    publisher.send(1, routing_key=names[0])
    broker.drain_until(lambda: broker.ready(names[0]) == 2)
    assert held == []
    cset.flow(True)
    broker.drain_until(lambda: len(held) == 1)
    if broker.has("prefetch"):
        assert broker.ready(names[0]) == 1
    held[0].ack()
    broker.drain_until(lambda: len(held) == 2)
    held[1].ack()
    assert [m.payload for m in held] == [0, 1]


def test_close_closes_the_channel_once(broker):
    cset, _publisher, _names = make_set(broker)
    cset.register_callback(lambda data, message: message.ack())
    cset.consume()
    closes = []
    original = cset.backend.close
    cset.backend.close = lambda: (closes.append(1), original())
    with cset:
        pass
    assert closes == [1]
    assert not any(c.channel_open for c in cset.consumers)
    assert all(c._closed for c in cset.consumers)


# -- Messaging ----------------------------------------------------------------


def test_messaging_send_fetch_receive_close(broker):
    queue, exchange = broker.queue(), broker.exchange()

    class Feed(Messaging):
        pass

    Feed.queue, Feed.exchange, Feed.routing_key = queue, exchange, queue
    messaging = broker.closing(Feed(broker.connection))
    assert messaging.consumer.queue == queue
    assert messaging.publisher.exchange == exchange
    messaging.send({"n": 1})
    messaging.send({"n": 2}, delivery_mode=1)
    seen = []
    messaging.register_callback(lambda data, message: seen.append(data))
    broker.drain_until(lambda: broker.ready(queue) == 2)
    message = messaging.fetch(enable_callbacks=True)
    assert message.payload == {"n": 1}
    assert seen == [{"n": 1}]
    message.ack()
    messaging.consumer.consume()
    broker.drain_until(lambda: len(seen) == 2)
    assert seen[1] == {"n": 2}
    with messaging:
        pass
    assert messaging._closed
    assert messaging.consumer._closed
    assert messaging.publisher._closed


def test_messaging_receive_without_callbacks(broker):
    queue, exchange = broker.queue(), broker.exchange()
    messaging = broker.closing(
        Messaging(broker.connection, queue=queue, exchange=exchange, routing_key=queue)
    )
    messaging.send("x")
    broker.drain_until(lambda: broker.ready(queue) == 1)
    with pytest.raises(NotImplementedError):
        messaging.fetch(enable_callbacks=True)
