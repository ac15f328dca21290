"""The ``librabbitmq`` backend name runs on the py-amqp backend."""

from __future__ import annotations

import subprocess
import sys

import pytest

from carrot.backends import get_backend_cls, librabbitmq, pyamqplib
from carrot.connection import BrokerConnection


def test_alias_resolves_to_a_pyamqplib_backend() -> None:
    cls = get_backend_cls("librabbitmq")
    assert cls is librabbitmq.Backend
    assert issubclass(cls, pyamqplib.Backend)


def test_compat_names_are_pyamqplibs() -> None:
    assert librabbitmq.Message is pyamqplib.Message
    assert librabbitmq.Connection is pyamqplib.Connection
    assert librabbitmq.DEFAULT_PORT == 5672


def test_errors_and_port_match_the_default_backend() -> None:
    conn = BrokerConnection(hostname="h", backend_cls="librabbitmq")
    assert conn.connection_errors == BrokerConnection(hostname="h").connection_errors
    assert conn.channel_errors == BrokerConnection(hostname="h").channel_errors
    assert conn.host == "h:5672"


def test_missing_setting_raises_keyerror_without_connecting() -> None:
    conn = BrokerConnection(hostname="h", userid=None, password="p", backend_cls="librabbitmq")
    with pytest.raises(KeyError, match="user id"):
        conn.create_backend().establish_connection()


def test_import_is_quiet() -> None:
    # A fresh interpreter, warnings as errors and logging at DEBUG: nothing is emitted.
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG);"
        "import carrot.backends.librabbitmq as m; print(m.Backend.__mro__[1].__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == "carrot.backends.pyamqplib"
    assert "py-amqp" in (librabbitmq.__doc__ or "")
