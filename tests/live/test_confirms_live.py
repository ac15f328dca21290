"""Publisher confirms on RabbitMQ: acks, nacks, returns, the window, close()."""

from __future__ import annotations

import amqp
import pytest

from carrot.connection import BrokerConnection
from carrot.exceptions import MessageNacked, MessageReturned
from carrot.messaging import Publisher

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]


@pytest.fixture
def raw_channel():
    with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
        yield conn.channel()


@pytest.fixture
def queue(unique, amqp_cleanup, raw_channel):
    name = amqp_cleanup.queue(f"{unique}.confirms")
    raw_channel.queue_declare(name, durable=True, auto_delete=False)
    return name


def depth(raw_channel, queue):
    return raw_channel.queue_declare(queue, passive=True).message_count


def full_queue(raw_channel, name: str, length: int) -> str:
    """Declare ``name`` holding at most ``length`` messages; the broker nacks the next ones."""
    raw_channel.queue_declare(
        name,
        durable=True,
        auto_delete=False,
        arguments={"x-max-length": length, "x-overflow": "reject-publish"},
    )
    return name


def test_window_one_send_returns_after_the_ack(amqp_connection, queue, raw_channel):
    publisher = Publisher(amqp_connection, exchange="", routing_key=queue, confirm=True)
    publisher.send({"n": 1})
    # Confirmed: nothing outstanding, and the broker has it.
    assert len(publisher._confirms) == 0
    assert depth(raw_channel, queue) == 1
    publisher.close()


def test_nack_raises_with_the_refused_message(amqp_connection, unique, amqp_cleanup, raw_channel):
    name = full_queue(raw_channel, amqp_cleanup.queue(f"{unique}.full"), 1)
    publisher = Publisher(amqp_connection, exchange="", routing_key=name, confirm=True)
    publisher.send({"n": 1})
    with pytest.raises(MessageNacked) as info:
        publisher.send({"n": 2})
    [refused] = info.value.messages
    assert refused.body == b'{"n":2}'
    assert refused.routing_key == name
    # The first one is kept, and the publisher still works after the nack.
    assert depth(raw_channel, name) == 1
    raw_channel.queue_purge(name)
    publisher.send({"n": 3})
    assert depth(raw_channel, name) == 1
    publisher.close()


def test_nack_in_a_window_is_raised_by_wait_for_confirms(
    amqp_connection, unique, amqp_cleanup, raw_channel
):
    name = full_queue(raw_channel, amqp_cleanup.queue(f"{unique}.full"), 5)
    publisher = Publisher(
        amqp_connection, exchange="", routing_key=name, confirm=True, max_unconfirmed=100
    )
    for n in range(20):
        publisher.send({"n": n})
    with pytest.raises(MessageNacked) as info:
        publisher.wait_for_confirms(timeout=10)
    assert len(info.value.messages) == 15
    assert sorted(m.body for m in info.value.messages) == sorted(
        f'{{"n":{n}}}'.encode() for n in range(5, 20)
    )
    publisher.close()


def test_unroutable_mandatory_raises_message_returned(amqp_connection, unique, amqp_cleanup):
    exchange = amqp_cleanup.exchange(f"{unique}.x")
    publisher = Publisher(
        amqp_connection,
        exchange=exchange,
        routing_key="nowhere",
        confirm=True,
        mandatory=True,
        auto_delete=True,
    )
    with pytest.raises(MessageReturned) as info:
        publisher.send({"lost": True})
    assert info.value.messages[0].returned[0] == 312
    assert "nowhere" in str(info.value)
    publisher.close()


def test_window_bound_respected_and_everything_confirmed(amqp_connection, queue, raw_channel):
    publisher = Publisher(
        amqp_connection, exchange="", routing_key=queue, confirm=True, max_unconfirmed=32
    )
    window = publisher._confirms
    most = 0
    for n in range(2000):
        publisher.send({"n": n})
        most = max(most, len(window))
        assert len(window) <= 32
    publisher.wait_for_confirms(timeout=30)
    assert len(window) == 0
    assert most > 1  # it did pipeline
    assert depth(raw_channel, queue) == 2000
    publisher.close()


def test_close_waits_for_outstanding_confirms(amqp_connection, queue, raw_channel):
    publisher = Publisher(
        amqp_connection, exchange="", routing_key=queue, confirm=True, max_unconfirmed=1000
    )
    for n in range(500):
        publisher.send({"n": n})
    window = publisher._confirms
    publisher.close()
    assert len(window) == 0
    assert depth(raw_channel, queue) == 500


def test_wait_for_confirms_without_confirm_is_an_error(amqp_connection, queue):
    publisher = Publisher(amqp_connection, exchange="", routing_key=queue)
    with pytest.raises(ValueError, match="confirm=True"):
        publisher.wait_for_confirms()
    publisher.close()


def test_memory_backend_confirms_on_publish():
    conn = BrokerConnection(backend_cls="memory")
    publisher = Publisher(conn, exchange="x", routing_key="k", confirm=True, max_unconfirmed=4)
    for n in range(10):
        publisher.send({"n": n})
    assert len(publisher._confirms) == 0
    publisher.wait_for_confirms(timeout=1)
    publisher.close()
    conn.close()


@pytest.fixture
def pika_connection():
    conn = BrokerConnection(
        hostname="127.0.0.1", userid="guest", password="guest", backend_cls="pika"
    )
    try:
        yield conn
    finally:
        conn.close()


def test_pika_backend_confirms_each_message(pika_connection, queue, raw_channel):
    publisher = Publisher(
        pika_connection, exchange="", routing_key=queue, confirm=True, max_unconfirmed=8
    )
    for n in range(50):
        publisher.send({"n": n})
    assert len(publisher._confirms) == 0
    publisher.wait_for_confirms(timeout=5)
    assert depth(raw_channel, queue) == 50
    publisher.close()


def test_pika_backend_nack_and_return(pika_connection, unique, amqp_cleanup, raw_channel):
    name = full_queue(raw_channel, amqp_cleanup.queue(f"{unique}.full"), 1)
    publisher = Publisher(pika_connection, exchange="", routing_key=name, confirm=True)
    publisher.send({"n": 1})
    with pytest.raises(MessageNacked) as info:
        publisher.send({"n": 2})
    assert info.value.messages[0].body == b'{"n":2}'
    with pytest.raises(MessageReturned) as returned:
        publisher.send({"n": 3}, routing_key=f"{unique}.nowhere", mandatory=True)
    assert returned.value.messages[0].returned[0] == 312
    publisher.close()


@pytest.mark.redis
def test_a_backend_without_confirms_refuses_at_construction():
    conn = BrokerConnection(hostname="127.0.0.1", port=6379, backend_cls="redis")
    try:
        with pytest.raises(NotImplementedError, match="no publisher confirms"):
            Publisher(conn, exchange="x", routing_key="k", confirm=True)
    finally:
        conn.close()


@pytest.fixture
def stomp_connection():
    conn = BrokerConnection(
        hostname="127.0.0.1", port=61613, userid="guest", password="guest", backend_cls="stomp"
    )
    try:
        yield conn
    finally:
        conn.close()


@pytest.mark.stomp
def test_stomp_backend_confirms_with_receipts(stomp_connection, queue, raw_channel):
    publisher = Publisher(
        stomp_connection, exchange="", routing_key=queue, confirm=True, max_unconfirmed=10
    )
    most = 0
    for n in range(100):
        publisher.send({"n": n})
        most = max(most, len(publisher._confirms))
    publisher.wait_for_confirms(timeout=10)
    assert len(publisher._confirms) == 0
    assert 1 <= most <= 10
    assert depth(raw_channel, queue) == 100
    publisher.close()


@pytest.mark.stomp
def test_stomp_backend_error_for_a_send_is_raised(stomp_connection, unique):
    # RabbitMQ answers a SEND to an exchange that does not exist with an
    # ERROR without a receipt id, and closes the STOMP connection: the
    # broker's error is raised, not a bare "connection lost".
    publisher = Publisher(
        stomp_connection,
        exchange=f"{unique}.no-such-exchange",
        routing_key="rk",
        confirm=True,
        auto_declare=False,
    )
    with pytest.raises(stomp_connection.channel_errors, match="not_found"):
        publisher.send({"n": 1})
    assert len(publisher._confirms) == 1  # never confirmed
