"""The subscriptions of one STOMP connection, and which of their deliveries await an ACK or NACK.

STOMP refuses an ACK after UNSUBSCRIBE, so a cancelled consumer stays
subscribed while deliveries of it are unsettled. :class:`Subscriptions`
counts them per subscription and says when the last one is settled; the
:class:`~carrot.backends.pystomp.Connection` then sends the UNSUBSCRIBE.
Nothing here does I/O.

Threads: stomp.py's receiver thread only reads :attr:`Subscriptions.by_id`
(to route MESSAGE frames); ``Subscriptions.lock`` guards the unsettled
deliveries (:attr:`Subscriptions.unsettled` and each subscription's
``outstanding``).
"""

from __future__ import annotations

import itertools
import queue as queue_module
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Subscription", "Subscriptions", "delivery_tag"]


def delivery_tag(frame: Any) -> Any:
    """The tag that ACKs or NACKs a MESSAGE frame (STOMP 1.2 ``ack``, else ``message-id``)."""
    headers = frame.headers
    return headers.get("ack") or headers.get("message-id")


class Subscription:
    """One SUBSCRIBE on a :class:`~carrot.backends.pystomp.Connection`."""

    def __init__(
        self,
        sub_id: str,
        destination: str,
        ack: str,
        callback: Callable[[Any], Any] | None = None,
        consumer_tag: str | None = None,
        buffered: bool = False,
    ) -> None:
        self.id = sub_id
        self.destination = destination
        self.ack = ack
        self.callback = callback
        self.consumer_tag = consumer_tag
        #: Frames for this subscription alone (get/purge/declare), else the inbox.
        self.buffer: queue_module.Queue[Any] | None = queue_module.Queue() if buffered else None
        #: Delivered, not yet acked/nacked.
        self.outstanding = 0
        self.cancelled = False
        self.unsubscribed = False


#: Subscription ids, unique in the process (a get's connection and the shared
#: one must not both have a "carrot-sub-1").
_sub_ids = itertools.count(1)


class Subscriptions:
    """The subscriptions of one connection, by id, and their unsettled deliveries."""

    def __init__(self) -> None:
        #: subscription id -> its :class:`Subscription`, while subscribed.
        self.by_id: dict[str, Subscription] = {}
        #: delivery tag -> the :class:`Subscription` of a delivery not yet settled.
        self.unsettled: dict[str, Subscription] = {}
        self.lock = threading.Lock()

    def add(
        self,
        destination: str,
        ack: str,
        callback: Callable[[Any], Any] | None = None,
        consumer_tag: str | None = None,
        buffered: bool = False,
    ) -> Subscription:
        """A new :class:`Subscription` with an id of its own, routed to from now on."""
        sub = Subscription(
            f"carrot-sub-{next(_sub_ids)}", destination, ack, callback, consumer_tag, buffered
        )
        self.by_id[sub.id] = sub
        return sub

    def remove(self, sub: Subscription) -> None:
        """Route nothing more to ``sub``."""
        self.by_id.pop(sub.id, None)

    def track(self, sub: Subscription, frame: Any) -> None:
        """Count ``frame`` as delivered to ``sub`` and unsettled (unless ``ack: auto``)."""
        if sub.ack == "auto":
            return
        tag = delivery_tag(frame)
        with self.lock:
            self.unsettled[tag] = sub
            sub.outstanding += 1

    def settled(self, tag: str) -> Subscription | None:
        """Count the delivery ``tag`` settled.

        :returns: its subscription when that was cancelled and this was its
            last unsettled delivery (it can be unsubscribed now), else None.
        """
        with self.lock:
            sub = self.unsettled.pop(tag, None)
            if sub is None:
                return None
            sub.outstanding -= 1
            finished = sub.cancelled and sub.outstanding <= 0
        return sub if finished else None
