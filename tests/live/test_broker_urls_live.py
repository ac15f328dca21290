"""BrokerConnection given URLs and broker lists, against the local RabbitMQ."""

from __future__ import annotations

import socket
import time

import pytest

from carrot.connection import BrokerConnection
from carrot.messaging import Consumer, Publisher

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(30)]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "pyamqp://guest:guest@127.0.0.1/%2F",
        "amqp://127.0.0.1",
    ],
)
def test_a_url_connects(url, unique, amqp_cleanup):
    amqp_cleanup.queue(unique)
    with BrokerConnection(url) as conn:
        publisher = Publisher(conn, exchange="", routing_key=unique)
        consumer = Consumer(conn, queue=unique, exchange="", routing_key=unique, exclusive=False)
        publisher.send({"via": url})
        deadline = time.monotonic() + 5
        message = consumer.fetch()
        while message is None and time.monotonic() < deadline:
            time.sleep(0.01)
            message = consumer.fetch()
        assert message is not None
        assert message.payload == {"via": url}
        message.ack()
        publisher.close()
        consumer.close()


def test_a_broker_list_fails_over_past_a_closed_port():
    port = closed_port()
    hostname = f"amqp://guest:guest@127.0.0.1:{port}//;amqp://guest:guest@127.0.0.1:5672//"
    with BrokerConnection(hostname, connect_timeout=3) as conn:
        assert conn.port == port
        assert conn.connection.server_properties["product"]
        assert conn.port == 5672
        assert conn.info()["port"] == 5672
        assert repr(conn) == (
            "<BrokerConnection amqp://guest:***@127.0.0.1:5672// (broker 2 of 2) backend=amqp>"
        )


def test_every_broker_down_raises_a_connection_error():
    first, second = closed_port(), closed_port()
    conn = BrokerConnection([f"amqp://127.0.0.1:{first}//", f"amqp://127.0.0.1:{second}//"])
    with pytest.raises(conn.connection_errors):
        conn.connect()
    assert conn.port == second


def test_cli_ping_with_a_broker_list_names_the_one_that_answered(capsys):
    from carrot import cli

    port = closed_port()
    urls = f"amqp://guest:guest@127.0.0.1:{port}//;amqp://guest:guest@127.0.0.1:5672//"
    assert cli.main(["ping", urls, "--count", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("connected to amqp://guest:***@127.0.0.1:5672//: RabbitMQ")
    assert "guest:guest" not in out


def test_django_broker_url_fails_over_and_connects():
    import types

    from carrot.connection import DjangoBrokerConnection

    port = closed_port()
    settings = types.SimpleNamespace(
        BROKER_URL=f"amqp://guest:guest@127.0.0.1:{port}//;amqp://guest:guest@127.0.0.1:5672//",
        BROKER_CONNECTION_TIMEOUT=3,
        BROKER_HEARTBEAT=0,
    )
    with DjangoBrokerConnection(settings=settings) as conn:
        assert conn.connection.server_properties["product"]
        assert (conn.port, conn.connect_timeout) == (5672, 3)
