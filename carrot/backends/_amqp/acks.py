"""Acknowledgements: which deliveries await settlement, and which acks are held back.

:class:`AckTracker` keeps one channel's delivery tags; :class:`HeldAcks` is
the connection's policy for combined acks: which acks are held back, and
when they must be written. See :class:`HeldAcks` for the rule and the lock.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from carrot.backends._amqp.framing import ack_frames

__all__ = ["ACK_FLUSH_AT", "AckTracker", "HeldAcks"]

#: Pending combined acks written out once this many have accumulated.
ACK_FLUSH_AT = 256


class AckTracker:
    """Which deliveries on one channel await settlement, and which acks are pending.

    The rule: an ack is held back (pending) only while it can be combined
    correctly. ``basic.ack(tag, multiple=True)`` acknowledges *every*
    unacknowledged delivery up to ``tag`` on the channel, so a held-back ack
    of tag *t* becomes part of the combined ack only when *t* is the oldest
    delivery the caller has not settled yet (every earlier one was acked,
    rejected or requeued). An ack of any other outstanding tag is held as a
    single ack. When written, single acks go first, then the one combined
    ack, so no tag is ever acknowledged twice. Rejects and requeues, and
    acks of tags this tracker never saw, are written at once, after the
    pending acks.
    """

    __slots__ = ("live", "multiple", "order", "pending", "singles")

    def __init__(self) -> None:
        #: Tags delivered and not yet settled by the caller.
        self.live: set[int] = set()
        #: The same tags in delivery order (settled ones removed lazily).
        self.order: collections.deque[int] = collections.deque()
        #: Highest tag to acknowledge with ``multiple=True`` (0: none).
        self.multiple = 0
        #: Tags to acknowledge one by one, before :attr:`multiple`.
        self.singles: list[int] = []
        #: How many acks are held back.
        self.pending = 0

    def delivered(self, tag: int) -> None:
        """Record a delivery that needs settling."""
        self.live.add(tag)
        self.order.append(tag)

    def ack(self, tag: int) -> bool:
        """Hold back an ack of ``tag``; ``False`` when it must be sent now instead."""
        # Hot path: once per acked message.
        live = self.live
        if tag not in live:
            return False
        live.remove(tag)
        order = self.order
        while order and order[0] not in live and order[0] != tag:
            order.popleft()
        if order and order[0] == tag:
            order.popleft()
            self.multiple = tag
        else:
            self.singles.append(tag)
            if len(order) > 2 * len(live) + 64:
                # An old delivery stays unsettled: drop the settled tags
                # queued behind it (amortized; keeps memory bounded).
                self.order = collections.deque(t for t in order if t in live)
        self.pending += 1
        return True

    def settled(self, tag: int) -> None:
        """Forget ``tag`` (rejected, requeued, or acked outside the tracker)."""
        self.live.discard(tag)

    def settled_upto(self, tag: int) -> None:
        """Forget every tag up to ``tag`` (an explicit ``multiple=True`` ack)."""
        self.live = {t for t in self.live if t > tag}

    def take(self) -> tuple[list[int], int]:
        """Return and clear the pending ``(singles, multiple)``."""
        singles, multiple = self.singles, self.multiple
        self.singles, self.multiple, self.pending = [], 0, 0
        return singles, multiple

    def reset(self) -> None:
        """Forget everything (the channel was (re)opened: tags start again at 1)."""
        self.live.clear()
        self.order.clear()
        self.singles, self.multiple, self.pending = [], 0, 0


class HeldAcks:
    """The acks held back on one connection, and the rule for writing them.

    Only acks made while deliveries are being dispatched (inside
    ``drain_events``: from a consumer callback, in the thread running it) are
    held back, so that consecutive ones combine (see :class:`AckTracker`).
    They are written before any other frame on the connection, before the
    client waits on the socket, when ``drain_events`` returns and the read
    buffer holds no further whole event, when a callback raises, when
    ``Backend.consume`` stops, and when :data:`ACK_FLUSH_AT` of them are
    pending. An ack made anywhere else (after ``fetch()``, from application
    code between two waits, from another thread while one waits in
    ``drain_events``) is written at once.

    ``lock`` guards every field here and the trackers' pending acks. The
    connection holds the same lock around every socket write (it is its
    write lock), so flushing the held acks and writing the frame that must
    follow them are one step.
    """

    __slots__ = ("channels", "dispatch_thread", "dispatching", "lock", "pending")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Channels with held-back acks (each has an :class:`AckTracker` as ``acks``).
        self.channels: list[Any] = []
        #: How many acks are held back.
        self.pending = 0
        #: How deep the reading thread is in ``drain_events`` (callbacks may wait again).
        self.dispatching = 0
        #: The thread inside the outermost running ``drain_events``.
        self.dispatch_thread: int | None = None

    def hold(self, channel: Any) -> bool:
        """Count an ack held back on ``channel`` (lock held); true: write them now."""
        if channel not in self.channels:
            self.channels.append(channel)
        self.pending += 1
        # Outside a dispatch nothing would flush it soon: write it now.
        return self.pending >= ACK_FLUSH_AT or not self.dispatching

    def take_frames(self) -> bytes:
        """The frames of every held-back ack, forgetting them (lock held)."""
        channels, self.channels = self.channels, []
        self.pending = 0
        return b"".join(
            ack_frames(ch.channel_id, *ch.acks.take())
            for ch in channels
            if ch.channel_id is not None and ch.connection is not None
        )

    def reset(self) -> None:
        """Forget what is held (a new socket: the broker requeued it all)."""
        self.channels = []
        self.pending = 0
