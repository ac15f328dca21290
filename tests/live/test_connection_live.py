"""carrot.connection against the local RabbitMQ."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import amqp
import pytest
from amqp.exceptions import AccessRefused, NotAllowed

from carrot.backends.pyamqplib import Backend
from carrot.connection import BrokerConnection, ConnectionPool

pytestmark = pytest.mark.rabbitmq


def drain_until(conn: BrokerConnection, predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Dispatch events until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"condition not met within {timeout} s")
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=min(remaining, 1.0))


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A local port that accepts TCP connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for sock in accepted:
            sock.close()
        server.close()


def run_with_deadline(fun: Callable[[], object], deadline: float = 30) -> BaseException | None:
    """Run ``fun`` in a thread; return what it raised (None if it returned)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fun()
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    assert not thread.is_alive(), f"still running after {deadline} s"
    return outcome[0]


# -- connect, close, with ----------------------------------------------------------


def test_connect_and_close(amqp_connection: BrokerConnection) -> None:
    client = amqp_connection.connect()
    assert isinstance(client, amqp.Connection)
    assert client.connected
    assert amqp_connection.connection is client
    assert amqp_connection._closed is False
    amqp_connection.close()
    assert amqp_connection._closed is True
    assert amqp_connection.connection is None
    assert not client.connected


def test_connect_again_after_close(amqp_connection: BrokerConnection) -> None:
    first = amqp_connection.connect()
    amqp_connection.close()
    second = amqp_connection.connect()
    assert second is not first
    assert second.connected


def test_with_closes(amqp_conninfo) -> None:
    with BrokerConnection(**amqp_conninfo) as conn:
        client = conn.connection
        assert client.connected
    assert not client.connected
    assert conn._closed is True


def test_with_lets_the_original_exception_through(amqp_conninfo) -> None:
    original = RuntimeError("raised in the block")
    with pytest.raises(RuntimeError) as excinfo, BrokerConnection(**amqp_conninfo) as conn:
        client = conn.connection
        # The socket dies under us; closing must not replace our exception.
        client.transport.sock.shutdown(socket.SHUT_RDWR)
        raise original
    assert excinfo.value is original
    assert conn._closed is True


def test_close_after_the_socket_died(amqp_connection: BrokerConnection) -> None:
    client = amqp_connection.connect()
    client.transport.sock.shutdown(socket.SHUT_RDWR)
    amqp_connection.close()
    assert amqp_connection._closed is True


def test_info_of_a_live_connection(amqp_connection: BrokerConnection) -> None:
    amqp_connection.connect()
    info = amqp_connection.info()
    assert info["hostname"] == "127.0.0.1"
    assert info["port"] == 5672
    assert info["userid"] == "guest"
    assert info["virtual_host"] == "/"
    assert info["backend_cls"] == "amqplib"
    assert info["connect_timeout"] == 5


def test_default_port_is_used(amqp_conninfo) -> None:
    conninfo = dict(amqp_conninfo, port=None)
    with BrokerConnection(**conninfo) as conn:
        assert conn.connection.connected
        assert conn.host == "127.0.0.1:5672"


def test_get_channel(amqp_connection: BrokerConnection, unique, amqp_cleanup) -> None:
    ch1 = amqp_connection.get_channel()
    ch2 = amqp_connection.get_channel()
    assert isinstance(ch1, amqp.Channel)
    assert ch1.is_open
    assert ch1.channel_id != ch2.channel_id
    name, count, _ = ch1.queue_declare(amqp_cleanup.queue(unique), auto_delete=True)
    assert name == unique
    assert count == 0
    ch1.close()
    ch2.close()


def test_channel_is_a_backend(amqp_connection: BrokerConnection) -> None:
    backend = amqp_connection.channel()
    assert isinstance(backend, Backend)
    assert backend.channel.is_open
    backend.close()


# -- drain_events --------------------------------------------------------------------


def test_drain_events_times_out(amqp_connection: BrokerConnection) -> None:
    amqp_connection.connect()
    with pytest.raises(socket.timeout):
        amqp_connection.drain_events(timeout=0.1)
    # The connection is still usable afterwards.
    assert amqp_connection.get_channel().is_open


def test_drain_events_dispatches_a_delivery(amqp_connection, unique, amqp_cleanup) -> None:
    backend = amqp_connection.create_backend()
    backend.queue_declare(amqp_cleanup.queue(unique), False, False, True)
    got: list[amqp.Message] = []
    backend.declare_consumer(unique, True, got.append, "ctag-" + unique)
    backend.publish(backend.prepare_message(b"ping", 1), "", unique)
    drain_until(amqp_connection, lambda: bool(got))
    assert got[0].body == b"ping"
    backend.close()


# -- ensure_connection -----------------------------------------------------------------


def test_ensure_connection_connects(amqp_connection: BrokerConnection) -> None:
    calls: list[object] = []
    assert amqp_connection.ensure_connection(errback=lambda *a: calls.append(a)) is amqp_connection
    assert calls == []
    assert amqp_connection.connection.connected


def test_ensure_connection_against_a_closed_port(closed_port: int) -> None:
    conn = BrokerConnection("127.0.0.1", "guest", "guest", port=closed_port, connect_timeout=2)
    calls: list[tuple[BaseException, float]] = []
    with pytest.raises(conn.connection_errors) as excinfo:
        conn.ensure_connection(
            errback=lambda exc, interval: calls.append((exc, interval)),
            max_retries=3,
            interval_start=0.01,
            interval_step=0.01,
        )
    assert isinstance(excinfo.value, OSError)
    assert len(calls) == 3
    assert [interval for _, interval in calls] == pytest.approx([0.01, 0.02, 0.03])
    assert all(isinstance(exc, conn.connection_errors) for exc, _ in calls)
    conn.close()


def test_wrong_password_is_refused_and_not_retried(amqp_conninfo) -> None:
    conn = BrokerConnection(**dict(amqp_conninfo, password="not-the-password"))
    calls: list[object] = []
    with pytest.raises(AccessRefused):
        conn.ensure_connection(errback=lambda *a: calls.append(a), max_retries=3)
    assert calls == []
    conn.close()


def test_unknown_vhost_is_not_allowed_and_not_retried(amqp_conninfo, unique) -> None:
    conn = BrokerConnection(**dict(amqp_conninfo, virtual_host="/" + unique))
    calls: list[object] = []
    with pytest.raises(NotAllowed):
        conn.ensure_connection(errback=lambda *a: calls.append(a), max_retries=3)
    assert calls == []
    conn.close()


def test_nothing_listening_is_a_connection_error(closed_port: int) -> None:
    conn = BrokerConnection("127.0.0.1", "guest", "guest", port=closed_port)
    with pytest.raises(conn.connection_errors):
        conn.connect()
    assert conn._connection is None


def test_unresolvable_host_is_a_connection_error() -> None:
    conn = BrokerConnection("no-such-host.invalid", "guest", "guest", connect_timeout=5)
    error = run_with_deadline(conn.connect)
    assert isinstance(error, conn.connection_errors)


def test_connect_timeout_covers_a_silent_server(silent_server: int) -> None:
    # TCP connects, but the AMQP handshake never starts: connect() must give up.
    conn = BrokerConnection("127.0.0.1", "guest", "guest", port=silent_server, connect_timeout=0.5)
    error = run_with_deadline(conn.connect)
    assert isinstance(error, conn.connection_errors)
    assert conn._connection is None


def test_ensure_connection_retries_a_silent_server(silent_server: int) -> None:
    conn = BrokerConnection("127.0.0.1", "guest", "guest", port=silent_server, connect_timeout=0.2)
    calls: list[object] = []

    def ensure() -> None:
        conn.ensure_connection(
            errback=lambda *a: calls.append(a), max_retries=2, interval_start=0.01
        )

    error = run_with_deadline(ensure)
    assert isinstance(error, conn.connection_errors)
    assert len(calls) == 2


# -- ConnectionPool ------------------------------------------------------------------------


def test_pool_from_eight_threads(amqp_conninfo, unique, amqp_cleanup) -> None:
    source = BrokerConnection(**amqp_conninfo)
    pool = ConnectionPool(source, min=2, max=4)
    lock = threading.Lock()
    out = 0
    most = 0
    seen: set[BrokerConnection] = set()
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        nonlocal out, most
        try:
            conn = pool.acquire(block=True, timeout=60)
            with lock:
                out += 1
                most = max(most, out)
                seen.add(conn)
            try:
                # A real round trip: declare, publish, get it back.
                backend = conn.create_backend()
                queue = amqp_cleanup.queue(f"{unique}.{n}")
                backend.queue_declare(queue, False, False, False)
                backend.publish(backend.prepare_message(b"from %d" % n, 1), "", queue)
                message = None
                deadline = time.monotonic() + 10
                while message is None and time.monotonic() < deadline:
                    message = backend.get(queue, no_ack=True)
                results[n] = message.body
                backend.close()
            finally:
                with lock:
                    out -= 1
                conn.release()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert results == {n: b"from %d" % n for n in range(8)}
        assert 1 <= most <= 4
        assert len(seen) <= 4
    finally:
        for conn in seen | {source}:
            conn.close()


def test_ensure_connection_replaces_a_lost_connection(
    amqp_connection, unique, amqp_cleanup
) -> None:
    lost = amqp_connection.connect()
    lost.transport.sock.shutdown(socket.SHUT_RDWR)  # the network drops us
    with pytest.raises(amqp_connection.connection_errors):
        amqp_connection.drain_events(timeout=5)
    assert not lost.connected
    calls: list[object] = []
    amqp_connection.ensure_connection(errback=lambda *a: calls.append(a), max_retries=3)
    assert calls == []
    fresh = amqp_connection.connection
    assert fresh is not lost
    assert fresh.connected
    channel = amqp_connection.get_channel()
    assert channel.queue_declare(amqp_cleanup.queue(unique), auto_delete=True)[0] == unique
    channel.close()
