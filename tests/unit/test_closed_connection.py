"""Using a publisher, consumer or backend after its connection was closed."""

from __future__ import annotations

import pytest

from carrot.backends.base import BaseBackend
from carrot.backends.pikachu import SyncBackend as PikaBackend
from carrot.backends.pyamqplib import Backend as AMQPBackend
from carrot.connection import BrokerConnection
from carrot.exceptions import CarrotError, ConnectionClosedError


def test_connection_closed_error_is_a_builtin_connection_error():
    exc = ConnectionClosedError()
    assert isinstance(exc, CarrotError)
    assert isinstance(exc, ConnectionError)
    assert isinstance(exc, OSError)
    assert "connect()" in str(exc)


def test_base_backend_established_raises_once_closed():
    conn = BrokerConnection(backend_cls=BaseBackend)
    conn.close()
    with pytest.raises(ConnectionClosedError):
        BaseBackend(conn)._established()


@pytest.mark.parametrize(
    "backend_cls",
    [
        AMQPBackend,
        # kombu is an extra (carrot[kombu]); the alias skips without it.
        pytest.param("kombu", id="KombuBackend"),
        PikaBackend,
    ],
)
def test_backend_channel_after_close_is_a_connection_error(backend_cls):
    if backend_cls == "kombu":
        pytest.importorskip("kombu", reason="kombu is not installed (pip install carrot[kombu])")
    # No socket: the connection is closed before anything was opened.
    conn = BrokerConnection("127.0.0.1", "guest", "guest", backend_cls=backend_cls)
    conn.close()
    backend = conn.create_backend()
    with pytest.raises(ConnectionClosedError) as info:
        backend.channel  # noqa: B018 -- the property opens the channel
    assert isinstance(info.value, conn.connection_errors)


def test_memory_backend_uses_the_same_class():
    from carrot.backends import queue

    assert queue.ConnectionClosedError is ConnectionClosedError
