"""pika's blocking connection with the waiting calls carrot offers (the pika backend's wire side).

:class:`Connection` wraps a :class:`pika.BlockingConnection`: pika hands
deliveries over only while it does I/O, so they are queued here and
dispatched one per :meth:`Connection.drain_events`. Opening one is
:mod:`carrot.backends._pika_connect`'s job. Public names are re-exported by
:mod:`carrot.backends.pikachu`; importing this module needs no pika.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from itertools import count
from typing import Any

from carrot.backends._pika_message import RawMessage

__all__ = ["POLL_INTERVAL", "Connection"]

#: Seconds pika waits per round while :meth:`Connection.drain_events` has no
#: timeout, so a channel the broker closed is noticed (pika's
#: ``process_data_events`` does not report it; pika issue #1472).
POLL_INTERVAL = 1.0


class Connection:
    """A :class:`pika.BlockingConnection` with the waiting calls carrot offers.

    Consumer deliveries are queued here as pika hands them over and
    dispatched one per :meth:`drain_events`, so ``consume(limit=1)`` handles
    exactly one message even when pika read several at once.

    :param pika_connection: the open :class:`pika.BlockingConnection`.
    """

    def __init__(self, pika_connection: Any) -> None:
        #: The underlying :class:`pika.BlockingConnection`.
        self.pika_connection = pika_connection
        # (callback, RawMessage) of deliveries not dispatched yet, oldest first.
        self._ready: collections.deque[tuple[Callable[..., Any], RawMessage]] = collections.deque()
        # Channels with consumers, so a close by the broker is noticed.
        self._consuming: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pika open={self.is_open}>"

    @property
    def is_open(self) -> bool:
        """Whether the connection is open."""
        return bool(self.pika_connection.is_open)

    @property
    def connected(self) -> bool:
        """Alias of :attr:`is_open` (py-amqp's name, which BrokerConnection checks)."""
        return self.is_open

    @property
    def server_properties(self) -> dict[str, Any] | None:
        """The broker's properties (product, version, capabilities), if known."""
        # pika keeps them on its internal connection object only.
        impl = getattr(self.pika_connection, "_impl", None)
        return getattr(impl, "server_properties", None)

    def channel(self, channel_number: int | None = None) -> Any:
        """Open a new pika channel."""
        return self.pika_connection.channel(channel_number)

    def close(self) -> None:
        """Close the connection (nothing happens if it is closed already)."""
        self._ready.clear()
        self._consuming.clear()
        if self.pika_connection.is_open:
            self.pika_connection.close()

    def process_data_events(self, time_limit: float | None = 0) -> None:
        """Let pika do its I/O for up to ``time_limit`` seconds (returns, heartbeats)."""
        self.pika_connection.process_data_events(time_limit=time_limit)

    # -- deliveries --------------------------------------------------------

    def _deliver_later(self, callback: Any) -> Any:
        """A pika ``on_message_callback`` queueing deliveries for ``callback``."""
        ready = self._ready

        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            # Hot path: runs per delivery, inside pika's dispatch.
            ready.append((callback, RawMessage(channel, method, properties, body)))

        return on_message

    def _watch(self, channel: Any) -> None:
        self._consuming[id(channel)] = channel

    def _unwatch(self, channel: Any) -> None:
        self._consuming.pop(id(channel), None)

    def _take(self, channel: Any, consumer_tag: str | None = None) -> list[RawMessage]:
        """Remove and return the queued deliveries of ``channel`` (and ``consumer_tag``)."""
        ready = self._ready  # mutated in place: the pika callbacks hold it
        taken, kept = [], []
        for entry in ready:
            raw = entry[1]
            if raw.channel is channel and (
                consumer_tag is None or raw.method.consumer_tag == consumer_tag
            ):
                taken.append(raw)
            else:
                kept.append(entry)
        ready.clear()
        ready.extend(kept)
        return taken

    def _check_channels(self) -> None:
        for key, channel in list(self._consuming.items()):
            if channel.is_closed:
                del self._consuming[key]
                reason = getattr(channel, "_closing_reason", None)  # pika keeps it there
                if isinstance(reason, BaseException):
                    raise reason
                from pika.exceptions import ChannelClosed

                raise ChannelClosed(-1, "channel closed")

    def _wait(self, timeout: float | None, channel: Any = None) -> bool:
        """Do I/O until a delivery is queued; False when ``channel`` is closed first.

        :raises socket.timeout: nothing arrived within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in count():
            if self._ready:
                return True
            self._check_channels()  # a consuming channel the broker closed raises
            if channel is not None and not channel.is_open:
                return False  # closed by us
            if deadline is None:
                limit = POLL_INTERVAL
            else:
                limit = deadline - time.monotonic()
                if limit <= 0:
                    raise TimeoutError("timed out")  # socket.timeout is TimeoutError
            self.pika_connection.process_data_events(time_limit=min(limit, POLL_INTERVAL))
        return False  # pragma: no cover -- count() never ends

    def drain_events(self, allowed_methods: Any = None, timeout: float | None = None) -> Any:
        """Wait for one delivery on any channel and dispatch it to its consumer's callback.

        :keyword allowed_methods: accepted for compatibility and ignored.
        :keyword timeout: seconds to wait; :exc:`socket.timeout` when it passes.
        :raises pika.exceptions.ChannelClosed: a consuming channel was closed
            by the broker while waiting.
        """
        # Hot path: one call per delivered message.
        if not self._ready:
            self._wait(timeout)
        callback, raw = self._ready.popleft()
        return callback(raw)

    def wait_multi(
        self, channels: Any, allowed_methods: Any = None, timeout: float | None = None
    ) -> Any:
        """Wait until a delivery for one of ``channels`` is dispatched.

        Deliveries for other channels that come first are dispatched too.

        :keyword allowed_methods: accepted for compatibility and ignored.
        :keyword timeout: seconds to wait; :exc:`socket.timeout` when it passes.
        """
        wanted = {id(channel) for channel in channels}
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in count():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._ready:
                self._wait(remaining)
            callback, raw = self._ready.popleft()
            result = callback(raw)
            if id(raw.channel) in wanted:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")  # socket.timeout is TimeoutError
        return None  # pragma: no cover -- count() never ends

    def forget_channel(self, channel: Any) -> None:
        """Stop watching ``channel``; its queued deliveries died with it.

        (The broker requeues the unacknowledged ones.)
        """
        self._unwatch(channel)
        self._take(channel)

    def consumer_cancelled(self, channel: Any, method: Any) -> None:
        """The broker cancelled a consumer: the next dispatch raises ``ConsumerCancelled``.

        After the deliveries queued before the cancel, as py-amqp does.
        """
        tag = method.consumer_tag

        def raise_cancelled(raw_message: Any) -> None:
            from pika.exceptions import ConsumerCancelled

            raise ConsumerCancelled(f"the broker cancelled consumer {tag!r}")

        self._ready.append((raise_cancelled, RawMessage(channel, method, None, b"")))

    def cancel_consumer(self, channel: Any, consumer_tag: str, no_ack_callback: Any = None) -> None:
        """Cancel ``consumer_tag`` on ``channel``, settling what reached us but no callback.

        Those deliveries go back on the queue, except for a ``no_ack``
        consumer (``no_ack_callback`` given): the broker no longer holds
        them, so they still go to the callback, as pika itself does.
        """
        pending = self._take(channel, consumer_tag)
        if no_ack_callback is not None:
            self._ready.extend((no_ack_callback, raw) for raw in pending)
        else:
            for raw in pending:
                delivery_tag = getattr(raw.method, "delivery_tag", None)
                if delivery_tag is not None:  # not the broker's Basic.Cancel
                    channel.basic_reject(delivery_tag, requeue=True)
        left = channel.basic_cancel(consumer_tag)
        if no_ack_callback is not None and left:
            self._ready.extend(
                (no_ack_callback, RawMessage(channel, *message_tuple)) for message_tuple in left
            )

    def _dispatch_one(self, channel: Any) -> bool:
        """Dispatch one delivery (waiting for it); False once ``channel`` is closed."""
        if not self._ready and not self._wait(None, channel):
            return False
        callback, raw = self._ready.popleft()
        callback(raw)
        return True
