"""What the stomp backend does on STOMP connections of their own: ``get``, purge, declare, bind.

STOMP has no ``basic.get``, no purge and no declarations, so
:mod:`carrot.backends.pystomp` emulates them with subscriptions on side
connections (:class:`SideConnections`), apart from the shared connection its
consumers use:

* a short subscription (then the connection closes) declares a queue or
  binds it, as RabbitMQ's STOMP plugin does on SUBSCRIBE; a message it
  delivers meanwhile goes back to the queue when the connection closes;
* ``get`` subscribes with ``prefetch-count: 1`` and keeps the connection
  until the message is settled, then keeps the subscription for the next
  ``get`` of that destination (the broker may already have sent it the next
  message); an empty ``get`` closes it;
* purging consumes with ``ack: auto`` until the queue stays quiet.

Not thread-safe: one backend, one thread (as the backend itself).
"""

from __future__ import annotations

import queue as queue_module
import time
from collections.abc import Callable
from typing import Any

from carrot.backends._stomp_subscriptions import Subscription, delivery_tag
from carrot.backends._stomp_wire import Connection

__all__ = ["SideConnections"]


class SideConnections:
    """The side connections of one stomp backend.

    :param connect: opens a new, connected :class:`Connection`.
    """

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self.connect = connect
        #: delivery_tag -> (destination, connection, subscription) of a
        #: ``get`` message not yet settled.
        self.unsettled: dict[str, tuple[str, Connection, Subscription]] = {}
        #: destination -> (connection, subscription) kept for the next ``get``.
        self.idle: dict[str, tuple[Connection, Subscription]] = {}

    def subscribe_briefly(self, destination: str, headers: dict[str, str]) -> None:
        """Subscribe on a connection of its own, then close it (declares or binds)."""
        conn = self.connect()
        try:
            conn.subscribe(destination, headers={"prefetch-count": "1", **headers}, buffered=True)
        finally:
            conn.close()

    def get(self, destination: str, headers: dict[str, str], timeout: float) -> Any | None:
        """One MESSAGE frame from ``destination``, or ``None`` after ``timeout`` seconds.

        The frame is unsettled until :meth:`settle` is called with its tag.
        """
        getter = self.idle.pop(destination, None)
        if getter is None or not getter[0].connected:
            conn = self.connect()
            try:
                sub = conn.subscribe(
                    destination, headers={**headers, "prefetch-count": "1"}, buffered=True
                )
            except BaseException:
                conn.close()
                raise
            getter = (conn, sub)
        conn, sub = getter
        assert sub.buffer is not None  # subscribed with buffered=True
        try:
            frame = sub.buffer.get(timeout=timeout)
        except queue_module.Empty:
            conn.close()
            return None
        self.unsettled[delivery_tag(frame)] = (destination, conn, sub)
        return frame

    def settle(self, tag: Any, requeue: bool | None) -> bool:
        """ACK/NACK a ``get`` message; False if ``tag`` is not one (a consumer's).

        :param requeue: ``None`` acks, ``True`` puts it back, ``False`` drops it.
        """
        # Hot path (every ack): one dict lookup for consumer deliveries.
        getter = self.unsettled.pop(tag, None)
        if getter is None:
            return False
        destination, conn, sub = getter
        try:
            conn.settle(tag, requeue)
        except BaseException:
            conn.close()
            raise
        if destination in self.idle:
            conn.close()
        else:
            self.idle[destination] = (conn, sub)
        return True

    def release(self, destination: str) -> None:
        """Close the kept ``get`` subscription of ``destination``; what it holds goes back."""
        idle = self.idle.pop(destination, None)
        if idle is not None:
            idle[0].close()

    def purge(
        self, destination: str, headers: dict[str, str], quiet_time: float, max_time: float
    ) -> int:
        """Consume ``destination`` (``ack: auto``) until ``quiet_time`` passes without a message.

        :returns: how many messages were removed (at most ``max_time`` seconds spent).
        """
        conn = self.connect()
        removed = 0
        try:
            sub = conn.subscribe(destination, ack="auto", headers=headers, buffered=True)
            assert sub.buffer is not None  # buffered=True
            deadline = time.monotonic() + max_time
            while time.monotonic() < deadline:
                try:
                    sub.buffer.get(timeout=quiet_time)
                except queue_module.Empty:
                    break
                removed += 1
        finally:
            conn.close()
        return removed

    def close(self) -> None:
        """Close every side connection; unsettled ``get`` messages go back to their queues."""
        unsettled, self.unsettled = self.unsettled, {}
        idle, self.idle = self.idle, {}
        for conn in {entry[1] for entry in unsettled.values()} | {
            entry[0] for entry in idle.values()
        }:
            conn.close()
