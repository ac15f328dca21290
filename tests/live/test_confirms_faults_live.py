"""Publisher confirms under faults: cuts, a silent broker, nacks, with and without auto_recover.

The publisher talks to RabbitMQ through a :class:`faultproxy.FaultProxy`; a
direct py-amqp connection counts and reads what the broker holds.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import amqp
import pytest

from carrot.connection import BrokerConnection
from carrot.exceptions import ConfirmTimeoutError, MessageNacked
from carrot.messaging import Publisher

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(90)]

FAST = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5, "max_retries": 40}


@pytest.fixture
def queue(unique, amqp_cleanup, direct) -> str:
    name = amqp_cleanup.queue(f"{unique}.confirms")
    direct.queue_declare(name, durable=True, auto_delete=False)
    return name


def drain(channel: amqp.Channel, queue: str) -> Counter:
    seen: Counter = Counter()
    while (message := channel.basic_get(queue, no_ack=True)) is not None:
        body = message.body
        seen[json.loads(body if isinstance(body, str) else body.decode())["n"]] += 1
    return seen


@pytest.mark.parametrize(("count", "window"), [(2000, 64), (300, 1)])
def test_a_cut_loses_no_confirmed_message(proxy, direct, queue, count, window):
    conn = BrokerConnection(proxy.url(), auto_recover=True, retry_policy=FAST, connect_timeout=5)
    publisher = Publisher(
        conn, exchange="", routing_key=queue, confirm=True, max_unconfirmed=window
    )
    cuts = 0
    for n in range(count):
        if n == count // 2:
            cuts += proxy.cut() > 0
        publisher.send({"n": n})
    publisher.wait_for_confirms(timeout=30)
    publisher.close()
    conn.close()
    assert cuts == 1
    seen = drain(direct, queue)
    assert set(seen) == set(range(count))  # zero loss
    duplicates = sum(seen.values()) - count
    # At-least-once: at most what was unconfirmed when the link was cut.
    assert 0 <= duplicates <= window


def test_without_auto_recover_a_cut_raises_a_connection_error(proxy, queue):
    conn = BrokerConnection(proxy.url(), connect_timeout=5)
    publisher = Publisher(conn, exchange="", routing_key=queue, confirm=True)
    publisher.send({"n": 0})
    proxy.cut()
    with pytest.raises(conn.connection_errors):
        for n in range(1, 100):
            publisher.send({"n": n})
    conn.close()


def test_wait_for_confirms_times_out_on_a_silent_broker(proxy, queue):
    conn = BrokerConnection(proxy.url(), connect_timeout=5)
    publisher = Publisher(conn, exchange="", routing_key=queue, confirm=True, max_unconfirmed=100)
    publisher.send({"n": 0})
    publisher.wait_for_confirms(timeout=10)
    proxy.blackhole()
    for n in range(1, 11):
        publisher.send({"n": n})
    started = time.monotonic()
    with pytest.raises(ConfirmTimeoutError) as info:
        publisher.wait_for_confirms(timeout=1.0)
    assert isinstance(info.value, TimeoutError)
    assert 0.9 <= time.monotonic() - started < 4
    assert info.value.unconfirmed == 10
    proxy.heal()
    publisher.wait_for_confirms(timeout=10)  # the confirms come once the link works
    conn.close()


def full_queue(direct, unique, amqp_cleanup) -> str:
    name = amqp_cleanup.queue(f"{unique}.full")
    direct.queue_declare(
        name,
        durable=True,
        auto_delete=False,
        arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    return name


def test_nacks_are_resent_until_the_broker_takes_them(direct, unique, amqp_cleanup, caplog):
    name = full_queue(direct, unique, amqp_cleanup)
    conn = BrokerConnection(
        "amqp://guest:guest@127.0.0.1:5672//",
        auto_recover=True,
        retry_policy={**FAST, "max_retries": 50},
    )
    publisher = Publisher(conn, exchange="", routing_key=name, confirm=True)
    publisher.send({"n": 1})
    # The queue is full: {"n": 2} is nacked until someone makes room.
    timer = threading.Timer(1.0, lambda: direct.queue_purge(name))
    timer.start()
    try:
        with caplog.at_level("WARNING", logger="carrot.connection"):
            publisher.send({"n": 2})
    finally:
        timer.join(5)
    assert "nacked" in caplog.text
    assert drain(direct, name) == Counter({2: 1})
    publisher.close()
    conn.close()


def test_nacks_raise_once_max_retries_is_spent(direct, unique, amqp_cleanup):
    name = full_queue(direct, unique, amqp_cleanup)
    conn = BrokerConnection(
        "amqp://guest:guest@127.0.0.1:5672//",
        auto_recover=True,
        retry_policy={**FAST, "max_retries": 2},
    )
    publisher = Publisher(conn, exchange="", routing_key=name, confirm=True)
    publisher.send({"n": 1})
    started = time.monotonic()
    with pytest.raises(MessageNacked) as info:
        publisher.send({"n": 2})
    # Two re-sends after 0.2 s and 0.4 s.
    assert time.monotonic() - started >= 0.6
    assert json.loads(info.value.messages[0].body) == {"n": 2}
    publisher.close()
    conn.close()
