"""The pika backend's channel: opening it, the broker's returns and cancels, confirms, closing.

:class:`ChannelBackend` is the base of :class:`carrot.backends.pikachu.Backend`:
it keeps the one pika channel the backend works on, registers the
callbacks pika calls when the broker returns a message or cancels a
consumer, puts the channel in confirm mode and settles confirmed publishes,
and closes the channel. Declaring, consuming and publishing are the
backend's own. One thread per connection: pika's blocking connection is
not thread-safe, so nothing here takes a lock.
"""

from __future__ import annotations

import logging
from typing import Any

from carrot.backends._pika_connection import Connection
from carrot.backends._pika_message import RawMessage
from carrot.backends.base import (
    BaseBackend,
    ChannelDeclareMixin,
    ChannelSettleMixin,
    FlowByCancelMixin,
    import_client,
)

__all__ = ["ChannelBackend"]

logger = logging.getLogger("carrot.backends.pikachu")


class ChannelBackend(ChannelDeclareMixin, FlowByCancelMixin, ChannelSettleMixin, BaseBackend):
    """The channel side of the pika backend (see the module docstring)."""

    #: The open pika channel, or None before the first use and after :meth:`close`.
    _channel: Any = None
    #: The publisher's :class:`~carrot.confirms.ConfirmWindow` once
    #: :meth:`confirm_select` was called, else None.
    _confirms: Any = None

    @property
    def _conn(self) -> Connection:
        # no-any-return: the base returns Any (each backend has its own connection).
        return self._established()  # type: ignore[no-any-return]

    @property
    def channel(self) -> Any:
        """The raw pika channel, opened on first use (and after a close by the broker)."""
        channel = self._channel
        if channel is None or not channel.is_open:
            if channel is not None:
                self._forget_channel(channel)
            channel = self._channel = self._conn.channel()
            channel.add_on_return_callback(self._on_return)
            channel.add_on_cancel_callback(self._on_cancel)
            if self._confirms is not None:
                # Numbering starts again on a new channel.
                self._confirms.reset()
                channel.confirm_delivery()
        return channel

    # -- publisher confirms --------------------------------------------------

    def confirm_select(self, window: Any) -> None:
        """Put the channel in confirm mode (pika's ``confirm_delivery``).

        pika's blocking channel waits for each message's confirm inside
        ``basic_publish``, so every :meth:`publish` is settled in ``window``
        when it returns, whatever ``max_unconfirmed`` says.

        .. versionadded:: 0.11
        """
        channel = self._channel
        self._confirms = window
        if channel is not None and channel.is_open:
            window.reset()
            channel.confirm_delivery()
        else:
            _ = self.channel  # opens one; the property puts it in confirm mode

    def drain_confirms(self, timeout: float) -> None:
        """Read what the broker sent; :meth:`publish` already settled each message.

        .. versionadded:: 0.11
        """
        self._conn.drain_events(timeout=timeout)

    def _publish_confirmed(
        self,
        confirms: Any,
        exchange: str,
        routing_key: str,
        body: Any,
        properties: Any,
        mandatory: bool,
    ) -> None:
        # publish() in confirm mode: pika waits for the broker's ack or nack
        # inside basic_publish and raises for a nack or a returned message.
        channel = self.channel
        seq = confirms.last_seq
        exceptions = import_client("pika.exceptions", "pika")
        try:
            channel.basic_publish(
                exchange=exchange,
                routing_key=routing_key,
                body=body,
                properties=properties,
                mandatory=mandatory,
            )
        except exceptions.NackError:
            confirms.nacked(seq)
        except exceptions.UnroutableError as exc:
            for returned in exc.messages:
                confirms.returned(
                    exchange,
                    routing_key,
                    returned.body,
                    returned.method.reply_code,
                    returned.method.reply_text,
                )
            confirms.acked(seq)
        else:
            confirms.acked(seq)

    # -- the broker's callbacks ----------------------------------------------

    def _forget_channel(self, channel: Any) -> None:
        conn = self.connection.connection
        if conn is not None:
            conn.forget_channel(channel)
        self.forget_consumers()

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        raw = RawMessage(channel, method, properties, body)
        self.record_return(
            method.reply_code, method.reply_text, method.exchange, method.routing_key, raw
        )

    def _on_cancel(self, method_frame: Any) -> None:
        # The broker cancelled a consumer (its queue was deleted, say). As
        # with py-amqp, the next drain_events/consume raises ConsumerCancelled
        # (after the deliveries that came before the cancel).
        tag = method_frame.method.consumer_tag
        logger.warning("consumer %r cancelled by the broker", tag)
        self.forget_consumer(tag)
        self._conn.consumer_cancelled(self._channel, method_frame.method)

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Close the channel (the connection stays open)."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        # Its consumers end with it; flow(True) must not restart them elsewhere.
        self._forget_channel(channel)
        if channel.is_open:
            try:
                channel.close()
            except (*self.connection_errors, *self.channel_errors):
                pass

    def collect_returns(self) -> None:
        """Wait for the broker's answer on :attr:`channel`, then let pika hand returns over."""
        super().collect_returns()
        self._conn.process_data_events(time_limit=0)
