"""A loopback TCP proxy that breaks connections on demand, for fault tests.

It listens on ``127.0.0.1`` (a free port unless one is given) and forwards
each connection to ``target`` (RabbitMQ on ``127.0.0.1:5672`` by default).
Faults, each one call:

* :meth:`FaultProxy.cut`: reset every open connection (TCP RST, both sides);
* :meth:`FaultProxy.blackhole`: stop forwarding but keep the sockets open, a
  peer that goes silent (no RST, no FIN); :meth:`FaultProxy.heal` ends it;
* :meth:`FaultProxy.refuse`: close the listening socket, so new connections
  are refused (``ECONNREFUSED``), for some seconds or until :meth:`allow`;
  :meth:`FaultProxy.restart` is a broker restart: cut, then refuse;
* :meth:`FaultProxy.cut_after`: reset each connection once it has carried
  N bytes (both directions counted), until set back to ``None``.

Use it as a context manager::

    with FaultProxy() as proxy:
        conn = BrokerConnection(proxy.url())
        ...
        proxy.cut()

Threads: one accepts, one per connection forwards. Every wait has a timeout
(:data:`POLL` seconds) and every loop ends when the proxy stops;
:meth:`FaultProxy.stop` joins each thread for at most :data:`JOIN_TIMEOUT`.
Only loopback addresses are accepted, for the listener and the target.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator

__all__ = ["FaultProxy"]

#: Seconds each blocking call waits before looking at the proxy's state again.
POLL = 0.02
#: Seconds :meth:`FaultProxy.stop` (and each fault) waits for a thread.
JOIN_TIMEOUT = 5.0
#: Seconds a forwarded write may block (the receiver not reading) before the link is reset.
SEND_TIMEOUT = 5.0


def _check_loopback(host: str) -> None:
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise ValueError(f"the fault proxy works on loopback addresses only, not {host!r}")


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0) instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Link:
    """One proxied connection: a client socket, its upstream socket and a thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        #: Bytes forwarded, both directions.
        self.carried = 0
        #: Set (from any thread) to make the link's thread reset both sockets.
        self.doomed = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="faultproxy-link", daemon=True)

    def _run(self) -> None:
        try:
            self._forward()
        except OSError:
            pass
        finally:
            _reset(self.client)
            if self.upstream is not None:
                _reset(self.upstream)
            self.done.set()
            self.proxy._forget(self)

    def _forward(self) -> None:
        proxy = self.proxy
        self.upstream = socket.create_connection(proxy.target, timeout=JOIN_TIMEOUT)
        self.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for sock in (self.client, self.upstream):
            sock.settimeout(SEND_TIMEOUT)
        peer = {self.client: self.upstream, self.upstream: self.client}
        with selectors.DefaultSelector() as selector:
            selector.register(self.client, selectors.EVENT_READ)
            selector.register(self.upstream, selectors.EVENT_READ)
            while not (self.doomed.is_set() or proxy._stopping.is_set()):
                if proxy._blackholed.is_set():
                    # Read nothing, write nothing: the bytes wait in the
                    # kernel's buffers and each side hears silence.
                    self.doomed.wait(POLL)
                    continue
                for key, _ in selector.select(POLL):
                    source = key.fileobj
                    data = source.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return  # one side closed: close the other (RST)
                    limit = proxy._cut_after
                    if limit is not None and self.carried + len(data) >= limit:
                        peer[source].sendall(data[: max(0, limit - self.carried)])  # type: ignore[index]
                        self.carried = limit
                        return
                    peer[source].sendall(data)  # type: ignore[index]
                    self.carried += len(data)


class FaultProxy:
    """A loopback TCP proxy to ``target`` with faults on demand (see the module docstring).

    :param target: ``(host, port)`` to forward to, a loopback address.
    :param port: the port to listen on; ``0`` picks a free one.
    """

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672), port: int = 0) -> None:
        _check_loopback(target[0])
        self.target = target
        self.host = "127.0.0.1"
        self.port = port
        #: Connections accepted so far.
        self.accepted = 0
        #: When the proxy last started listening (:func:`time.monotonic`).
        self.listening_since = 0.0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._blackholed = threading.Event()
        self._cut_after: int | None = None
        self._refuse_until: float | None = None
        self._listening = threading.Event()
        self._not_listening = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen and start forwarding; returns the proxy."""
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and reset every connection; waits for the threads (bounded)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
        for link in self.links():
            link.thread.join(JOIN_TIMEOUT)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, scheme: str = "amqp", login: str = "guest:guest", path: str = "//") -> str:
        """A broker URL through the proxy, e.g. ``amqp://guest:guest@127.0.0.1:PORT//``."""
        return f"{scheme}://{login}@{self.host}:{self.port}{path}"

    def links(self) -> list[_Link]:
        """The connections open now."""
        with self._lock:
            return list(self._links)

    # -- faults ---------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection (RST to both sides); returns how many."""
        links = self.links()
        for link in links:
            link.doomed.set()
        for link in links:
            link.done.wait(JOIN_TIMEOUT)
        return len(links)

    def blackhole(self) -> None:
        """Stop forwarding on every connection, old and new; the sockets stay open."""
        self._blackholed.set()

    def heal(self) -> None:
        """Forward again after :meth:`blackhole`."""
        self._blackholed.clear()

    def refuse(self, seconds: float | None = None) -> None:
        """Close the listening socket: new connections are refused.

        :param seconds: listen again after this long; ``None``: until :meth:`allow`.
        """
        self._listening.clear()
        self._refuse_until = float("inf") if seconds is None else time.monotonic() + seconds
        if not self._not_listening.wait(JOIN_TIMEOUT):
            raise RuntimeError("the fault proxy did not stop listening")

    def wait_listening(self, timeout: float = JOIN_TIMEOUT) -> bool:
        """Wait until the proxy listens (again, after :meth:`refuse`); false on timeout."""
        return self._listening.wait(timeout)

    def allow(self) -> None:
        """Accept connections again (ends :meth:`refuse` now); waits until listening."""
        self._not_listening.clear()
        self._refuse_until = None
        if not self._listening.wait(JOIN_TIMEOUT):
            raise RuntimeError(f"the fault proxy could not listen on port {self.port} again")

    def restart(self, seconds: float | None = None) -> None:
        """A broker restart: refuse new connections, then cut the open ones."""
        self.refuse(seconds)
        self.cut()

    def cut_after(self, nbytes: int | None) -> None:
        """Reset each connection once it has carried ``nbytes`` (``None``: no limit)."""
        self._cut_after = nbytes

    @contextlib.contextmanager
    def blackholed(self) -> Iterator[FaultProxy]:
        """:meth:`blackhole` for the ``with`` block."""
        self.blackhole()
        try:
            yield self
        finally:
            self.heal()

    @contextlib.contextmanager
    def refusing(self) -> Iterator[FaultProxy]:
        """:meth:`refuse` for the ``with`` block."""
        self.refuse()
        try:
            yield self
        finally:
            self.allow()

    # -- threads --------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(POLL)
        self.port = listener.getsockname()[1]
        self.listening_since = time.monotonic()
        self._listener = listener
        self._not_listening.clear()
        self._listening.set()

    def _stop_listening(self) -> None:
        if self._listener is not None:
            _reset(self._listener)
            self._listener = None
        self._not_listening.set()

    def _accept_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                refuse_until = self._refuse_until
                if refuse_until is not None:
                    if self._listener is not None:
                        self._stop_listening()
                    if time.monotonic() < refuse_until:
                        self._stopping.wait(POLL)
                        continue
                    self._refuse_until = None
                if self._listener is None:
                    try:
                        self._listen()
                    except OSError:  # the port is not free yet: look again
                        self._stopping.wait(POLL)
                    continue
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                link = _Link(self, client)
                with self._lock:
                    self.accepted += 1
                    self._links.add(link)
                link.thread.start()
        finally:
            self._stop_listening()
            self.cut()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
