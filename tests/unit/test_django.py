"""get_django_conninfo and DjangoBrokerConnection through the real django.conf.settings.

Django's ``settings.configure()`` works once per process, so it is called once
(if nobody did yet) and each test changes settings with ``override_settings``.
Per-case tests with plain settings objects are in test_connection.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

pytest.importorskip("django")

from django.conf import settings as django_settings
from django.test.utils import override_settings

from carrot.backends.base import BaseBackend
from carrot.backends.pyamqplib import Backend as AMQPBackend
from carrot.connection import (
    DjangoAMQPConnection,
    DjangoBrokerConnection,
    get_django_conninfo,
)

SETTING_NAMES = [
    f"{prefix}_{suffix}"
    for prefix in ("BROKER", "AMQP")
    for suffix in ("HOST", "PORT", "USER", "PASSWORD", "VHOST")
] + ["AMQP_SERVER", "CARROT_BACKEND"]


class SettingsBackend(BaseBackend):
    default_port = 7777


@pytest.fixture(scope="module", autouse=True)
def configured() -> None:
    if not django_settings.configured:
        django_settings.configure()


@pytest.fixture
def clean() -> Iterator[None]:
    """No broker settings at all, whatever another module configured."""
    with override_settings():
        for name in SETTING_NAMES:
            if hasattr(django_settings, name):
                delattr(django_settings, name)
        yield


def test_broker_settings(clean) -> None:
    with (
        override_settings(
            BROKER_HOST="django-host",
            BROKER_PORT=5673,
            BROKER_USER="django-user",
            BROKER_PASSWORD="django-pw",
            BROKER_VHOST="/django",
        ),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")
        info = get_django_conninfo()
        conn = DjangoBrokerConnection()
    assert info == {
        "hostname": "django-host",
        "port": 5673,
        "userid": "django-user",
        "password": "django-pw",
        "virtual_host": "/django",
        "backend_cls": None,
    }
    assert (conn.hostname, conn.port, conn.userid, conn.password, conn.virtual_host) == (
        "django-host",
        5673,
        "django-user",
        "django-pw",
        "/django",
    )
    assert conn.get_backend_cls() is AMQPBackend


def test_amqp_settings_are_deprecated(clean) -> None:
    with (
        override_settings(AMQP_SERVER="server", AMQP_USER="u", AMQP_PASSWORD="p"),
        pytest.warns(DeprecationWarning) as record,
    ):
        conn = DjangoAMQPConnection()
    assert (conn.hostname, conn.userid, conn.password) == ("server", "u", "p")
    texts = " ".join(str(w.message) for w in record)
    for name in ("AMQP_SERVER", "AMQP_USER", "AMQP_PASSWORD"):
        assert name in texts


def test_carrot_backend_setting(clean) -> None:
    path = f"{__name__}.SettingsBackend"
    with override_settings(BROKER_HOST="h", CARROT_BACKEND=path):
        conn = DjangoBrokerConnection()
    assert conn.get_backend_cls() is SettingsBackend
    assert conn.host == "h:7777"


def test_explicit_arguments_win_over_django_settings(clean) -> None:
    with override_settings(BROKER_HOST="h", BROKER_USER="u", BROKER_PORT=1):
        conn = DjangoBrokerConnection("explicit", port=2)
    assert (conn.hostname, conn.userid, conn.port) == ("explicit", "u", 2)


def test_no_settings_at_all(clean) -> None:
    assert get_django_conninfo() == {"backend_cls": None}
    conn = DjangoBrokerConnection()
    assert conn.hostname is None
    with pytest.raises(KeyError, match="hostname"):
        conn.connect()
