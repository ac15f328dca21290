"""The receiving half of the stomp backend: its :class:`Message`, consumers, ``get``, settling.

:class:`StompConsuming` holds :class:`carrot.backends.pystomp.Backend`'s
methods that take messages from the broker: subscribing consumers and
draining their deliveries, ``get`` and ``queue_purge`` (emulated on side
connections by :class:`~carrot.backends._stomp_side.SideConnections`),
and ACK/NACK of what was received. :class:`Message` turns a MESSAGE frame
into carrot's message. Both are used through
:mod:`carrot.backends.pystomp`, which re-exports :class:`Message` and
whose module docstring tells how ``get`` and purging behave.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from carrot.backends._stomp_destinations import destination_info
from carrot.backends._stomp_subscriptions import delivery_tag
from carrot.backends.base import BaseBackend, BaseMessage, ConsumerCallback, FlowByCancelMixin

if TYPE_CHECKING:
    from carrot.backends._stomp_destinations import KnownQueues
    from carrot.backends._stomp_side import SideConnections
    from carrot.backends._stomp_subscriptions import Subscription
    from carrot.backends._stomp_wire import Connection

__all__ = ["Message", "StompConsuming"]

#: Headers of a MESSAGE frame that are STOMP's or map to message fields,
#: not application headers.
_TRANSPORT_HEADERS = frozenset(
    [
        "destination",
        "message-id",
        "subscription",
        "ack",
        "content-type",
        "content-encoding",
        "content-length",
        "redelivered",
        "persistent",
        "priority",
    ]
)


class Message(BaseMessage):
    """A message received over STOMP.

    :param backend: the :class:`Backend` that received it.
    :param frame: stomp.py's MESSAGE frame (``body``, ``headers``).
    :keyword consumer_tag: the consumer it was delivered to, if any.

    .. attribute:: properties

       ``delivery_mode`` (2 when the ``persistent`` header is ``true``) and
       ``priority``.

    .. attribute:: headers

       The application headers (the frame's headers, STOMP's own removed).
    """

    def __init__(self, backend: BaseBackend, frame: Any, **kwargs: Any) -> None:
        #: The stomp.py frame this was made from.
        self._frame = frame
        headers = frame.headers
        exchange, routing_key = destination_info(headers.get("destination"))
        tag = delivery_tag(frame)
        body = frame.body
        kwargs.setdefault("body", body if body is not None else b"")
        kwargs.setdefault("delivery_tag", tag)
        kwargs.setdefault("content_type", headers.get("content-type"))
        kwargs.setdefault("content_encoding", headers.get("content-encoding"))
        info = {
            "exchange": exchange,
            "routing_key": routing_key,
            "redelivered": headers.get("redelivered") == "true",
            "delivery_tag": tag,
        }
        consumer_tag = kwargs.pop("consumer_tag", None)
        if consumer_tag is not None:
            info["consumer_tag"] = consumer_tag
        kwargs.setdefault("delivery_info", info)
        super().__init__(backend, **kwargs)
        priority = headers.get("priority")
        self.properties: dict[str, Any] = {
            "delivery_mode": 2 if headers.get("persistent") == "true" else 1,
        }
        if priority is not None and priority.isdigit():
            self.properties["priority"] = int(priority)
        self.headers: dict[str, str] = {
            key: value for key, value in headers.items() if key not in _TRANSPORT_HEADERS
        }


#: The message class, for annotations inside :class:`StompConsuming` (whose
#: ``Message`` attribute shadows the name there).
_Message = Message


class StompConsuming(FlowByCancelMixin, BaseBackend):
    """The stomp backend's consumers, ``get``, purge and settling (a part of its ``Backend``)."""

    # Set by carrot.backends.pystomp.Backend (its class attributes and __init__).
    Message: type[_Message]
    get_timeout: float
    purge_quiet_time: float
    purge_max_time: float
    prefetch_count: int
    _subscriptions: dict[str, Subscription]
    _queues: KnownQueues
    _side: SideConnections

    if TYPE_CHECKING:

        @property
        def channel(self) -> Connection: ...

    def get(self, queue: str, no_ack: bool = False) -> _Message | None:
        """Take one message from ``queue``, or ``None`` after :attr:`get_timeout` seconds.

        Emulated with a subscription (``prefetch-count: 1``) on a connection
        of its own, kept open until the message is settled. After that, the
        subscription stays for the next ``get`` of the queue: the broker may
        already have sent it the next message, which stays there (unseen by
        other consumers) until that ``get``, or goes back to the queue when
        the backend closes. An empty queue closes it.
        """
        frame = self._side.get(*self._queues.destination(queue), self.get_timeout)
        if frame is None:
            return None
        message = self.Message(self, frame)
        if no_ack:
            self._settle(message.delivery_tag, None)
        return message

    def declare_consumer(
        self,
        queue: str,
        no_ack: bool,
        callback: ConsumerCallback,
        consumer_tag: str,
        nowait: bool = False,
        **kwargs: Any,
    ) -> str:
        """Subscribe to ``queue``; ``callback(frame)`` per delivery, from :meth:`consume`.

        Other keywords are accepted and ignored, as carrot 0.10 did.
        """
        destination, headers = self._queues.destination(queue)
        self._side.release(destination)  # a message a get() holds goes back, to this consumer
        if self.prefetch_count and not no_ack:
            headers["prefetch-count"] = str(self.prefetch_count)
        self._subscriptions[consumer_tag] = self.channel.subscribe(
            destination,
            ack="auto" if no_ack else "client-individual",
            headers=headers,
            callback=callback,
            consumer_tag=consumer_tag,
        )
        self.remember_consumer(consumer_tag, queue, no_ack, callback)
        return consumer_tag

    def consume(self, limit: int | None = None) -> Iterator[bool]:
        """Dispatch deliveries to the consumers' callbacks, yielding after each.

        Stops after ``limit`` deliveries, or once this backend has no
        consumers or the connection is closed.
        """
        for total in itertools.count():
            if limit and total >= limit:
                return
            conn = self.connection.connection
            if not self._subscriptions or conn is None or not conn.connected:
                return
            conn.drain_events()
            yield True

    def drain_events(self, timeout: float | None = None) -> None:
        """Deliver one message to a consumer of any backend of this connection."""
        self.channel.drain_events(timeout=timeout)

    def cancel(self, consumer_tag: str) -> None:
        """Stop the consumer ``consumer_tag``."""
        if self.forget_consumer(consumer_tag):
            return  # flow(False) unsubscribed it; flow(True) must not start it again
        sub = self._subscriptions.pop(consumer_tag, None)
        conn = self.connection.connection
        if sub is not None and conn is not None and conn.connected:
            conn.cancel(sub)

    def message_to_python(self, raw_message: Any) -> _Message:
        """Wrap a stomp.py MESSAGE frame in a :class:`Message`."""
        # Hot path (every delivery).
        conn = self.connection.connection
        sub = None
        if conn is not None:
            sub = conn._subscriptions.by_id.get(raw_message.headers.get("subscription", ""))
        tag = sub.consumer_tag if sub is not None else None
        return self.Message(self, raw_message, consumer_tag=tag)

    def _settle(self, delivery_tag: Any, requeue: bool | None) -> None:
        # Hot path (every ack): one dict lookup for consumer deliveries.
        if not self._side.settle(delivery_tag, requeue):
            self.channel.settle(delivery_tag, requeue)

    def ack(self, frame: Any) -> None:
        """Acknowledge a delivery (ACK).

        :param frame: the delivery tag, or (as carrot 0.10 took it) the
            MESSAGE frame itself.
        """
        if getattr(frame, "headers", None) is not None:
            frame = delivery_tag(frame)
        self._settle(frame, None)

    def reject(self, delivery_tag: Any) -> None:
        """Reject a delivery; the broker drops or dead-letters it (NACK, ``requeue: false``)."""
        self._settle(delivery_tag, False)

    def requeue(self, delivery_tag: Any) -> None:
        """Put a delivery back on its queue (NACK, ``requeue: true``)."""
        self._settle(delivery_tag, True)

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        """Drain ``queue`` (``ack: auto``); return how many messages were removed."""
        destination, headers = self._queues.destination(queue)
        return self._side.purge(destination, headers, self.purge_quiet_time, self.purge_max_time)

    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> None:
        """Send ``prefetch-count`` on subscriptions made from now on."""
        self.prefetch_count = prefetch_count
