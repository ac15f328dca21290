"""A real login with a distinctive password leaves no trace (the TLS node has the user).

Root logging is captured at DEBUG while connecting (plain and TLS), using
the connection and closing it; no record, repr or str may contain the
password.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from tlsnode import AMQP_PORT, TLS_PORT

from carrot.connection import BrokerConnection, ConnectionPool
from carrot.messaging import Consumer, Publisher

pytestmark = [pytest.mark.tls, pytest.mark.timeout(60)]

SECRET = f"S3cr3t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def user(tls):
    userid = f"carrot-{uuid.uuid4().hex[:8]}"
    tls.add_user(userid, SECRET)
    yield userid
    tls.ctl("delete_user", userid)


@pytest.mark.parametrize(
    ("backend", "tls_on"),
    [("amqp", False), ("amqp", True), ("pika", False)],
    ids=["amqp", "amqp-tls", "pika"],
)
def test_login_use_and_close_leave_no_trace(tls, user, backend, tls_on, caplog):
    kwargs = {"port": AMQP_PORT}
    if tls_on:
        kwargs = {"port": TLS_PORT, "ssl": {"ca_certs": tls.ca}}
    hostname = "localhost" if tls_on else "127.0.0.1"
    conn = BrokerConnection(hostname, user, SECRET, backend_cls=backend, **kwargs)
    pool = ConnectionPool(conn, min=2)
    queue = f"carrot.test.pw.{uuid.uuid4().hex[:8]}"
    seen = []
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("carrot.tests").debug("capture works")
        other = pool.acquire()
        consumer = Consumer(other, queue=queue, exchange=queue, routing_key=queue, auto_delete=True)
        publisher = Publisher(other, exchange=queue, routing_key=queue, auto_delete=True)
        publisher.send({"n": 1})
        message = None
        for _ in range(50):
            message = consumer.fetch()
            if message is not None:
                break
        assert message is not None
        for thing in (conn, pool, other, consumer, publisher, consumer.backend, message):
            seen += [repr(thing), str(thing)]
        seen += [repr(other.connection), str(other.connection), repr(other.info())]
        message.ack()
        consumer.backend.queue_delete(queue)
        publisher.close()
        consumer.close()
        other.close()
        conn.close()
    assert "capture works" in caplog.text
    assert SECRET not in caplog.text
    for text in seen:
        assert SECRET not in text


def test_recovery_after_a_forced_close_leaves_no_trace(tls, user, caplog):
    conn = BrokerConnection(
        "127.0.0.1",
        user,
        SECRET,
        port=AMQP_PORT,
        auto_recover=True,
        retry_policy={"max_retries": 20, "interval_start": 0.1, "interval_step": 0.1},
    )
    queue = f"carrot.test.pw.{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.DEBUG):
        consumer = Consumer(conn, queue=queue, exchange=queue, routing_key=queue, auto_delete=True)
        publisher = Publisher(conn, exchange=queue, routing_key=queue, auto_delete=True)
        publisher.send("before")
        tls.ctl("close_all_connections", "carrot test: forced close")
        got = []
        first = consumer.fetch()  # a synchronous call: sees the loss and recovers
        if first is not None:
            got.append(first.payload)
            first.ack()
        publisher.send("after")
        for _ in range(50):
            message = consumer.fetch()
            if message is not None:
                got.append(message.payload)
                message.ack()
                if "after" in got:
                    break
        consumer.backend.queue_delete(queue)
        publisher.close()
        consumer.close()
        conn.close()
    assert "after" in got
    assert "reconnecting" in caplog.text  # recovery did run and log
    assert SECRET not in caplog.text
