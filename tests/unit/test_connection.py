"""carrot.connection without a broker: a fake backend records what happens."""

from __future__ import annotations

import copy
import socket
import threading
import types
import warnings

import amqp
import pytest
from amqp.exceptions import AccessRefused, NotAllowed

from carrot.backends.base import BaseBackend
from carrot.backends.pyamqplib import Backend as AMQPBackend
from carrot.connection import (
    AMQPConnection,
    BrokerConnection,
    ConnectionLimitExceeded,
    ConnectionPool,
    DjangoAMQPConnection,
    DjangoBrokerConnection,
    get_django_conninfo,
)
from carrot.exceptions import MissingConnectionSetting


class FakeConnectionError(Exception):
    pass


class FakeChannelError(Exception):
    pass


class FakeClientConnection:
    """What a backend's establish_connection returns."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.closed = False
        self.channels: list[object] = []
        self.drained: list[dict] = []

    def channel(self) -> object:
        ch = object()
        self.channels.append(ch)
        return ch

    def drain_events(self, **kwargs: object) -> str:
        self.drained.append(kwargs)
        if kwargs.get("timeout") is not None:
            raise TimeoutError("timed out")
        return "event"

    def close(self) -> None:
        if self.backend.close_raises is not None:
            raise self.backend.close_raises
        self.closed = True


class FakeBackend(BaseBackend):
    default_port = 4242
    connection_errors = (FakeConnectionError, OSError)
    channel_errors = (FakeChannelError,)

    #: Exceptions establish_connection raises, in order, before succeeding.
    failures: list[BaseException] = []
    close_raises: BaseException | None = None
    opened: list[FakeClientConnection] = []

    def establish_connection(self) -> FakeClientConnection:
        if self.failures:
            raise self.failures.pop(0)
        conn = FakeClientConnection(self)
        self.opened.append(conn)
        return conn

    def close_connection(self, connection: FakeClientConnection) -> None:
        connection.close()


@pytest.fixture
def backend_cls() -> type[FakeBackend]:
    """A fresh FakeBackend subclass (its class-level state is per test)."""
    return type("Backend", (FakeBackend,), {"failures": [], "opened": [], "close_raises": None})


@pytest.fixture
def conn(backend_cls: type[FakeBackend]) -> BrokerConnection:
    return BrokerConnection("broker.example", "user", "secret", backend_cls=backend_cls)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    from carrot import utils

    slept: list[float] = []
    monkeypatch.setattr(utils.time, "sleep", slept.append)
    return slept


# -- BrokerConnection: settings ----------------------------------------------


def test_defaults() -> None:
    c = BrokerConnection()
    assert c.hostname is None
    assert c.userid is None
    assert c.password is None
    assert c.virtual_host == "/"
    assert c.port is None
    assert c.pool is None
    assert c.insist is False
    assert c.connect_timeout == 5
    assert c.ssl is False
    assert c.backend_cls is None
    assert c.get_backend_cls() is AMQPBackend
    assert AMQPConnection is BrokerConnection


def test_positional_arguments_in_carrot_order() -> None:
    pool = object()
    c = BrokerConnection("h", "u", "p", "/vh", 1234, pool)
    assert (c.hostname, c.userid, c.password, c.virtual_host, c.port, c.pool) == (
        "h",
        "u",
        "p",
        "/vh",
        1234,
        pool,
    )


def test_keyword_options(backend_cls: type[FakeBackend]) -> None:
    c = BrokerConnection(
        "h", insist=True, connect_timeout=1.5, ssl={"cert_reqs": 0}, backend_cls=backend_cls
    )
    assert c.insist is True
    assert c.connect_timeout == 1.5
    assert c.ssl == {"cert_reqs": 0}
    assert c.get_backend_cls() is backend_cls


def test_transport_is_an_alias_of_backend_cls(backend_cls: type[FakeBackend]) -> None:
    assert BrokerConnection(transport=backend_cls).get_backend_cls() is backend_cls
    assert BrokerConnection(transport="amqp").get_backend_cls() is AMQPBackend


def test_subclass_class_attributes_are_defaults(backend_cls: type[FakeBackend]) -> None:
    class MyConnection(BrokerConnection):
        virtual_host = "/mine"
        port = 1111
        connect_timeout = 2
        backend_cls = None

    MyConnection.backend_cls = backend_cls
    c = MyConnection("h")
    assert c.virtual_host == "/mine"
    assert c.port == 1111
    assert c.connect_timeout == 2
    assert c.get_backend_cls() is backend_cls


def test_host_property(conn: BrokerConnection, backend_cls: type[FakeBackend]) -> None:
    assert conn.host == "broker.example:4242"  # the backend's default port
    assert BrokerConnection("h").host == "h:5672"
    assert BrokerConnection("h", port=1234).host == "h:1234"


def test_info(backend_cls: type[FakeBackend]) -> None:
    c = BrokerConnection("h", "u", "p", "/v", ssl=True, insist=True, connect_timeout=3)
    assert c.info() == {
        "hostname": "h",
        "userid": "u",
        "password": "p",
        "virtual_host": "/v",
        "port": 5671,  # the TLS port, as ssl=True
        "insist": True,
        "ssl": True,
        "transport_cls": "amqplib",
        "backend_cls": "amqplib",
        "connect_timeout": 3,
    }
    info = BrokerConnection("h", port=99, backend_cls=backend_cls).info()
    assert info["port"] == 99
    assert info["backend_cls"] is backend_cls
    assert info["transport_cls"] is backend_cls


def test_repr_hides_the_password(conn: BrokerConnection) -> None:
    assert "secret" not in repr(conn)
    assert "broker.example" in repr(conn)


def test_errors_come_from_the_backend(conn: BrokerConnection) -> None:
    assert conn.connection_errors == (FakeConnectionError, OSError)
    assert conn.channel_errors == (FakeChannelError,)
    amqp_conn = BrokerConnection()
    assert amqp_conn.ConnectionException in amqp_conn.connection_errors
    assert amqp.exceptions.ChannelError in amqp_conn.channel_errors
    assert OSError in amqp_conn.connection_errors


# -- BrokerConnection: connecting and closing ---------------------------------


def test_connection_is_lazy_and_cached(conn: BrokerConnection, backend_cls) -> None:
    assert backend_cls.opened == []
    first = conn.connection
    assert conn.connection is first
    assert backend_cls.opened == [first]
    assert conn._closed is False


def test_connect_close_connect(conn: BrokerConnection, backend_cls) -> None:
    first = conn.connect()
    assert first is conn.connection
    conn.close()
    assert conn._closed is True
    assert first.closed
    assert conn.connection is None
    second = conn.connect()
    assert second is not first
    assert not second.closed
    assert conn._closed is False


def test_close_never_connected(conn: BrokerConnection, backend_cls) -> None:
    conn.close()
    assert conn._closed is True
    assert backend_cls.opened == []


@pytest.mark.parametrize(
    "error", [OSError("broken pipe"), TimeoutError("t"), FakeConnectionError("gone")]
)
def test_close_swallows_socket_and_connection_errors(conn, backend_cls, error) -> None:
    conn.connect()
    backend_cls.close_raises = error
    conn.close()
    assert conn._closed is True
    assert conn.connection is None


def test_close_twice(conn: BrokerConnection) -> None:
    conn.connect()
    conn.close()
    conn.close()
    assert conn._closed is True


def test_context_manager_closes(conn: BrokerConnection) -> None:
    with conn as c:
        assert c is conn
        client = c.connection
    assert client.closed
    assert conn._closed is True


def test_context_manager_lets_the_original_exception_through(conn, backend_cls) -> None:
    original = ValueError("from the block")
    with pytest.raises(ValueError) as excinfo, conn:
        conn.connect()
        backend_cls.close_raises = OSError("socket already dead")
        raise original
    assert excinfo.value is original
    assert conn._closed is True


def test_create_backend_and_channel_give_new_backends(conn: BrokerConnection, backend_cls) -> None:
    a = conn.create_backend()
    b = conn.channel()
    assert isinstance(a, backend_cls)
    assert isinstance(b, backend_cls)
    assert a is not b
    assert a.connection is conn
    assert b.connection is conn


def test_get_channel_opens_a_channel_on_the_connection(conn: BrokerConnection) -> None:
    ch1 = conn.get_channel()
    ch2 = conn.get_channel()
    assert conn.connection.channels == [ch1, ch2]


def test_drain_events_forwards_and_raises_socket_timeout(conn: BrokerConnection) -> None:
    assert conn.drain_events() == "event"
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.01)
    assert conn.connection.drained == [{}, {"timeout": 0.01}]


# -- ensure_connection ---------------------------------------------------------


def test_ensure_connection_returns_self(conn: BrokerConnection, sleeps) -> None:
    assert conn.ensure_connection() is conn
    assert conn.connection is not None
    assert sleeps == []


def test_ensure_connection_retries_with_errback(conn, backend_cls, sleeps) -> None:
    errors = [OSError("refused"), FakeConnectionError("down"), TimeoutError("t")]
    backend_cls.failures = list(errors)
    calls: list[tuple[BaseException, float]] = []
    result = conn.ensure_connection(
        errback=lambda exc, interval: calls.append((exc, interval)),
        interval_start=0.01,
        interval_step=0.01,
    )
    assert result is conn
    assert [exc for exc, _ in calls] == errors
    assert [i for _, i in calls] == pytest.approx([0.01, 0.02, 0.03])
    assert sleeps == pytest.approx([0.01, 0.02, 0.03])
    assert conn.connection is backend_cls.opened[-1]


def test_ensure_connection_max_retries_reraises(conn, backend_cls, sleeps) -> None:
    backend_cls.failures = [OSError(f"refused {i}") for i in range(10)]
    calls: list[float] = []
    with pytest.raises(OSError, match="refused 3"):
        conn.ensure_connection(
            errback=lambda exc, interval: calls.append(interval),
            max_retries=3,
            interval_start=0.01,
            interval_step=0.01,
        )
    assert calls == pytest.approx([0.01, 0.02, 0.03])
    assert backend_cls.opened == []


def test_ensure_connection_interval_max(conn, backend_cls, sleeps) -> None:
    backend_cls.failures = [OSError() for _ in range(4)]
    conn.ensure_connection(interval_start=1, interval_step=1.5, interval_max=3)
    assert sleeps == [1, 2.5, 3, 3]


def test_ensure_connection_does_not_retry_other_errors(conn, backend_cls, sleeps) -> None:
    backend_cls.failures = [MissingConnectionSetting("hostname")]
    calls: list[object] = []
    with pytest.raises(KeyError):
        conn.ensure_connection(errback=lambda *a: calls.append(a), max_retries=5)
    assert calls == []


@pytest.mark.parametrize(
    "error",
    [
        AccessRefused("ACCESS_REFUSED - Login was refused", reply_code=403),
        NotAllowed("NOT_ALLOWED - vhost /nope not found", reply_code=530),
    ],
)
def test_ensure_connection_never_retries_a_refusal(error, sleeps) -> None:
    # A wrong password or an unknown virtual host: retrying cannot help.
    class RefusingBackend(AMQPBackend):
        attempts = 0

        def establish_connection(self):
            type(self).attempts += 1
            raise error

    conn = BrokerConnection("h", "u", "p", backend_cls=RefusingBackend)
    # A broker error the caller can catch, yet not one worth retrying.
    assert isinstance(error, conn.connection_errors + conn.channel_errors)
    calls: list[object] = []
    with pytest.raises(type(error)) as excinfo:
        conn.ensure_connection(errback=lambda *a: calls.append(a), max_retries=5)
    assert excinfo.value is error
    assert calls == []
    assert sleeps == []
    assert RefusingBackend.attempts == 1


# -- release and copy ----------------------------------------------------------


def test_release_without_pool(conn: BrokerConnection) -> None:
    with pytest.raises(NotImplementedError):
        conn.release()


def test_copy_has_the_same_settings(backend_cls) -> None:
    c = BrokerConnection(
        "h", "u", "p", "/v", 1234, insist=True, ssl=True, connect_timeout=7, backend_cls=backend_cls
    )
    c.connect()
    clone = copy.copy(c)
    assert clone is not c
    assert type(clone) is BrokerConnection
    assert clone.info() == c.info()
    assert clone.pool is c.pool
    assert clone._connection is None
    assert len(backend_cls.opened) == 1


def test_copy_of_a_subclass_keeps_the_class(backend_cls) -> None:
    class MyConnection(BrokerConnection):
        pass

    clone = copy.copy(MyConnection("h", backend_cls=backend_cls))
    assert type(clone) is MyConnection
    assert clone.hostname == "h"


# -- ConnectionPool --------------------------------------------------------------


class CountingConnection(BrokerConnection):
    copies = 0

    def __copy__(self):
        type(self).copies += 1
        return super().__copy__()


@pytest.fixture
def source(backend_cls) -> CountingConnection:
    cls = type("Counting", (CountingConnection,), {"copies": 0})
    return cls("h", "u", "p", backend_cls=backend_cls)


def test_pool_source_joins_and_min_minus_one_copies_up_front(source) -> None:
    pool = ConnectionPool(source, min=3)
    assert source.pool is pool
    assert type(source).copies == 2
    got = [pool.acquire() for _ in range(3)]
    assert type(source).copies == 2  # no new copies: three were ready
    assert source in got
    assert len({id(c) for c in got}) == 3
    assert all(c.pool is pool for c in got)
    assert all(c.hostname == "h" for c in got)


def test_pool_defaults_and_preload_false(source) -> None:
    pool = ConnectionPool(source)
    assert (pool.min, pool.max, pool.preload) == (2, None, True)
    assert type(source).copies == 1
    lazy_source = type(source)("h", backend_cls=source.backend_cls)
    ConnectionPool(lazy_source, min=5, preload=False)
    assert type(source).copies == 1


def test_pool_connections_connect_lazily(source, backend_cls) -> None:
    pool = ConnectionPool(source, min=4)
    pool.acquire()
    assert backend_cls.opened == []


def test_pool_max_none_is_unlimited(source) -> None:
    pool = ConnectionPool(source, min=1, max=None)
    got = [pool.acquire() for _ in range(50)]
    assert len({id(c) for c in got}) == 50


def test_pool_limit(source) -> None:
    pool = ConnectionPool(source, min=1, max=2)
    a = pool.acquire()
    pool.acquire()
    with pytest.raises(ConnectionLimitExceeded) as excinfo:
        pool.acquire()
    assert excinfo.value.limit == 2
    a.release()
    assert pool.acquire() is a


def test_pool_block_with_timeout_gives_up(source) -> None:
    pool = ConnectionPool(source, min=1, max=1)
    pool.acquire()
    with pytest.raises(ConnectionLimitExceeded):
        pool.acquire(block=True, timeout=0.05)


def test_pool_block_waits_for_a_release(source) -> None:
    pool = ConnectionPool(source, min=1, max=1)
    held = pool.acquire()
    got: list[BrokerConnection] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(block=True, timeout=30)))
    waiter.start()
    waiter.join(0.2)  # it must still be waiting: nothing was released
    assert waiter.is_alive()
    assert got == []
    pool.release(held)
    waiter.join(10)
    assert got == [held]


def test_pool_acquire_connect_timeout(source) -> None:
    pool = ConnectionPool(source, min=1)
    first = pool.acquire(connect_timeout=0.5)
    assert first.connect_timeout == 0.5
    assert pool.acquire().connect_timeout == 5  # another connection, untouched


def test_pool_rejects_a_max_below_one(source) -> None:
    with pytest.raises(ValueError, match="max"):
        ConnectionPool(source, max=0)


def test_pool_is_thread_safe(source) -> None:
    pool = ConnectionPool(source, min=2, max=4)
    lock = threading.Lock()
    out = 0
    most = 0
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal out, most
        try:
            for _ in range(200):
                conn = pool.acquire(block=True, timeout=30)
                with lock:
                    out += 1
                    most = max(most, out)
                with lock:
                    out -= 1
                conn.release()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert 1 <= most <= 4
    assert pool._total() <= 4


# -- Django settings (plain objects; the real django.conf.settings in test_django.py) --


def settings(**values: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(**values)


def test_get_django_conninfo_broker_settings() -> None:
    s = settings(
        BROKER_HOST="h",
        BROKER_PORT=1234,
        BROKER_USER="u",
        BROKER_PASSWORD="p",
        BROKER_VHOST="/v",
        CARROT_BACKEND="memory",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = get_django_conninfo(s)
    assert info == {
        "hostname": "h",
        "port": 1234,
        "userid": "u",
        "password": "p",
        "virtual_host": "/v",
        "backend_cls": "memory",
    }


def test_get_django_conninfo_empty() -> None:
    assert get_django_conninfo(settings()) == {"backend_cls": None}


def test_get_django_conninfo_amqp_fallback_warns_each() -> None:
    s = settings(AMQP_HOST="h", AMQP_PORT=1, AMQP_USER="u", AMQP_PASSWORD="p", AMQP_VHOST="/v")
    with pytest.warns(DeprecationWarning) as record:
        info = get_django_conninfo(s)
    assert info["hostname"] == "h"
    assert info["port"] == 1
    assert info["userid"] == "u"
    assert info["password"] == "p"
    assert info["virtual_host"] == "/v"
    texts = [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]
    assert len(texts) == 5
    for suffix in ("HOST", "PORT", "USER", "PASSWORD", "VHOST"):
        assert any(f"AMQP_{suffix}" in t and f"BROKER_{suffix}" in t for t in texts)


def test_get_django_conninfo_broker_wins_over_amqp() -> None:
    s = settings(BROKER_HOST="new", AMQP_HOST="old", AMQP_SERVER="older")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_django_conninfo(s)["hostname"] == "new"


def test_get_django_conninfo_amqp_server() -> None:
    with pytest.warns(DeprecationWarning, match="AMQP_SERVER"):
        info = get_django_conninfo(settings(AMQP_SERVER="srv"))
    assert info["hostname"] == "srv"


def test_django_connection_reads_settings() -> None:
    s = settings(BROKER_HOST="h", BROKER_USER="u", BROKER_PASSWORD="p", BROKER_PORT=99)
    c = DjangoBrokerConnection(settings=s)
    assert isinstance(c, BrokerConnection)
    assert DjangoAMQPConnection is DjangoBrokerConnection
    assert (c.hostname, c.userid, c.password, c.port, c.virtual_host) == ("h", "u", "p", 99, "/")
    assert c.get_backend_cls() is AMQPBackend


def test_django_connection_explicit_arguments_win(backend_cls) -> None:
    s = settings(
        BROKER_HOST="h",
        BROKER_USER="u",
        BROKER_PASSWORD="p",
        BROKER_VHOST="/v",
        BROKER_PORT=99,
        CARROT_BACKEND="no-such-backend",
    )
    c = DjangoBrokerConnection("mine", password="pw", backend_cls=backend_cls, settings=s)
    assert c.hostname == "mine"
    assert c.userid == "u"
    assert c.password == "pw"
    assert c.get_backend_cls() is backend_cls
    c = DjangoBrokerConnection("h2", "u2", "p2", "/v2", 7, settings=s, transport=backend_cls)
    assert (c.hostname, c.userid, c.password, c.virtual_host, c.port) == (
        "h2",
        "u2",
        "p2",
        "/v2",
        7,
    )
    assert c.get_backend_cls() is backend_cls


def test_django_connection_carrot_backend(backend_cls) -> None:
    c = DjangoBrokerConnection(settings=settings(BROKER_HOST="h", CARROT_BACKEND=backend_cls))
    assert c.get_backend_cls() is backend_cls


def test_django_connection_copy_keeps_its_settings(backend_cls) -> None:
    s = settings(BROKER_HOST="h", BROKER_USER="u", BROKER_PASSWORD="p", CARROT_BACKEND=backend_cls)
    c = DjangoBrokerConnection(settings=s)
    clone = copy.copy(c)
    assert type(clone) is DjangoBrokerConnection
    assert clone.info() == c.info()
    pool = ConnectionPool(c, min=2)
    assert all(conn.hostname == "h" for conn in (pool.acquire(), pool.acquire()))


def test_connect_replaces_a_lost_connection(conn: BrokerConnection, backend_cls) -> None:
    first = conn.connect()
    assert conn.connect() is first  # alive: kept
    first.connected = False  # what py-amqp sets when the socket fails
    backend_cls.close_raises = OSError("already dead")
    second = conn.connect()
    assert second is not first
    assert conn.connection is second
    assert backend_cls.opened == [first, second]


def test_ensure_connection_reconnects_a_lost_connection(conn, backend_cls, sleeps) -> None:
    first = conn.connect()
    first.connected = False
    backend_cls.failures = [OSError("broker still restarting")]
    calls: list[float] = []
    conn.ensure_connection(errback=lambda exc, interval: calls.append(interval))
    assert calls == [2]
    assert conn.connection is backend_cls.opened[-1]
    assert conn.connection is not first


def test_pool_limit_holds_with_more_idle_than_max(source) -> None:
    pool = ConnectionPool(source, min=5, max=2)
    pool.acquire()
    pool.acquire()
    with pytest.raises(ConnectionLimitExceeded):
        pool.acquire()


def test_backend_factory_is_used_as_is(backend_cls) -> None:
    # compat: carrot 0.10 used any non-string backend_cls without lookup.
    import functools

    factory = functools.partial(backend_cls, extra_options={"x": 1})
    conn = BrokerConnection("h", backend_cls=factory)
    assert conn.get_backend_cls() is factory
    backend = conn.create_backend()
    assert isinstance(backend, backend_cls)
    assert backend.extra_options == {"x": 1}
    assert conn.connection_errors == ()
    assert conn.connect() is backend_cls.opened[-1]


def test_pool_connection_closed_before_release_reconnects(source, backend_cls) -> None:
    pool = ConnectionPool(source, min=1, max=1)
    conn = pool.acquire()
    first = conn.connect()
    conn.close()
    conn.release()
    again = pool.acquire()
    assert again is conn
    assert again.connection is not None
    assert again.connection is not first
