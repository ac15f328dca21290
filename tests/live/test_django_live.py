"""DjangoBrokerConnection connecting to the local RabbitMQ from Django settings."""

from __future__ import annotations

import types

import pytest

pytest.importorskip("django")

from django.conf import settings as django_settings
from django.test.utils import override_settings

from carrot.connection import ConnectionPool, DjangoBrokerConnection

pytestmark = pytest.mark.rabbitmq

BROKER_SETTINGS = {
    "BROKER_HOST": "127.0.0.1",
    "BROKER_PORT": 5672,
    "BROKER_USER": "guest",
    "BROKER_PASSWORD": "guest",
    "BROKER_VHOST": "/",
}


@pytest.fixture(scope="module", autouse=True)
def configured() -> None:
    # settings.configure() works once per process: only if nobody did yet.
    if not django_settings.configured:
        django_settings.configure()


def round_trip(conn, queue: str) -> bytes:
    backend = conn.create_backend()
    try:
        backend.queue_declare(queue, False, False, True)
        backend.publish(backend.prepare_message(b"via django", 1), "", queue)
        message = None
        for _ in range(1000):
            message = backend.get(queue, no_ack=True)
            if message is not None:
                break
        assert message is not None
        return message.body
    finally:
        backend.close()


def test_connects_from_django_conf_settings(unique, amqp_cleanup) -> None:
    with override_settings(**BROKER_SETTINGS), DjangoBrokerConnection() as conn:
        assert conn.connection.connected
        assert round_trip(conn, amqp_cleanup.queue(unique)) == b"via django"
        assert conn.info()["port"] == 5672


def test_connects_from_a_settings_object(unique, amqp_cleanup) -> None:
    settings = types.SimpleNamespace(**BROKER_SETTINGS)
    with DjangoBrokerConnection(settings=settings) as conn:
        assert round_trip(conn, amqp_cleanup.queue(unique)) == b"via django"


def test_deprecated_amqp_settings_still_connect(unique, amqp_cleanup) -> None:
    settings = types.SimpleNamespace(
        AMQP_SERVER="127.0.0.1", AMQP_USER="guest", AMQP_PASSWORD="guest"
    )
    with pytest.warns(DeprecationWarning):
        conn = DjangoBrokerConnection(settings=settings)
    with conn:
        assert round_trip(conn, amqp_cleanup.queue(unique)) == b"via django"


def test_explicit_password_wins(unique) -> None:
    settings = types.SimpleNamespace(**BROKER_SETTINGS)
    with (
        DjangoBrokerConnection(password="wrong", settings=settings) as conn,
        pytest.raises(conn.connection_errors + conn.channel_errors),
    ):
        conn.connect()


def test_pool_of_django_connections(unique, amqp_cleanup) -> None:
    settings = types.SimpleNamespace(**BROKER_SETTINGS)
    source = DjangoBrokerConnection(settings=settings)
    pool = ConnectionPool(source, min=2, max=2)
    a, b = pool.acquire(), pool.acquire()
    try:
        assert a is not b
        assert round_trip(a, amqp_cleanup.queue(unique + ".a")) == b"via django"
        assert round_trip(b, amqp_cleanup.queue(unique + ".b")) == b"via django"
    finally:
        a.close()
        b.close()
