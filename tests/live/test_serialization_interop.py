"""carrot.serialization bodies interoperate with kombu 5 over a real RabbitMQ.

carrot -> kombu: a body made by :func:`carrot.serialization.encode`, published
with raw py-amqp under its content type and encoding, is consumed by a kombu
``SimpleQueue`` and ``message.decode()`` gives the same data back.

kombu -> carrot: ``Producer.publish(..., serializer=X)``, then py-amqp's
``basic_get`` and :func:`carrot.serialization.decode` on the body and its
properties give the same data back.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import amqp
import pytest

# kombu is an extra (carrot[kombu]): without it there is nothing here to test.
pytest.importorskip("kombu", reason="kombu is not installed (pip install carrot[kombu])")

import kombu

from carrot import serialization

pytestmark = pytest.mark.rabbitmq

BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"

#: Every content type these tests exchange, so kombu accepts pickle too.
ACCEPT = [
    "application/json",
    "application/x-python-serialize",
    "application/x-yaml",
    "application/x-msgpack",
    "application/data",
    "text/plain",
]

NESTED = {
    "text": "smörgåsbord ☃ 𝄞 日本語",
    "list": [1, -2, 3.5, None, True, False, "", {"deep": [[], {}]}],
    "dict": {"a": {"b": {"c": "d"}}},
}
PICKLED = {"when": datetime.datetime(2010, 1, 2, 3, 4, 5), "tuple": (1, b"\x00\xff"), **NESTED}
RAW_BYTES = b"\x00\xff\xfe" + bytes(range(256)) * 16
TEXT = "plain ünïcode text ☃"

#: (serializer, data, content type, content encoding) as carrot encodes them.
CARROT_CASES = [
    pytest.param("json", NESTED, "application/json", "utf-8", id="json"),
    pytest.param("pickle", PICKLED, "application/x-python-serialize", "binary", id="pickle"),
    pytest.param("yaml", NESTED, "application/x-yaml", "utf-8", id="yaml"),
    pytest.param("msgpack", NESTED, "application/x-msgpack", "binary", id="msgpack"),
    pytest.param(None, RAW_BYTES, "application/data", "binary", id="raw-bytes"),
    pytest.param("raw", RAW_BYTES, "application/data", "binary", id="raw-serializer"),
    pytest.param(None, TEXT, "text/plain", "utf-8", id="text"),
]

#: (kombu serializer, data) that kombu publishes.
KOMBU_CASES = [
    pytest.param("json", NESTED, id="json"),
    pytest.param("pickle", PICKLED, id="pickle"),
    pytest.param("yaml", NESTED, id="yaml"),
    pytest.param("msgpack", NESTED, id="msgpack"),
    pytest.param(None, RAW_BYTES, id="raw-bytes"),
    pytest.param("raw", RAW_BYTES, id="raw-serializer"),
    pytest.param(None, TEXT, id="text"),
]


@pytest.fixture
def kombu_connection() -> Iterator[kombu.Connection]:
    """A kombu connection whose publishes return once the broker has the message."""
    conn = kombu.Connection(
        BROKER_URL, connect_timeout=5, transport_options={"confirm_publish": True}
    )
    try:
        conn.connect()
        yield conn
    finally:
        conn.release()


@pytest.fixture
def amqp_channel() -> Iterator[amqp.Channel]:
    """A channel on a raw py-amqp connection (which decodes text bodies itself)."""
    with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
        conn.connect()
        yield conn.channel()


def _basic_get(channel: amqp.Channel, queue: str, deadline: float = 5.0) -> amqp.Message:
    """The next message on ``queue``, waiting at most ``deadline`` seconds."""
    give_up = time.monotonic() + deadline
    for _ in range(500):
        message = channel.basic_get(queue, no_ack=True)
        if message is not None:
            return message
        if time.monotonic() > give_up:
            break
        time.sleep(0.01)
    raise AssertionError(f"no message on {queue} within {deadline}s")


@pytest.mark.parametrize(("serializer", "data", "content_type", "content_encoding"), CARROT_CASES)
def test_carrot_encoded_body_is_decoded_by_kombu(
    serializer: str | None,
    data: Any,
    content_type: str,
    content_encoding: str,
    unique: str,
    amqp_cleanup: Any,
    amqp_channel: amqp.Channel,
    kombu_connection: kombu.Connection,
) -> None:
    amqp_cleanup.queue(unique)
    amqp_cleanup.exchange(unique)
    queue = kombu_connection.SimpleQueue(unique, accept=ACCEPT)  # declares queue and exchange
    try:
        ct, ce, body = serialization.encode(data, serializer=serializer)
        assert (ct, ce) == (content_type, content_encoding)
        assert type(body) is bytes
        amqp_channel.basic_publish(
            amqp.Message(body, content_type=ct, content_encoding=ce),
            exchange="",
            routing_key=unique,
        )

        message = queue.get(block=True, timeout=5)
        message.ack()
        assert message.content_type == content_type
        assert message.content_encoding == content_encoding
        decoded = message.decode()
        assert decoded == data
        assert type(decoded) is type(data)
    finally:
        queue.close()


@pytest.mark.parametrize(("serializer", "data"), KOMBU_CASES)
def test_kombu_published_body_is_decoded_by_carrot(
    serializer: str | None,
    data: Any,
    unique: str,
    amqp_cleanup: Any,
    amqp_channel: amqp.Channel,
    kombu_connection: kombu.Connection,
) -> None:
    amqp_cleanup.queue(unique)
    amqp_channel.queue_declare(unique, durable=False, auto_delete=False)

    producer = kombu_connection.Producer()
    producer.publish(data, exchange="", routing_key=unique, serializer=serializer)

    message = _basic_get(amqp_channel, unique)
    content_type = message.properties.get("content_type")
    content_encoding = message.properties.get("content_encoding")
    decoded = serialization.decode(message.body, content_type, content_encoding)
    assert decoded == data
    assert type(decoded) is type(data)
    # The same content type carrot uses for that serializer, so either side can read it.
    if serializer not in (None, "raw"):
        assert serialization.registry._encoders[serializer][0] == content_type


def test_kombu_bytes_body_stays_bytes_for_carrot(
    unique: str,
    amqp_cleanup: Any,
    amqp_channel: amqp.Channel,
    kombu_connection: kombu.Connection,
) -> None:
    # Not valid UTF-8: a charset decode would fail, so this proves binary is left alone.
    amqp_cleanup.queue(unique)
    amqp_channel.queue_declare(unique, durable=False, auto_delete=False)
    kombu_connection.Producer().publish(b"\xff\xfe\x00", exchange="", routing_key=unique)

    message = _basic_get(amqp_channel, unique)
    assert message.properties["content_encoding"] == "binary"
    decoded = serialization.decode(
        message.body, message.properties["content_type"], message.properties["content_encoding"]
    )
    assert decoded == b"\xff\xfe\x00"
