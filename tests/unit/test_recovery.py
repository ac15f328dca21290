"""carrot.recovery without a broker: a fake backend loses its connection on demand."""

from __future__ import annotations

import logging
import types

import pytest

from carrot import recovery
from carrot.backends.base import BaseBackend
from carrot.connection import BrokerConnection
from carrot.exceptions import ConnectionClosedError
from carrot.messaging import Consumer, ConsumerSet, Publisher


class LostError(ConnectionError):
    """The fake connection is gone (recoverable)."""


class Fake(BaseBackend):
    """Records calls; ``fail`` lists the operations that raise LostError next."""

    connection_errors = (LostError, OSError)
    recoverable_connection_errors = (LostError, OSError)
    events: list[tuple] = []
    fail: list[str] = []
    refuse_connects = 0

    def _maybe_fail(self, name: str) -> None:
        if name in Fake.fail:
            Fake.fail.remove(name)
            raise LostError(f"{name}: connection reset")

    def establish_connection(self) -> object:
        if Fake.refuse_connects:
            Fake.refuse_connects -= 1
            raise LostError("refused")
        Fake.events.append(("connect", self.connection.hostname))
        return types.SimpleNamespace(
            connected=True, collect=lambda: Fake.events.append(("collect",))
        )

    def close_connection(self, connection: object) -> None:
        pass

    def exchange_declare(self, **kwargs: object) -> None:
        Fake.events.append(("exchange_declare", id(self), kwargs["exchange"]))

    def queue_declare(self, **kwargs: object) -> None:
        Fake.events.append(("queue_declare", id(self), kwargs["queue"], kwargs["exclusive"]))

    def queue_bind(self, **kwargs: object) -> None:
        Fake.events.append(("queue_bind", id(self), kwargs["queue"]))

    def qos(self, *args: object) -> None:
        Fake.events.append(("qos", id(self), args))

    def declare_consumer(self, **kwargs: object) -> None:
        self._maybe_fail("declare_consumer")
        Fake.events.append(("consume", id(self), kwargs["queue"], kwargs["consumer_tag"]))

    def consume(self, limit: int | None = None):
        for _ in range(limit or 3):
            self._maybe_fail("drain")
            yield True

    def publish(self, message: object, **kwargs: object) -> None:
        self._maybe_fail("publish")
        Fake.events.append(("publish", id(self), kwargs["routing_key"]))

    def get(self, queue: str, no_ack: bool = False) -> None:
        self._maybe_fail("get")
        return None

    def ack(self, delivery_tag: object) -> None:
        Fake.events.append(("ack", id(self), delivery_tag))


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    Fake.events = []
    Fake.fail = []
    Fake.refuse_connects = 0
    monkeypatch.setattr(
        recovery.time, "sleep", lambda seconds: Fake.events.append(("sleep", seconds))
    )


def connection(**kwargs: object) -> BrokerConnection:
    kwargs.setdefault("retry_policy", {"interval_start": 1, "interval_step": 1, "interval_max": 2})
    return BrokerConnection(
        "amqp://u:s3cret@h1//;amqp://u:s3cret@h2//", backend_cls=Fake, auto_recover=True, **kwargs
    )


def names(kind: str) -> list[tuple]:
    return [event for event in Fake.events if event[0] == kind]


def test_nothing_is_wrapped_without_auto_recover():
    conn = BrokerConnection("h", backend_cls=Fake)
    publisher = Publisher(conn, exchange="x")
    consumer = Consumer(conn, queue="q")
    assert "send" not in vars(publisher)
    assert not {"fetch", "consume", "iterconsume"} & set(vars(consumer))


def test_send_recovers_on_the_next_broker_and_declares_again(caplog):
    conn = connection()
    conn.connect()
    publisher = Publisher(conn, exchange="x", routing_key="k")
    old_backend = publisher.backend
    Fake.fail = ["publish"]
    with caplog.at_level(logging.INFO, logger="carrot.connection"):
        publisher.send("hello")
    assert names("connect") == [("connect", "h1"), ("connect", "h2")]
    assert names("collect") == [("collect",)]
    assert publisher.backend is not old_backend
    assert names("exchange_declare")[-1] == ("exchange_declare", id(publisher.backend), "x")
    assert names("publish") == [("publish", id(publisher.backend), "k")]
    assert "lost (LostError: publish: connection reset)" in caplog.text
    assert "recovered: connected to amqp://u:***@h2:5672//" in caplog.text
    assert "s3cret" not in caplog.text
    # The old backend's acks are no-ops now.
    old_backend.ack(7)
    assert names("ack") == []


def test_retries_follow_the_policy_and_are_logged(caplog):
    conn = connection()
    publisher = Publisher(conn, exchange="x")
    Fake.fail = ["publish"]
    Fake.refuse_connects = 3  # attempt 1: h2 and h1 refused; attempt 2: h1 refused, h2 answers
    with caplog.at_level(logging.WARNING, logger="carrot.connection"):
        publisher.send("hello")
    assert names("sleep") == [("sleep", 1)]
    messages = [r.getMessage() for r in caplog.records if "reconnect attempt" in r.getMessage()]
    assert messages == [
        "reconnect attempt 1 to amqp://u:***@h1:5672// failed (LostError: refused); "
        "next attempt in 1.0 s"
    ]
    assert names("publish")


def test_max_retries_spent_raises_the_last_error():
    conn = connection(retry_policy={"max_retries": 2, "interval_start": 0.5})
    publisher = Publisher(conn, exchange="x")
    Fake.fail = ["publish"]
    Fake.refuse_connects = 1000
    with pytest.raises(LostError, match="refused"):
        publisher.send("hello")
    assert names("sleep") == [("sleep", 0.5), ("sleep", 2.5)]


def test_consumer_is_declared_qos_and_consuming_again():
    conn = connection()
    consumer = Consumer(conn, queue="q", exchange="x", routing_key="k", exclusive=True)
    consumer.register_callback(lambda data, message: None)
    consumer.qos(prefetch_count=10)
    Fake.fail = ["drain"]
    assert consumer.wait(limit=3) == [True, True, True]
    backend_id = id(consumer.backend)
    assert ("queue_declare", backend_id, "q", True) in Fake.events
    assert ("queue_bind", backend_id, "q") in Fake.events
    assert ("qos", backend_id, (0, 10, False)) in Fake.events
    assert names("consume")[-1] == ("consume", backend_id, "q", consumer.consumer_tag)


def test_consumer_set_rebinds_every_consumer_on_one_new_channel():
    conn = connection()
    consumer_set = ConsumerSet(conn, from_dict={"q1": {"exchange": "x"}, "q2": {"exchange": "x"}})
    consumer_set.register_callback(lambda data, message: None)
    list(consumer_set.iterconsume(limit=1))
    Fake.fail = ["drain"]
    assert list(consumer_set.iterconsume(limit=2)) == [True, True]
    backend = consumer_set.backend
    assert all(consumer.backend is backend for consumer in consumer_set.consumers)
    consumed = [event for event in names("consume") if event[1] == id(backend)]
    assert sorted(event[2] for event in consumed) == ["q1", "q2"]
    # A consumer of the set fetching after a recovery rebinds the whole set.
    Fake.fail = ["get"]
    consumer_set.consumers[0].fetch()
    assert consumer_set.consumers[0].backend is consumer_set.backend is not backend


def test_not_recovered():
    conn = connection()
    assert not recovery.should_recover(conn, ConnectionClosedError())
    assert not recovery.should_recover(conn, TimeoutError())
    assert not recovery.should_recover(conn, ValueError())
    assert recovery.should_recover(conn, LostError())
    conn.close()
    assert not recovery.should_recover(conn, LostError())


def test_a_consumer_added_from_elsewhere_recovers_with_its_set():
    plain = BrokerConnection("h", backend_cls=Fake)
    # Nothing installed on it, and it declared nothing itself.
    outsider = Consumer(plain, queue="q3", exchange="x", auto_declare=False)
    conn = connection()
    consumer_set = ConsumerSet(conn, consumers=[outsider])
    consumer_set.register_callback(lambda data, message: None)
    Fake.fail = ["drain"]
    assert list(consumer_set.iterconsume(limit=2)) == [True, True]
    assert outsider.backend is consumer_set.backend
    assert names("consume")[-1] == ("consume", id(outsider.backend), "q3", outsider.consumer_tag)
    assert not names("queue_declare")


def test_closing_the_connection_stops_the_retries(monkeypatch):
    conn = connection()
    publisher = Publisher(conn, exchange="x")
    Fake.fail = ["publish"]
    Fake.refuse_connects = 1000
    # Another thread closes the connection while recovery waits between attempts.
    monkeypatch.setattr(recovery.time, "sleep", lambda seconds: conn.close())
    with pytest.raises(LostError, match="publish: connection reset"):
        publisher.send("hello")
    assert conn.connection is None


def test_a_certificate_failure_is_not_retried(monkeypatch, caplog):
    from carrot.exceptions import TLSVerificationError

    conn = connection()
    publisher = Publisher(conn, exchange="x")
    Fake.fail = ["publish"]

    def refuse_certificate(self: Fake) -> object:
        raise TLSVerificationError("h2:5671", "certificate verify failed", "h2")

    monkeypatch.setattr(Fake, "establish_connection", refuse_certificate)
    with (
        caplog.at_level(logging.WARNING, logger="carrot.connection"),
        pytest.raises(TLSVerificationError),
    ):
        publisher.send("hello")
    assert names("sleep") == []
    assert "not reconnecting to" in caplog.text
