"""The password never shows: repr/str of carrot's objects, info(), errors, redacted logs."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from carrot import _redact
from carrot.connection import BrokerConnection, ConnectionPool, MaskedPassword
from carrot.exceptions import MissingConnectionSetting
from carrot.messaging import Consumer, ConsumerSet, Publisher

SECRET = "S3cr3t-unit-pw"


def test_broker_connection_repr_and_str():
    for hostname in ("broker.example", f"amqp://app:{SECRET}@broker.example//"):
        conn = BrokerConnection(hostname, "app", SECRET, backend_cls="memory")
        assert SECRET not in repr(conn)
        assert SECRET not in str(conn)


def test_info_keeps_the_password_but_its_repr_is_masked():
    conn = BrokerConnection("h", "app", SECRET)
    info = conn.info()
    assert info["password"] == SECRET
    assert str(info["password"]) == SECRET
    assert isinstance(info["password"], MaskedPassword)
    assert SECRET not in repr(info)
    assert SECRET not in f"{info}"
    assert SECRET not in "%s" % (info,)  # noqa: UP031 -- the logging style
    assert pickle.loads(pickle.dumps(info["password"])) == SECRET
    assert BrokerConnection("h", "app", None).info()["password"] is None


def test_pool_copies_connect_with_the_password_and_hide_it():
    source = BrokerConnection("h", "app", SECRET, backend_cls="memory")
    pool = ConnectionPool(source, min=2)
    duplicate = copy.copy(source)
    assert duplicate.password == SECRET
    for thing in (pool, duplicate, pool.acquire(), pool.acquire()):
        assert SECRET not in repr(thing)
        assert SECRET not in str(thing)


def test_messaging_objects_and_messages():
    conn = BrokerConnection("h", "app", SECRET, backend_cls="memory")
    consumer = Consumer(conn, queue="q", exchange="x", routing_key="q")
    publisher = Publisher(conn, exchange="x", routing_key="q")
    cset = ConsumerSet(conn, consumers=[Consumer(conn, queue="q2")])
    publisher.send({"a": 1})
    message = consumer.fetch()
    for thing in (consumer, publisher, cset, consumer.backend, message, conn.connection):
        assert SECRET not in repr(thing)
        assert SECRET not in str(thing)
    message.ack()
    conn.close()


def test_missing_setting_error_names_no_password():
    with pytest.raises(MissingConnectionSetting) as info:
        BrokerConnection("h", None, SECRET).connect()
    assert SECRET not in str(info.value) + repr(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"host amqp://guest:{SECRET}@h:1/, port 5", "host amqp://guest:***@h:1/, port 5"),
        (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
        (
            f"sending frame: [b'login:guest\\n', b'passcode:{SECRET}\\n', b'\\n']",
            "sending frame: [b'login:guest\\n', b'passcode:***\\n', b'\\n']",
        ),
        (f"CONNECT\nlogin:g\npasscode:{SECRET}\n\n", "CONNECT\nlogin:g\npasscode:***\n\n"),
        ("amqp://guest@h// and no passcode", "amqp://guest@h// and no passcode"),
    ],
)
def test_redact(text, expected):
    assert _redact.redact(text) == expected


def test_stomp_py_logger_records_are_redacted(caplog):
    # stomp.py logs the CONNECT frame, passcode included, at DEBUG.
    with caplog.at_level(logging.DEBUG, logger="stomp.py"):
        logging.getLogger("stomp.py").debug(
            "sending frame: %s", [b"login:guest\n", f"passcode:{SECRET}\n".encode()]
        )
        logging.getLogger("stomp.py").warning("could not connect to host %s", f"a://u:{SECRET}@h")
    assert len(caplog.records) == 2
    assert SECRET not in caplog.text
    assert "passcode:***" in caplog.text
    _redact.install()  # idempotent
    assert logging.getLogger("stomp.py").filters.count(_redact._FILTER) == 1
