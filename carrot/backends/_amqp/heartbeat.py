"""AMQP heartbeats for the py-amqp connection: one thread sends them and watches for a silent peer.

py-amqp negotiates heartbeats but leaves sending and checking them to the
application (``heartbeat_tick``, called from the thread that reads). That
thread is often elsewhere: blocked in a ``recv`` that a silent peer never
ends, or busy in a callback while the broker waits for a sign of life.
:class:`HeartbeatMonitor` runs beside the application, one daemon thread
per connection (named ``carrot-heartbeat-<host>``), and every
:attr:`~HeartbeatMonitor.tick` seconds (``min(N / 4, MAX_TICK)``, ``N`` the
heartbeat) it does two jobs:

**Send.** When nothing was written for ``N / 2`` seconds (the connection's
``bytes_sent`` counter, which every frame write moves, did not change) it
writes a heartbeat frame under the connection's write lock, so it never
cuts into another thread's frame. It must never block itself: it takes
the write lock only if it is free (``acquire(blocking=False)``; a writer
holding it is traffic, or stuck, which the watch below handles) and
writes only when ``poll`` says the socket is writable (8 bytes then fit in
the send buffer).

**Watch.** The peer is heard from when the connection's ``bytes_recv``
counter moves (every frame read bumps it, on the fast path and py-amqp's)
or when the number of unread bytes waiting in the socket changes (``FIONREAD``):
the second covers an application busy outside carrot, whose broker's
heartbeats pile up unread. The hot paths pay nothing for this: both
counters existed before, and the monitor only samples them. After more
than ``2 * N`` seconds without hearing from the peer:

* no unread bytes: any thread reading waits for bytes that are not coming;
  the peer is lost;
* unread bytes waiting: nobody is reading (a reader would have taken
  them), so nobody waits on the peer's silence, unless a write is stuck:
  the peer is lost too when nothing could be written (no heartbeat, no
  frame) for ``2 * N`` seconds; otherwise the connection is left alone
  (its bytes are read, and its silence measured afresh, when the
  application comes back).

A lost peer: the monitor records why (:attr:`PlainConnection.heartbeat_lost
<carrot.backends._amqp.plain.PlainConnection.heartbeat_lost>`), marks the
transport disconnected, logs a WARNING on ``carrot.connection`` and shuts
the socket down (``shutdown(SHUT_RDWR)``, the TCP socket's own, below any
TLS layer). A ``recv`` or ``send`` blocked in another thread returns at
once, and the connection raises
:exc:`amqp.exceptions.ConnectionForced` (a connection error) from
``drain_events``, or the write's :exc:`OSError`. Detection comes at most
``2 * N`` seconds plus two ticks after the last byte the peer sent.

Heartbeats are negotiated in whole seconds (``connection.tune`` carries a
short): :func:`wire_heartbeat` rounds a fraction up, and the monitor works
with the smaller of the value asked for and the one negotiated.

Life cycle: the connection starts a monitor after each handshake and stops
it (joined, bounded by :data:`JOIN_TIMEOUT`) in ``collect()``, before the
socket is closed, so the monitor never touches a closed descriptor. The
monitor also ends by itself when its transport is disconnected or the
connection is garbage (it holds only a weak reference).

TLS: the monitor writes while another thread may be blocked reading the
same :class:`ssl.SSLSocket`, as a publishing thread already may on the fast
path (see :mod:`.connection`); OpenSSL does not promise that concurrent
``SSL_read``/``SSL_write`` are safe, though they work in practice while no
renegotiation or key update happens (RabbitMQ starts neither).

=====================  ======================================================
state                  guard
=====================  ======================================================
:class:`Watch`         the monitor thread only
``stopping`` (Event)   set by any thread (``stop()``), read by the monitor
``bytes_recv``,        the connection's counters, read here without a lock:
``bytes_sent``         a stale value only delays a decision by one tick
connection writes      ``write_lock`` (taken without blocking)
``heartbeat_lost``,    written once by the monitor before the shutdown;
``transport.connected``  single values read by the application's threads
=====================  ======================================================
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import select
import socket
import ssl
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carrot.backends._amqp import seam

try:
    import fcntl
    import termios

    _FIONREAD: int | None = termios.FIONREAD
except ImportError:  # not POSIX: a readable socket counts as one byte waiting
    fcntl = None  # type: ignore[assignment]
    _FIONREAD = None

__all__ = [
    "HEARTBEAT_FRAME",
    "JOIN_TIMEOUT",
    "MAX_TICK",
    "HeartbeatMonitor",
    "SocketProbe",
    "Watch",
    "shutdown_socket",
    "wire_heartbeat",
]

logger = logging.getLogger("carrot.connection")

#: An AMQP heartbeat frame: type 8, channel 0, no payload, frame end.
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
#: The longest pause between two looks at the connection, in seconds.
MAX_TICK = 0.25
#: Seconds ``stop()`` waits for the monitor thread to end.
JOIN_TIMEOUT = 2.0
#: The largest heartbeat ``connection.tune-ok`` can carry (an unsigned short).
_WIRE_MAX = 65535


def wire_heartbeat(seconds: float | None) -> int:
    """The whole seconds to propose to the broker for a heartbeat of ``seconds`` (0: off)."""
    if not seconds:
        return 0
    return min(_WIRE_MAX, math.ceil(seconds))


@dataclass(slots=True)
class Watch:
    """What one monitor knows of its connection's traffic, and what it concludes (no I/O).

    :param interval: the heartbeat, in seconds.
    :param now: the clock's time at the start.

    Counters are compared with what the previous look saw; a change is
    traffic, dated at the look that saw it.
    """

    interval: float
    now: float
    #: When the peer was last heard from (bytes read, or unread bytes arriving).
    heard_at: float = 0.0
    #: When something was last written (a frame by the application, a heartbeat here).
    sent_at: float = 0.0
    recv_seen: int | None = None
    sent_seen: int | None = None
    pending_seen: int = 0

    def __post_init__(self) -> None:
        self.heard_at = self.sent_at = self.now

    def observe(self, now: float, recv_count: int, pending: int, sent_count: int) -> None:
        """Take one look: the connection's counters and the unread bytes waiting.

        The first look only learns the counters' values.
        """
        first = self.recv_seen is None
        if (recv_count != self.recv_seen or pending != self.pending_seen) and not first:
            self.heard_at = now
        if sent_count != self.sent_seen and not first:
            self.sent_at = now
        self.recv_seen, self.pending_seen, self.sent_seen = recv_count, pending, sent_count
        self.now = now

    def heartbeat_due(self) -> bool:
        """Whether nothing was written for half the heartbeat."""
        return self.now - self.sent_at >= self.interval / 2

    def heartbeat_sent(self) -> None:
        """A heartbeat frame was written at the last look."""
        self.sent_at = self.now

    def silence(self) -> float:
        """Seconds since the peer was last heard from."""
        return self.now - self.heard_at

    def peer_lost(self) -> bool:
        """Whether to give the peer up (the rule in the module docstring)."""
        limit = 2 * self.interval
        if self.now - self.heard_at <= limit:
            return False
        return self.pending_seen == 0 or self.now - self.sent_at > limit


class SocketProbe:
    """The monitor's only contact with the socket: three calls that never block.

    The unit tests replace it with a fake.
    """

    __slots__ = ("_poller", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._poller: Any = None

    def pending(self) -> int:
        """Bytes received and not read yet."""
        if _FIONREAD is not None:
            buf = fcntl.ioctl(self._sock.fileno(), _FIONREAD, b"\0\0\0\0")
            return int(struct.unpack("i", buf)[0])
        return 1 if select.select([self._sock], [], [], 0)[0] else 0

    def writable(self) -> bool:
        """Whether a small write would not block."""
        if not hasattr(select, "poll"):
            return bool(select.select([], [self._sock], [], 0)[1])
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._sock, select.POLLOUT)
        return any(event & select.POLLOUT for _, event in self._poller.poll(0))

    def shutdown(self) -> None:
        """Shut the TCP connection down both ways; blocked reads and writes return."""
        shutdown_socket(self._sock)


def shutdown_socket(sock: Any) -> None:
    """``sock.shutdown(SHUT_RDWR)``, errors ignored; under TLS, the TCP socket's own.

    (:meth:`ssl.SSLSocket.shutdown` would also drop its SSL object under a
    thread that may be reading through it.)
    """
    with contextlib.suppress(OSError):
        if isinstance(sock, ssl.SSLSocket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)


class HeartbeatMonitor:
    """Sends heartbeats and gives up a silent peer, for one connection's transport.

    :param connection: the py-amqp connection (a :class:`~.plain.PlainConnection`):
        ``write_lock``, ``bytes_recv``, ``bytes_sent``, ``heartbeat_lost``.
    :param transport: its connected transport.
    :param interval: the heartbeat in seconds (> 0).
    :keyword clock: the time source (the unit tests pass a fake).
    :keyword probe: builds the :class:`SocketProbe` for the transport's socket.
    """

    def __init__(
        self,
        connection: Any,
        transport: Any,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[Any], Any] = SocketProbe,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0, not {interval!r}")
        self._connection = weakref.ref(connection)
        self.transport = transport
        self.interval = interval
        #: Seconds between two looks.
        self.tick = min(interval / 4, MAX_TICK)
        self.clock = clock
        self.probe = probe(seam.transport_socket(transport))
        self.watch = Watch(interval, clock())
        self.stopping = threading.Event()
        name = getattr(connection, "host", None) or hex(id(connection))
        self.thread = threading.Thread(
            target=self._run, name=f"carrot-heartbeat-{name}", daemon=True
        )

    def start(self) -> HeartbeatMonitor:
        """Start the thread; returns the monitor."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end and wait for it (bounded; not from the thread itself)."""
        self.stopping.set()
        thread = self.thread
        if thread.ident is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)

    def _run(self) -> None:
        try:
            while not self.stopping.wait(self.tick):
                if not self.check():
                    return
        except Exception:
            logger.exception("heartbeat monitor failed; heartbeats stop on this connection")

    def check(self) -> bool:
        """One look at the connection: send, give up, or nothing. False: the monitor is done."""
        connection = self._connection()
        transport = self.transport
        if connection is None or not transport.connected or self.stopping.is_set():
            return False
        watch = self.watch
        watch.observe(
            self.clock(), connection.bytes_recv, self.probe.pending(), connection.bytes_sent
        )
        if watch.peer_lost():
            self._give_up(connection)
            return False
        if watch.heartbeat_due():
            return self._send(connection)
        return True

    def _send(self, connection: Any) -> bool:
        lock = connection.write_lock
        if not lock.acquire(blocking=False):
            return True  # a write is under way: traffic, or stuck (the watch decides)
        try:
            if not self.probe.writable():
                return True
            self.transport.write(HEARTBEAT_FRAME)
        except OSError as exc:
            # The transport marked itself disconnected (unless the error was
            # a would-block one): whoever uses the connection next finds out.
            return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
        finally:
            lock.release()
        self.watch.heartbeat_sent()
        return True

    def _give_up(self, connection: Any) -> None:
        watch = self.watch
        reason = (
            f"no data from the broker for {watch.silence():.1f} s "
            f"(heartbeat {self.interval:g} s): connection lost"
        )
        connection.heartbeat_lost = reason
        self.transport.connected = False
        logger.warning("%s: %s; closing the socket", getattr(connection, "host", "?"), reason)
        self.probe.shutdown()
