"""carrot's additions to py-amqp's objects, through py-amqp's public API only.

* :class:`PlainConnection`: the connection with carrot's keywords,
  ``connection.blocked`` tracking, heartbeats (:mod:`.heartbeat`) and a
  close that never hangs; the base of the fast
  :class:`~.connection.Connection`, and the whole backend connection when
  :mod:`.seam` turned the fast path off.
* :class:`WaitMulti`: carrot 0.10's ``wait_multi``, for any of them.
* :class:`OutgoingMessage`: a message to publish whose ``delivery_tag`` may
  be set.
"""

from __future__ import annotations

import contextlib
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import amqp
from amqp import spec
from amqp.exceptions import ConnectionForced

from carrot._tls import TLSSettings
from carrot.backends._amqp import seam
from carrot.backends._amqp.heartbeat import HeartbeatMonitor, shutdown_socket, wire_heartbeat
from carrot.connection import DEFAULT_MAX_BODY_SIZE, _check_max_body_size

__all__ = [
    "CLOSE_TIMEOUT",
    "OutgoingMessage",
    "PlainConnection",
    "WaitMulti",
    "bounded_waits",
]

#: Seconds :meth:`PlainConnection.close` waits for ``close-ok`` when the
#: connection has no ``connect_timeout``.
CLOSE_TIMEOUT = 5.0


def _nothing() -> None:
    pass


# misc (here and below): py-amqp is untyped, so its classes are Any to mypy.
class PlainConnection(amqp.Connection):  # type: ignore[misc]
    """py-amqp's connection with carrot's additions and none of the fast paths.

    :keyword socket_settings: as py-amqp's; ``TCP_USER_TIMEOUT`` defaults
        to 0 (the system's) instead of py-amqp's 1 second, which kills a
        publisher whose writes the broker throttles.
    :keyword ssl: as py-amqp's, a ready :class:`ssl.SSLContext`, or a
        ``carrot._tls.TLSSettings`` (context and server host name).
    :keyword max_body_size: the largest message body accepted, in bytes
        (default 512 MiB, RabbitMQ's own limit): a content header announcing
        more fails at once with :exc:`amqp.exceptions.FrameError` (AMQP error
        501), before any of the body is read. Enforced by the fast path
        (:class:`~.connection.Connection`); plain py-amqp has no such limit.
    :keyword read_timeout: seconds a read from the socket may wait for the
        first byte of a frame (``SO_RCVTIMEO``; ``None``: no limit), as
        py-amqp: a wait that passes it raises :exc:`socket.timeout`.
    :keyword heartbeat: seconds, ``0`` for none; proposed to the broker in
        whole seconds (rounded up), then sent and watched by a
        :class:`~.heartbeat.HeartbeatMonitor` thread.

    Every frame is written under :attr:`write_lock` (the heartbeat thread
    writes too). :meth:`close` waits for ``close-ok`` at most
    ``connect_timeout`` seconds (:data:`CLOSE_TIMEOUT` when that is
    ``None``), then drops the socket.
    """

    #: The largest message body accepted (see the ``max_body_size`` keyword).
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    #: Whether channels may publish through ``write_publish`` (the fast path).
    fast_path = False
    #: Seconds a socket read may wait for a frame (``None``: no limit).
    read_timeout: float | None = None
    #: True between the broker's ``connection.blocked`` and ``connection.unblocked``.
    is_blocked = False
    #: The reason the broker gave for blocking (``None`` when not blocked).
    blocked_reason: str | None = None
    #: The reason parsed from the last ``connection.blocked`` frame read.
    _wire_blocked_reason: str | None = None
    _user_on_blocked: Any = None
    _user_on_unblocked: Any = None
    #: The heartbeat asked for, in seconds (``heartbeat`` is the one negotiated).
    heartbeat_requested = 0.0
    #: The thread sending and watching heartbeats (``None`` when off or closed).
    heartbeat_monitor: HeartbeatMonitor | None = None
    #: Why the heartbeat monitor gave the peer up (``None`` while it has not).
    heartbeat_lost: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = dict(kwargs.get("socket_settings") or {})
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            settings.setdefault(socket.TCP_USER_TIMEOUT, 0)
        kwargs["socket_settings"] = settings
        self.max_body_size = _check_max_body_size(
            kwargs.pop("max_body_size", DEFAULT_MAX_BODY_SIZE)
        )
        self.is_blocked = False
        self.blocked_reason = None
        self.heartbeat_requested = float(kwargs.get("heartbeat") or 0)
        kwargs["heartbeat"] = wire_heartbeat(self.heartbeat_requested)
        if "frame_writer" not in kwargs:
            #: Held around every frame written (py-amqp's writer is wrapped).
            self.write_lock = threading.Lock()
            kwargs["frame_writer"] = self._locked_frame_writer
        super().__init__(*args, **kwargs)

    def _locked_frame_writer(self, connection: Any, transport: Any) -> Any:
        return seam.guarded_frame_writer(connection, transport, self.write_lock, _nothing)

    # py-amqp calls self.on_blocked(reason) / self.on_unblocked(): track the
    # state there, and still call what the application set.
    @property
    def on_blocked(self) -> Any:
        return self._notify_blocked

    @on_blocked.setter
    def on_blocked(self, callback: Any) -> None:
        self._user_on_blocked = callback

    @property
    def on_unblocked(self) -> Any:
        return self._notify_unblocked

    @on_unblocked.setter
    def on_unblocked(self, callback: Any) -> None:
        self._user_on_unblocked = callback

    def _notify_blocked(self, reason: str | None = None) -> Any:
        self.is_blocked = True
        self.blocked_reason = self._wire_blocked_reason or reason
        if self._user_on_blocked is not None:
            return self._user_on_blocked(self.blocked_reason)
        return None

    def _notify_unblocked(self) -> Any:
        self.is_blocked = False
        self.blocked_reason = None
        if self._user_on_unblocked is not None:
            return self._user_on_unblocked()
        return None

    def connect(self, callback: Any = None) -> Any:
        if not self.connected:
            self.is_blocked = False
            self.blocked_reason = self._wire_blocked_reason = None
            self.heartbeat_lost = None
        result = super().connect(callback)
        self._start_heartbeats()
        return result

    # -- heartbeats ---------------------------------------------------------------

    def _start_heartbeats(self) -> None:
        """Start a monitor for this transport when a heartbeat was negotiated."""
        monitor = self.heartbeat_monitor
        transport = self.transport
        if monitor is not None and monitor.transport is transport:
            return
        if monitor is not None:
            monitor.stop()
            self.heartbeat_monitor = None
        negotiated = self.heartbeat or 0
        if negotiated and self.heartbeat_requested:
            interval = min(negotiated, self.heartbeat_requested)
            self.heartbeat_monitor = HeartbeatMonitor(self, transport, interval).start()

    def collect(self) -> None:
        # The monitor ends before the socket closes: it never touches a
        # closed (maybe reused) descriptor.
        monitor, self.heartbeat_monitor = self.heartbeat_monitor, None
        if monitor is not None:
            monitor.stop()
        super().collect()

    def _lost(self, exc: BaseException) -> BaseException | None:
        """The error to raise for ``exc`` when the heartbeat monitor gave the peer up."""
        if self.heartbeat_lost is not None and isinstance(exc, OSError):
            # no-any-return: py-amqp's exception classes are untyped.
            return ConnectionForced(self.heartbeat_lost)  # type: ignore[no-any-return]
        return None

    # -- closing ------------------------------------------------------------------

    def close(
        self,
        reply_code: int = 0,
        reply_text: str = "",
        method_sig: Any = (0, 0),
        argsig: str = "BsBB",
    ) -> None:
        """Close the connection: ``connection.close``, then wait for ``close-ok``.

        The wait, and the write before it, last at most ``connect_timeout``
        seconds (:data:`CLOSE_TIMEOUT` when that is ``None``); then the
        socket is shut down and closed and :exc:`socket.timeout` raised. A
        connection already known to be broken is collected at once.

        .. versionchanged:: 0.11
           Bounded; py-amqp (and carrot 0.10) waited for ``close-ok`` for ever.
        """
        transport = seam.current_transport(self)
        if transport is None:
            return  # already closed
        if not transport.connected:
            self.collect()
            return
        timeout = self.connect_timeout or CLOSE_TIMEOUT
        deadline = time.monotonic() + timeout
        self.is_closing = True
        try:
            self._before_close(deadline)
            if not self.write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"close: the write lock stayed busy for {timeout:g} s")
            self.write_lock.release()  # (the frame writer takes it again)
            with seam.having_timeout(transport, max(0.001, deadline - time.monotonic())):
                self.send_method(
                    spec.Connection.Close,
                    argsig,
                    (reply_code, reply_text, method_sig[0], method_sig[1]),
                )
            # close-ok collects the connection (_on_close_ok), which ends the loop.
            while seam.current_transport(self) is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no close-ok from the broker within {timeout:g} s")
                self.drain_events(timeout=remaining)
        except (OSError, ssl_module.SSLError):
            self._drop()
            raise
        finally:
            self.is_closing = False

    def _before_close(self, deadline: float) -> None:
        """Hook: what must be written before ``connection.close`` (by ``deadline``)."""

    def _drop(self) -> None:
        """Shut the socket down (waking any thread blocked on it), then collect."""
        transport = seam.current_transport(self)
        sock = None if transport is None else seam.transport_socket(transport)
        if sock is not None:
            shutdown_socket(sock)
        self.collect()

    def Transport(  # noqa: N802 -- py-amqp's method name
        self,
        host: str,
        connect_timeout: Any,
        ssl: Any = False,
        read_timeout: Any = None,
        write_timeout: Any = None,
        socket_settings: Any = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.update(
            read_timeout=read_timeout, write_timeout=write_timeout, socket_settings=socket_settings
        )
        if isinstance(ssl, ssl_module.SSLContext):
            ssl = TLSSettings(ssl, None)
        if isinstance(ssl, TLSSettings):
            return seam.SeamSSLTransport(host, connect_timeout=connect_timeout, ssl=ssl, **kwargs)
        return super().Transport(host, connect_timeout, ssl=ssl, **kwargs)

    def drain_events(self, allowed_methods: Any = None, timeout: float | None = None) -> Any:
        """Wait for one method on any channel and dispatch it.

        :keyword allowed_methods: accepted for compatibility and ignored:
            py-amqp must dispatch every frame in the order it arrives.
        :keyword timeout: seconds to wait; :exc:`socket.timeout` when it passes.
        :raises amqp.exceptions.ConnectionForced: the heartbeat monitor gave
            the silent peer up.
        """
        try:
            return super().drain_events(timeout=timeout)
        except OSError as exc:
            lost = self._lost(exc)
            if lost is not None:
                raise lost from exc
            raise


@contextlib.contextmanager
def bounded_waits(connection: Any, timeout: float) -> Iterator[None]:
    """Within the block, every wait on ``connection``'s socket lasts at most ``timeout`` seconds.

    A read or write that passes it raises :exc:`socket.timeout`. (The
    socket's own timeout: py-amqp's waits without one leave it alone.)
    For teardown round trips (``basic.cancel``, ``channel.close``), which
    must not hang on a silent broker even without heartbeats.
    """
    transport = seam.current_transport(connection)
    if transport is None:
        yield
        return
    with seam.having_timeout(transport, timeout):
        yield


class WaitMulti:
    """carrot 0.10's ``wait_multi`` for a py-amqp connection class (a mixin).

    It learns the channel of each dispatched method from py-amqp's
    ``on_inbound_method`` and, on the fast path, from the connection's
    ``delivery_observer``.
    """

    #: The channel of the last method dispatched (for :meth:`wait_multi`).
    _last_channel_id: int | None = None

    if TYPE_CHECKING:
        # What the host class (a py-amqp connection) provides.
        delivery_observer: Callable[[int], None] | None

        def drain_events(self, timeout: float | None = None) -> Any: ...

    def on_inbound_method(
        self, channel_id: int, method_sig: Any, payload: Any, content: Any
    ) -> Any:
        self._last_channel_id = channel_id
        # misc: the host class (py-amqp's Connection, after this mixin) defines it.
        return super().on_inbound_method(  # type: ignore[misc]
            channel_id, method_sig, payload, content
        )

    def _note_delivery(self, channel_id: int) -> None:
        self._last_channel_id = channel_id

    def wait_multi(
        self, channels: Any, allowed_methods: Any = None, timeout: float | None = None
    ) -> Any:
        """Wait until a method arrives for one of ``channels``, dispatching it.

        Methods for other channels that arrive first are dispatched too.

        :keyword timeout: seconds to wait; :exc:`socket.timeout` when it passes.
        """
        wanted = {channel.channel_id for channel in channels}
        deadline = None if timeout is None else time.monotonic() + timeout
        self.delivery_observer = self._note_delivery
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._last_channel_id = None
                result = self.drain_events(timeout=remaining)
                if self._last_channel_id in wanted:
                    return result
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("timed out")  # socket.timeout is TimeoutError
        finally:
            self.delivery_observer = None


class OutgoingMessage(amqp.Message):  # type: ignore[misc]  # misc: as PlainConnection
    """An :class:`amqp.Message` to publish whose ``delivery_tag`` may be set."""

    __slots__ = ()

    if TYPE_CHECKING:
        delivery_info: dict[str, Any] | None  # amqp.Message's

    @property
    def delivery_tag(self) -> Any:
        """The delivery tag (carrot 0.10's tests set it on messages they build)."""
        return (self.delivery_info or {}).get("delivery_tag")

    @delivery_tag.setter
    def delivery_tag(self, value: Any) -> None:
        # compat: py-amqp 5 made delivery_tag read-only; carrot callers set it.
        # misc: a slot of amqp.Message, which mypy cannot see (py-amqp is untyped).
        self.delivery_info = {**(self.delivery_info or {}), "delivery_tag": value}  # type: ignore[misc]
