"""The fault proxy itself (tests/faultproxy.py): in front of an echo server, then RabbitMQ."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import amqp
import pytest
from faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(30)


class EchoServer:
    """A loopback server echoing what each connection sends (one thread per connection)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        with conn:
            while not self.stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(data)
                except OSError:  # the proxy reset the connection
                    return

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", echo.port)) as proxy:
        yield proxy


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=2)
    sock.settimeout(2)
    return sock


def round_trip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_forwards(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock, b"hello" * 1000) == b"hello" * 1000
    assert proxy.accepted == 1


def test_cut_resets_every_connection(proxy):
    socks = [connect(proxy) for _ in range(3)]
    for sock in socks:
        assert round_trip(sock) == b"ping"
    assert proxy.cut() == 3
    for sock in socks:
        with pytest.raises(ConnectionResetError), sock:
            round_trip(sock)
    with connect(proxy) as sock:  # new connections still work
        assert round_trip(sock) == b"ping"


def test_blackhole_is_silence_not_a_reset(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"
        sock.settimeout(0.5)
        with proxy.blackholed():
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                round_trip(sock)
            assert time.monotonic() - started >= 0.45
        # Healed: what was held back arrives, the connection lives on.
        sock.settimeout(2)
        assert sock.recv(4) == b"ping"
        assert round_trip(sock, b"again") == b"again"


def test_refuse_for_a_while_then_listen_again(proxy):
    with connect(proxy) as sock:
        proxy.refuse(0.5)
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        assert round_trip(sock) == b"ping"  # open connections are not touched
    deadline = time.monotonic() + 5
    while True:
        try:
            sock = connect(proxy)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the proxy never listened again"
            time.sleep(0.02)
        else:
            break
    with sock:
        assert round_trip(sock) == b"ping"


def test_refusing_block_and_restart(proxy):
    with proxy.refusing(), pytest.raises(ConnectionRefusedError):
        connect(proxy)
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"
        proxy.restart()
        with pytest.raises(ConnectionResetError):
            round_trip(sock)
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
    proxy.allow()
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"


def test_cut_after_n_bytes(proxy):
    proxy.cut_after(10)
    with connect(proxy) as sock:
        sock.sendall(b"abc")
        assert sock.recv(3) == b"abc"  # 6 bytes carried
        sock.sendall(b"defgh")  # 4 more pass, then the reset
        received = b""
        with pytest.raises(ConnectionResetError):
            while True:
                chunk = sock.recv(10)
                if not chunk:
                    raise ConnectionResetError("closed")
                received += chunk
        assert len(received) <= 4
    proxy.cut_after(None)
    with connect(proxy) as sock:
        assert round_trip(sock, b"x" * 100) == b"x" * 100


def test_only_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("192.0.2.1", 5672))


# -- in front of RabbitMQ ---------------------------------------------------------


@pytest.fixture
def rabbit_proxy() -> Iterator[FaultProxy]:
    with FaultProxy() as proxy:
        yield proxy


@pytest.mark.rabbitmq
def test_amqp_through_the_proxy_then_cut(rabbit_proxy):
    conn = amqp.Connection(f"127.0.0.1:{rabbit_proxy.port}", "guest", "guest", connect_timeout=5)
    conn.connect()
    try:
        assert conn.server_properties["product"]
        rabbit_proxy.cut()
        with pytest.raises(amqp.Connection.connection_errors):
            ch = conn.channel()
            ch.queue_declare("", exclusive=True)
    finally:
        conn.collect()


@pytest.mark.rabbitmq
def test_amqp_connect_refused_while_refusing(rabbit_proxy):
    with rabbit_proxy.refusing():
        conn = amqp.Connection(
            f"127.0.0.1:{rabbit_proxy.port}", "guest", "guest", connect_timeout=2
        )
        with pytest.raises(ConnectionRefusedError):
            conn.connect()
