"""Hostile and broken messages, on every backend of BACKENDS.

``accept`` keeps pickle (or any other content type) from being decoded, and a
body that can't be decoded is settled so it never comes back in a
redelivery loop.
"""

from __future__ import annotations

import logging
import pickle

import pytest

from carrot.exceptions import ContentDisallowed, DecodeError
from carrot.messaging import Consumer, ConsumerSet, Publisher


def make_set(broker, **options):
    """A ConsumerSet over two new queues bound to one exchange by their names."""
    exchange = broker.exchange()
    names = [broker.queue(), broker.queue()]
    from_dict = {name: {"exchange": exchange, "binding_key": name} for name in names}
    cset = broker.closing(ConsumerSet(broker.connection, from_dict=from_dict, **options))
    publisher = broker.closing(
        Publisher(broker.connection, exchange=exchange, backend=cset.backend)
    )
    return cset, publisher, names


class _Evil:
    """Unpickling it creates the file ``path``: proof that pickle.loads ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_body(path) -> bytes:
    return pickle.dumps(_Evil(path))


def send_evil(publisher: Publisher, path, **kwargs) -> None:
    publisher.send(
        evil_body(path),
        content_type="application/x-python-serialize",
        content_encoding="binary",
        **kwargs,
    )


def test_the_evil_pickle_really_runs_code_without_accept(broker, tmp_path):
    # The control for the tests below: without accept, fetching it creates the file.
    marker = tmp_path / "pwned"
    publisher, consumer = broker.pair()
    send_evil(publisher, marker)
    message = consumer.fetch()
    message.payload.close()  # unpickling opened (created) the file
    message.ack()
    assert marker.exists()


def test_fetch_with_accept_never_unpickles(broker, tmp_path):
    marker = tmp_path / "pwned"
    publisher, consumer = broker.pair(accept=["json"])
    send_evil(publisher, marker)
    message = consumer.fetch()
    assert message is not None
    assert message.content_type == "application/x-python-serialize"
    with pytest.raises(ContentDisallowed, match="application/x-python-serialize"):
        message.payload  # noqa: B018 -- the property raises
    with pytest.raises(ContentDisallowed):
        message.decode()
    message.reject()
    assert not marker.exists()


def test_accept_from_the_connection_applies_to_every_consumer(broker, tmp_path):
    marker = tmp_path / "pwned"
    broker.connection.accept = ["json"]
    publisher, consumer = broker.pair()
    send_evil(publisher, marker)
    publisher.send({"json": "fine"})
    first = consumer.fetch()
    with pytest.raises(ContentDisallowed):
        first.payload  # noqa: B018 -- the property raises
    first.ack()
    second = consumer.fetch()
    assert second.payload == {"json": "fine"}
    second.ack()
    assert not marker.exists()


def test_consumer_accept_overrides_the_connection(broker):
    broker.connection.accept = ["json"]
    publisher, consumer = broker.pair(accept=["pickle", "json"])
    publisher.send({"a": (1, 2)}, serializer="pickle")
    message = consumer.fetch()
    assert message.payload == {"a": (1, 2)}
    message.ack()


def test_raw_bodies_pass_any_accept_list(broker):
    publisher, consumer = broker.pair(accept=["json"])
    publisher.send(b"\x00raw")
    publisher.send("text")
    first, second = consumer.fetch(), consumer.fetch()
    assert first.payload == b"\x00raw"
    assert second.payload == "text"
    first.ack()
    second.ack()


def test_consuming_rejects_disallowed_without_calling_back(broker, tmp_path, caplog):
    broker.require("reject")
    marker = tmp_path / "pwned"
    publisher, consumer = broker.pair(accept=["application/json"])
    seen = []
    consumer.register_callback(lambda data, message: (seen.append(data), message.ack()))
    send_evil(publisher, marker)
    publisher.send({"after": 1})
    with caplog.at_level(logging.ERROR, logger="carrot.messaging"):
        consumer.consume()
        broker.drain_until(lambda: seen)
    assert seen == [{"after": 1}]
    assert not marker.exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "application/x-python-serialize" in errors[0].getMessage()
    assert consumer.queue in errors[0].getMessage()
    consumer.cancel()
    consumer.backend.close()  # anything unsettled would go back to the queue now
    assert consumer.fetch() is None


def test_consumer_set_accept(broker, tmp_path, caplog):
    broker.require("reject")
    marker = tmp_path / "pwned"
    cset, publisher, names = make_set(broker, accept=["json"])
    got = []
    cset.register_callback(lambda data, message: (got.append(data), message.ack()))
    send_evil(publisher, marker, routing_key=names[0])
    publisher.send("ok", routing_key=names[1])
    with caplog.at_level(logging.ERROR, logger="carrot.messaging"):
        cset.consume()
        broker.drain_until(lambda: got)
        if not any(r.levelno == logging.ERROR for r in caplog.records):
            broker.drain_until(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
    assert got == ["ok"]
    assert not marker.exists()
    cset.cancel()
    cset.backend.close()
    probe = broker.closing(Consumer(broker.connection, queue=names[0], auto_declare=False))
    assert probe.fetch() is None


def test_poison_message_without_handler_raises_and_does_not_come_back(broker):
    broker.require("reject")
    publisher, consumer = broker.pair()
    consumer.register_callback(lambda data, message: message.ack())
    publisher.send(b"{broken", content_type="application/json", content_encoding="utf-8")
    consumer.consume()
    with pytest.raises(DecodeError):
        broker.drain_until(lambda: False)
    consumer.cancel()
    consumer.backend.close()  # an unsettled message would be redelivered now
    assert consumer.fetch() is None
    assert broker.ready(consumer.queue) == 0


def test_poison_message_handler_leaving_it_unsettled(broker):
    broker.require("reject")
    errors = []
    publisher, consumer = broker.pair(
        on_decode_error=lambda message, exc: errors.append((message.body, exc))
    )
    seen = []
    consumer.register_callback(lambda data, message: (seen.append(data), message.ack()))
    publisher.send(b"{broken", content_type="application/json", content_encoding="utf-8")
    publisher.send({"fine": True})
    consumer.consume()
    broker.drain_until(lambda: seen)
    assert seen == [{"fine": True}]
    assert len(errors) == 1
    assert isinstance(errors[0][1], DecodeError)
    consumer.cancel()
    consumer.backend.close()
    assert consumer.fetch() is None
    assert broker.ready(consumer.queue) == 0


def test_poison_message_handler_may_settle_it_itself(broker):
    broker.require("requeue")
    requeued = []

    def on_decode_error(message, exc):
        if not requeued:
            message.requeue()
            requeued.append(message)
        else:
            message.ack()
            requeued.append(message)

    publisher, consumer = broker.pair(on_decode_error=on_decode_error)
    consumer.register_callback(lambda data, message: message.ack())
    publisher.send(b"{broken", content_type="application/json", content_encoding="utf-8")
    consumer.consume()
    broker.drain_until(lambda: len(requeued) == 2)  # the handler's requeue is kept
    consumer.cancel()
    consumer.backend.close()
    assert consumer.fetch() is None
    assert broker.ready(consumer.queue) == 0


def test_consumer_set_poison_message_without_handler(broker):
    broker.require("reject")
    cset, publisher, names = make_set(broker, callbacks=[lambda data, message: message.ack()])
    publisher.send(
        b"{broken", routing_key=names[0], content_type="application/json", content_encoding="utf-8"
    )
    cset.consume()
    with pytest.raises(DecodeError):
        broker.drain_until(lambda: False)
    cset.cancel()
    cset.backend.close()
    probe = broker.closing(Consumer(broker.connection, queue=names[0], auto_declare=False))
    assert probe.fetch() is None
