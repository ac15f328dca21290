"""carrot's additions to py-amqp's objects, through py-amqp's public API only.

* :class:`PlainConnection`: the connection with carrot's keywords and
  ``connection.blocked`` tracking; the base of the fast
  :class:`~.connection.Connection`, and the whole backend connection when
  :mod:`.seam` turned the fast path off.
* :class:`WaitMulti`: carrot 0.10's ``wait_multi``, for any of them.
* :class:`OutgoingMessage`: a message to publish whose ``delivery_tag`` may
  be set.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import time
from typing import Any

import amqp

from carrot._tls import TLSSettings
from carrot.backends._amqp import seam
from carrot.connection import DEFAULT_MAX_BODY_SIZE, _check_max_body_size

__all__ = ["OutgoingMessage", "PlainConnection", "WaitMulti"]


class PlainConnection(amqp.Connection):
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
        super().__init__(*args, **kwargs)

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
        return super().connect(callback)

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
        """
        return super().drain_events(timeout=timeout)


class WaitMulti:
    """carrot 0.10's ``wait_multi`` for a py-amqp connection class (a mixin).

    It learns the channel of each dispatched method from py-amqp's
    ``on_inbound_method`` and, on the fast path, from the connection's
    ``delivery_observer``.
    """

    #: The channel of the last method dispatched (for :meth:`wait_multi`).
    _last_channel_id: int | None = None

    def on_inbound_method(
        self, channel_id: int, method_sig: Any, payload: Any, content: Any
    ) -> Any:
        self._last_channel_id = channel_id
        return super().on_inbound_method(channel_id, method_sig, payload, content)

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


class OutgoingMessage(amqp.Message):
    """An :class:`amqp.Message` to publish whose ``delivery_tag`` may be set."""

    __slots__ = ()

    @property
    def delivery_tag(self) -> Any:
        """The delivery tag (carrot 0.10's tests set it on messages they build)."""
        return (self.delivery_info or {}).get("delivery_tag")

    @delivery_tag.setter
    def delivery_tag(self, value: Any) -> None:
        # compat: py-amqp 5 made delivery_tag read-only; carrot callers set it.
        self.delivery_info = {**(self.delivery_info or {}), "delivery_tag": value}
