"""The py-amqp backend's channel, and what the broker answers a publisher on it.

:class:`ChannelOwner` is the part of :class:`carrot.backends.pyamqplib.Backend`
that holds its channel: opened on first use and again after a close, and
watched: ``basic.return`` goes to :meth:`~.BaseBackend.record_return` (and to
the confirm window, which fails the publish it belongs to), and once
:meth:`~ChannelOwner.confirm_select` was called every channel is put in
confirm mode, its ``basic.ack``/``basic.nack`` feeding the
:class:`~carrot.confirms.ConfirmWindow`. The fast connection parses those
confirms in place (:mod:`.inbound`); plain py-amqp calls the same window
through its channel events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import amqp

from carrot.confirms import ConfirmWindow

__all__ = ["ChannelOwner"]


class ChannelOwner:
    """The channel of a py-amqp backend, with its returns and publisher confirms.

    A mixin of :class:`~carrot.backends.base.BaseBackend` subclasses (before
    ``BaseBackend`` in the bases): it uses the backend's ``_established()``
    and ``record_return()``.
    """

    _established: Callable[[], Any]
    record_return: Callable[..., None]

    #: The channel open now, or ``None``.
    _channel: Any = None
    _confirms: ConfirmWindow | None = None

    @property
    def channel(self) -> amqp.Channel:
        """The raw py-amqp channel, opened on first use (and after a close)."""
        channel = self._channel
        if channel is None or not channel.is_open or channel.connection is None:
            channel = self._channel = self._established().channel()
            channel.events["basic_return"].add(self._on_return)
            if self._confirms is not None:
                self._select_confirms(channel, self._confirms)
        return channel

    def confirm_select(self, window: ConfirmWindow) -> None:
        """Put the channel in confirm mode; the broker's answers go to ``window``.

        A channel opened later (after a close) is put in confirm mode too.

        .. versionadded:: 0.11
        """
        channel = self._channel
        self._confirms = window
        if channel is not None and channel.is_open and channel.connection is not None:
            self._select_confirms(channel, window)
        else:
            _ = self.channel  # opens one; the property puts it in confirm mode

    @staticmethod
    def _select_confirms(channel: amqp.Channel, window: ConfirmWindow) -> None:
        # What an earlier channel left unconfirmed can't be confirmed on
        # this one: the numbering starts again at 1.
        window.reset()
        channel.confirm_select()
        channel.events["basic_ack"].add(window.acked)
        channel.events["basic_nack"].add(window.nacked)
        if hasattr(channel, "confirm_window"):
            # The fast connection parses the confirms in place for it.
            channel.confirm_window = window

    def drain_confirms(self, timeout: float) -> None:
        """Read and dispatch what the broker sent, for up to ``timeout`` seconds.

        .. versionadded:: 0.11
        """
        self._established().drain_events(timeout=timeout)

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        self.record_return(exc.reply_code, exc.reply_text, exchange, routing_key, message)
        if self._confirms is not None:
            self._confirms.returned(
                exchange, routing_key, message.body, exc.reply_code, exc.reply_text
            )
