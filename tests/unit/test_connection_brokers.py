"""BrokerConnection with URLs, broker lists and failover, and its new keywords (no socket)."""

from __future__ import annotations

import copy
import logging
import types
import warnings

import pytest

from carrot.backends.base import BaseBackend
from carrot.connection import (
    CONNECTION_KEYWORDS,
    DEFAULT_MAX_BODY_SIZE,
    BrokerConnection,
    ConnectionPool,
    DjangoBrokerConnection,
    get_django_conninfo,
)
from carrot.exceptions import InvalidURLError


class RefusedError(Exception):
    """A recoverable connection error: the broker does not answer."""


class LoginRefusedError(Exception):
    """A connection error that is not recoverable (wrong password)."""


class Recorder(BaseBackend):
    """Connects unless the current host is listed in ``down``; records each attempt."""

    connection_errors = (RefusedError, LoginRefusedError)
    recoverable_connection_errors = (RefusedError,)
    default_port = 4242
    down: set[str] = set()
    login_refused: set[str] = set()
    attempts: list[tuple[str, int]] = []

    def establish_connection(self) -> object:
        conn = self.connection
        type(self).attempts.append((conn.hostname, conn.port))
        if conn.hostname in self.login_refused:
            raise LoginRefusedError(conn.hostname)
        if conn.hostname in self.down:
            raise RefusedError(conn.hostname)
        return types.SimpleNamespace(host=conn.hostname, port=conn.port, connected=True)

    def close_connection(self, connection: object) -> None:
        pass


@pytest.fixture(autouse=True)
def recorder():
    Recorder.down = set()
    Recorder.login_refused = set()
    Recorder.attempts = []
    return Recorder


# -- URLs in hostname ---------------------------------------------------------


def test_url_parts_fill_the_settings():
    conn = BrokerConnection("amqp://user:p%40ss@rabbit.example:5673/prod")
    assert (conn.hostname, conn.port, conn.userid, conn.password) == (
        "rabbit.example",
        5673,
        "user",
        "p@ss",
    )
    assert (conn.virtual_host, conn.ssl, conn.backend_cls) == ("prod", False, "amqp")
    assert conn.host == "rabbit.example:5673"


def test_amqps_turns_on_tls_on_port_5671():
    conn = BrokerConnection("amqps://rabbit.example")
    assert (conn.ssl, conn.port) == (True, 5671)
    assert conn.info()["port"] == 5671


@pytest.mark.parametrize(
    "url, backend",
    [
        ("pyamqp://h", "amqp"),
        ("pika://h", "pika"),
        ("stomp://h", "stomp"),
        ("redis://h/2", "redis"),
        ("memory://", "memory"),
        ("kombu+memory://", "kombu"),
    ],
)
def test_the_scheme_names_the_backend(url, backend):
    assert BrokerConnection(url).backend_cls == backend


def test_explicit_keywords_win_over_the_url():
    conn = BrokerConnection(
        "amqps://u:pw@h:5673/v",
        userid="other",
        password="secret",
        virtual_host="/x",
        port=1,
        ssl=False,
        connect_timeout=9,
        backend_cls=Recorder,
    )
    assert (conn.userid, conn.password, conn.virtual_host, conn.port) == (
        "other",
        "secret",
        "/x",
        1,
    )
    assert (conn.ssl, conn.connect_timeout, conn.backend_cls) == (False, 9, Recorder)
    assert conn.hostname == "h"


def test_url_connect_timeout_option():
    assert BrokerConnection("amqp://h/?connect_timeout=2.5").connect_timeout == 2.5


def test_a_bad_url_is_refused_at_once_with_the_password_masked():
    with pytest.raises(InvalidURLError) as excinfo:
        BrokerConnection("amqp://u:s3cret@h:notaport//")
    assert "s3cret" not in str(excinfo.value)
    assert "u:***@h:notaport" in str(excinfo.value)
    with pytest.raises(InvalidURLError, match="unknown scheme 'ftp'"):
        BrokerConnection("ftp://h")


def test_the_kombu_backend_keeps_its_own_url():
    # compat: backend_cls="kombu" hands kombu the URL (kombu picks the transport).
    conn = BrokerConnection("redis://:pw@h:6390/3", backend_cls="kombu")
    assert conn.hostname == "redis://:pw@h:6390/3"
    assert "pw" not in repr(conn).replace("backend", "")
    assert "redis://:***@h:6390/3" in repr(conn)


def test_a_plain_host_name_is_kept_as_it_is():
    conn = BrokerConnection("rabbit.example", "u", "p", port=5672)
    assert conn.hostname == "rabbit.example"
    assert len(conn._brokers) == 1


def test_repr_shows_the_url_never_the_password():
    conn = BrokerConnection("amqp://u:s3cret@h:5673/v")
    assert repr(conn) == "<BrokerConnection amqp://u:***@h:5673/v backend=amqp>"
    conn = BrokerConnection("h", "u", "s3cret", backend_cls=Recorder)
    assert "s3cret" not in repr(conn)
    assert "u:***@h" in repr(conn)


# -- broker lists and failover ------------------------------------------------


@pytest.mark.parametrize(
    "hostname",
    [
        "amqp://u:pw@h1:1//;amqp://u:pw@h2:2//;amqp://u:pw@h3:3//",
        ["amqp://u:pw@h1:1//", "amqp://u:pw@h2:2//", "amqp://u:pw@h3:3//"],
    ],
)
def test_broker_list_fails_over_in_order(hostname):
    Recorder.down = {"h1", "h2"}
    conn = BrokerConnection(hostname, backend_cls=Recorder)
    assert conn.hostname == "h1"
    connection = conn.connect()
    assert (connection.host, connection.port) == ("h3", 3)
    assert Recorder.attempts == [("h1", 1), ("h2", 2), ("h3", 3)]
    assert (conn.hostname, conn.port) == ("h3", 3)
    assert conn.info()["hostname"] == "h3"
    assert "h3:3" in repr(conn)
    assert "(broker 3 of 3)" in repr(conn)
    assert "pw" not in repr(conn)


def test_a_list_of_plain_hosts_shares_the_other_settings():
    Recorder.down = {"a"}
    conn = BrokerConnection(["a", "b"], "u", "p", port=7, backend_cls=Recorder)
    assert conn.connect().host == "b"
    assert Recorder.attempts == [("a", 7), ("b", 7)]


def test_every_broker_down_raises_the_last_error(caplog):
    Recorder.down = {"h1", "h2"}
    conn = BrokerConnection("amqp://u:pw@h1//;amqp://u:pw@h2//", backend_cls=Recorder)
    with (
        caplog.at_level(logging.WARNING, logger="carrot.connection"),
        pytest.raises(RefusedError) as excinfo,
    ):
        conn.connect()
    assert str(excinfo.value) == "h2"
    assert len(Recorder.attempts) == 2
    assert "cannot connect to amqp://u:***@h1:5672//" in caplog.text
    assert "pw" not in caplog.text.replace("pwd", "")


def test_a_refused_login_does_not_fail_over():
    Recorder.login_refused = {"h1"}
    conn = BrokerConnection("amqp://h1//;amqp://h2//", backend_cls=Recorder)
    with pytest.raises(LoginRefusedError):
        conn.connect()
    assert Recorder.attempts == [("h1", 5672)]


def test_ensure_connection_keeps_cycling_the_list():
    Recorder.down = {"h1", "h2"}
    conn = BrokerConnection("amqp://h1//;amqp://h2//", backend_cls=Recorder)
    errors = []
    with pytest.raises(RefusedError):
        conn.ensure_connection(
            errback=lambda exc, interval: errors.append(str(exc)), max_retries=2, interval_start=0
        )
    # Each retry tries both brokers, starting where the last one stopped.
    assert [host for host, _ in Recorder.attempts] == ["h1", "h2", "h2", "h1", "h1", "h2"]
    assert errors == ["h2", "h1"]
    Recorder.down = {"h1"}
    conn.ensure_connection(max_retries=1, interval_start=0)
    assert conn.connection.host == "h2"


def test_the_brokers_of_a_list_use_one_backend():
    with pytest.raises(InvalidURLError, match="one backend, not amqp, redis"):
        BrokerConnection("amqp://u:s3cret@h1//;redis://h2")


def test_shuffle_tries_every_broker_in_some_order():
    orders = set()
    for _ in range(200):
        conn = BrokerConnection(
            ["amqp://a//", "amqp://b//", "amqp://c//"],
            failover_strategy="shuffle",
            backend_cls=Recorder,
        )
        orders.add(tuple(b["hostname"] for b in conn._brokers))
        if len(orders) > 1:
            break
    assert len(orders) > 1
    order = [broker["hostname"] for broker in conn._brokers]
    Recorder.down = set(order[:2])
    assert conn.connect().host == order[2]
    assert [host for host, _ in Recorder.attempts] == order


# -- new keywords ---------------------------------------------------------------


def test_new_keywords_default_to_carrot_0_10_behaviour():
    conn = BrokerConnection("h")
    assert conn.heartbeat == 0
    assert conn.auto_recover is False
    assert conn.retry_policy is None
    assert conn.failover_strategy == "round-robin"
    assert conn.accept is None
    assert conn.max_body_size == DEFAULT_MAX_BODY_SIZE == 512 * 1024 * 1024


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"heartbeat": -1}, "heartbeat must be"),
        ({"heartbeat": "10"}, "heartbeat must be"),
        ({"retry_policy": {"max_retry": 3}}, "unknown retry_policy key(s) ['max_retry']"),
        ({"retry_policy": {"interval_max": -1}}, "'interval_max' must be a number"),
        ({"retry_policy": [1]}, "retry_policy must be a dict"),
        ({"failover_strategy": "random"}, "not 'random'"),
        ({"max_body_size": 0}, "max_body_size must be"),
    ],
)
def test_new_keywords_refuse_bad_values(kwargs, message):
    with pytest.raises(ValueError) as excinfo:
        BrokerConnection("h", **kwargs)
    assert message in str(excinfo.value)


# -- copies keep every setting --------------------------------------------------

#: A value other than the default for each keyword.
NON_DEFAULT = {
    "insist": True,
    "connect_timeout": 17,
    "ssl": {"ca_certs": "/ca.pem"},
    "backend_cls": Recorder,
    "transport": Recorder,
    "heartbeat": 7.5,
    "auto_recover": True,
    "retry_policy": {"max_retries": 3, "interval_start": 0.5},
    "failover_strategy": "round-robin",
    "accept": ["json"],
    "max_body_size": 1024,
}


def test_every_keyword_has_a_non_default_value_here():
    assert set(NON_DEFAULT) == set(CONNECTION_KEYWORDS)


@pytest.mark.parametrize("keyword", CONNECTION_KEYWORDS)
def test_a_copy_keeps_each_keyword(keyword):
    value = NON_DEFAULT[keyword]
    conn = BrokerConnection("amqp://u:p@h1:1//;amqp://u:p@h2:2//", **{keyword: value})
    attribute = "backend_cls" if keyword == "transport" else keyword
    assert getattr(conn, attribute) == value
    clone = copy.copy(conn)
    assert getattr(clone, attribute) == value
    assert clone._brokers == conn._brokers


def test_a_copy_keeps_everything_and_nothing_of_the_open_connection():
    Recorder.down = {"h1"}
    conn = BrokerConnection(
        "amqp://u:p@h1:1//;amqp://u:p@h2:2//",
        backend_cls=Recorder,
        **{k: v for k, v in NON_DEFAULT.items() if k not in ("backend_cls", "transport")},
    )
    conn.connect()
    conn.some_attribute_a_subclass_set = "kept"
    clone = copy.copy(conn)
    assert clone._connection is None and clone._backend is None
    state = {"_connection", "_backend", "_closed", "_backend_generations", "_recovery_lock"}
    assert {k: v for k, v in vars(clone).items() if k not in state} == {
        k: v for k, v in vars(conn).items() if k not in state
    }
    assert clone.retry_policy is not conn.retry_policy
    assert clone._brokers is not conn._brokers


def test_pool_copies_keep_every_setting():
    conn = BrokerConnection(
        ["amqp://u:p@h1:1//", "amqp://u:p@h2:2//"],
        backend_cls=Recorder,
        heartbeat=5,
        auto_recover=True,
        retry_policy={"max_retries": 2},
        ssl=True,
        accept=["json"],
    )
    pool = ConnectionPool(conn, min=3)
    acquired = [pool.acquire() for _ in range(3)]
    assert len({id(c) for c in acquired}) == 3
    for c in acquired:
        assert (c.heartbeat, c.auto_recover, c.retry_policy) == (5, True, {"max_retries": 2})
        assert (c.ssl, c.accept, len(c._brokers)) == (True, ["json"], 2)


# -- Django ---------------------------------------------------------------------


def settings(**values: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(**values)


def test_django_broker_url_and_keyword_settings():
    s = settings(
        BROKER_URL="amqps://u:pw@h1:5673/v;amqps://u:pw@h2:5674/v",
        BROKER_HOST="ignored",
        BROKER_USER="django-user",
        BROKER_HEARTBEAT=10,
        BROKER_CONNECTION_TIMEOUT=3,
        BROKER_USE_SSL={"cert_reqs": 2},
        BROKER_FAILOVER_STRATEGY="round-robin",
    )
    info = get_django_conninfo(s)
    assert info["hostname"] == s.BROKER_URL
    conn = DjangoBrokerConnection(settings=s)
    assert (conn.hostname, conn.port, conn.virtual_host) == ("h1", 5673, "v")
    assert (conn.userid, conn.password) == ("django-user", "pw")  # BROKER_USER wins
    assert (conn.heartbeat, conn.connect_timeout, conn.ssl) == (10, 3, {"cert_reqs": 2})
    assert conn.failover_strategy == "round-robin"
    assert len(conn._brokers) == 2
    clone = copy.copy(conn)
    assert type(clone) is DjangoBrokerConnection
    assert (clone.heartbeat, clone.connect_timeout, len(clone._brokers)) == (10, 3, 2)


def test_django_keyword_settings_unset_add_nothing():
    assert get_django_conninfo(settings(BROKER_HOST="h")) == {
        "hostname": "h",
        "backend_cls": None,
    }


def test_amqp_setting_warnings_point_at_the_callers_line():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        DjangoBrokerConnection(settings=settings(AMQP_SERVER="h", AMQP_USER="u"))
        get_django_conninfo(settings(AMQP_SERVER="h"))
    assert len(record) == 3
    assert {w.filename for w in record} == {__file__}


def test_failover_keeps_settings_changed_since():
    Recorder.down = {"h1"}
    conn = BrokerConnection(
        "amqp://u:p@h1//;amqp://u:p@h2//", backend_cls=Recorder, port=9, connect_timeout=5
    )
    conn.connect_timeout = 1.5  # as ConnectionPool.acquire(connect_timeout=...) does
    conn.connect()
    assert (conn.hostname, conn.port, conn.connect_timeout) == ("h2", 9, 1.5)
