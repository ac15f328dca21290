"""Publisher confirms: the messages a channel in confirm mode has not had confirmed yet.

After ``confirm.select`` the broker numbers the messages published on the
channel 1, 2, 3, ... and answers each with ``basic.ack`` (it took
responsibility for it: a persistent message into a durable queue is on
disk) or ``basic.nack`` (it refused it: ``x-overflow=reject-publish``, a
quorum queue without a leader). One answer may settle many messages
(``multiple``), and answers for messages routed to different queues may come
out of order. A message published ``mandatory`` that no queue took comes
back as ``basic.return`` just *before* its ``basic.ack``.

:class:`ConfirmWindow` is that bookkeeping for one channel, with no I/O:
the backend feeds it the broker's answers (:meth:`~ConfirmWindow.acked`,
:meth:`~ConfirmWindow.nacked`, :meth:`~ConfirmWindow.returned`), and
:meth:`~ConfirmWindow.wait` drives the connection through a ``pump``
callable until few enough messages are outstanding. Each message costs O(1)
(a dict entry and a deque slot).

Threads: one lock guards every field; the broker's answers may be fed from
the thread that reads the connection while a publishing thread waits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carrot.exceptions import ConfirmTimeoutError, MessageNacked, MessageReturned

__all__ = ["ConfirmWindow", "Unconfirmed"]

#: How long one ``pump`` call may block while waiting, so a deadline is
#: checked at least this often.
PUMP_SLICE = 1.0


@dataclass(slots=True, eq=False)
class Unconfirmed:
    """A message published on a channel in confirm mode, as kept until the broker answers.

    Everything needed to publish it again: the backend's message and the
    arguments of the publish call.
    """

    #: The broker's number for it on this channel (its confirm delivery tag).
    seq: int
    #: The backend's message (``Backend.prepare_message``'s result).
    message: Any
    exchange: str
    routing_key: str
    #: The other keyword arguments of ``Backend.publish`` (mandatory, headers...).
    publish_kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``(reply_code, reply_text)`` once the broker returned it as unroutable.
    returned: tuple[int, str] | None = None

    @property
    def body(self) -> Any:
        """The body as published (backends keep it as ``.body`` or first in a tuple)."""
        message = self.message
        if isinstance(message, tuple):
            return message[0]
        if isinstance(message, dict):  # STOMP: the frame's headers and "body"
            return message.get("body")
        return getattr(message, "body", None)

    @property
    def properties(self) -> dict[str, Any]:
        """The message properties as a dict (``message_id``, ``headers``...)."""
        message = self.message
        if isinstance(message, tuple) and len(message) == 2:
            properties = message[1]  # pika: (body, BasicProperties)
            return {k: v for k, v in vars(properties).items() if v is not None}
        if isinstance(message, dict):
            return {k: v for k, v in message.items() if k != "body"}
        properties = getattr(message, "properties", None)
        return dict(properties) if properties else {}

    @property
    def message_id(self) -> str | None:
        return self.properties.get("message_id")


class ConfirmWindow:
    """What one channel in confirm mode has published and the broker has not yet confirmed.

    :param max_unconfirmed: how many messages may be outstanding at once;
        :meth:`wait_for_room` blocks until fewer are.

    Lock: ``_lock`` guards ``_next_seq``, ``_unconfirmed``, ``_order``,
    ``_nacked`` and ``_returned``; it is never held while pumping.
    """

    def __init__(self, max_unconfirmed: int = 1) -> None:
        if not isinstance(max_unconfirmed, int) or isinstance(max_unconfirmed, bool):
            raise TypeError(f"max_unconfirmed must be an int, not {max_unconfirmed!r}")
        if max_unconfirmed < 1:
            raise ValueError(f"max_unconfirmed must be 1 or more, not {max_unconfirmed!r}")
        self.max_unconfirmed = max_unconfirmed
        self._lock = threading.Lock()
        self._next_seq = 1
        # seq -> message, and the seqs in publish order (settled ones are
        # dropped lazily from the left), so a multiple ack is O(settled).
        self._unconfirmed: dict[int, Unconfirmed] = {}
        self._order: deque[int] = deque()
        self._nacked: list[Unconfirmed] = []
        self._returned: list[Unconfirmed] = []

    @property
    def last_seq(self) -> int:
        """The broker's number of the newest message recorded (0: none yet)."""
        return self._next_seq - 1

    def __len__(self) -> int:
        """How many messages are published and not yet confirmed."""
        return len(self._unconfirmed)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} unconfirmed={len(self._unconfirmed)}"
            f" max_unconfirmed={self.max_unconfirmed}>"
        )

    # -- what the publisher records -------------------------------------------------

    def published(
        self, message: Any, exchange: str, routing_key: str, **publish_kwargs: Any
    ) -> Unconfirmed:
        """Record a message just written to the channel, under the broker's next number."""
        with self._lock:
            seq = self._next_seq
            self._next_seq = seq + 1
            entry = Unconfirmed(seq, message, exchange, routing_key, publish_kwargs)
            self._unconfirmed[seq] = entry
            self._order.append(seq)
        return entry

    def unpublished(self, entry: Unconfirmed) -> None:
        """Forget ``entry``: its write failed before the broker could have seen all of it.

        Only the newest message can be taken back (the broker numbers what it
        receives, so the number is reused).
        """
        with self._lock:
            if entry.seq == self._next_seq - 1 and self._unconfirmed.pop(entry.seq, False):
                self._order.pop()
                self._next_seq -= 1

    # -- what the broker answers (called by the backend) ----------------------------

    def acked(self, delivery_tag: int, multiple: bool = False) -> None:
        """``basic.ack``: the broker took these (returned ones fail: :meth:`raise_failures`)."""
        with self._lock:
            for entry in self._settle(delivery_tag, multiple):
                if entry.returned is not None:
                    self._returned.append(entry)

    def nacked(self, delivery_tag: int, multiple: bool = False) -> None:
        """``basic.nack``: the broker refused these messages."""
        with self._lock:
            self._nacked.extend(self._settle(delivery_tag, multiple))

    def returned(
        self, exchange: str, routing_key: str, body: Any, reply_code: int, reply_text: str
    ) -> bool:
        """``basic.return``: mark the oldest outstanding message it matches; False if none does.

        A ``str`` body (py-amqp decodes text bodies) is compared as UTF-8.

        The broker sends the return before the ack of the same message, and
        in publish order, so the oldest unmarked match is the one.
        """
        if isinstance(body, str):
            # py-amqp hands a text body back decoded; what was sent was bytes.
            body = body.encode("utf-8", "surrogatepass")
        with self._lock:
            for seq in self._order:
                entry = self._unconfirmed.get(seq)
                if (
                    entry is not None
                    and entry.returned is None
                    and entry.exchange == exchange
                    and entry.routing_key == routing_key
                    and entry.body == body
                ):
                    entry.returned = (reply_code, reply_text)
                    return True
        return False

    def _settle(self, delivery_tag: int, multiple: bool) -> list[Unconfirmed]:
        # Called with _lock held.
        pending, order = self._unconfirmed, self._order
        if not multiple:
            entry = pending.pop(delivery_tag, None)
            settled = [entry] if entry is not None else []
        else:
            settled = []
            while order and order[0] <= delivery_tag:
                entry = pending.pop(order.popleft(), None)
                if entry is not None:
                    settled.append(entry)
        # Drop seqs settled singly from the left, so _order stays bounded.
        while order and order[0] not in pending:
            order.popleft()
        return settled

    # -- what the publisher asks ----------------------------------------------------

    def raise_failures(self) -> None:
        """Raise for messages the broker nacked or returned since the last call; clear them.

        :raises MessageNacked: one or more were nacked (``exc.messages``);
            any returned ones stay for the next call.
        :raises MessageReturned: one or more were returned as unroutable.
        """
        with self._lock:
            if self._nacked:
                nacked, self._nacked = self._nacked, []
                raise MessageNacked(nacked)
            if self._returned:
                returned, self._returned = self._returned, []
                raise MessageReturned(returned)

    def wait(
        self,
        at_most: int,
        pump: Callable[[float], Any],
        timeout: float | None = None,
    ) -> None:
        """Pump the connection until at most ``at_most`` messages are unconfirmed.

        :param pump: called as ``pump(seconds)``: read and dispatch what the
            broker sent, blocking up to ``seconds`` (it may raise
            ``socket.timeout``/``TimeoutError`` when nothing came).
        :raises ConfirmTimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._unconfirmed) > at_most:
            if deadline is None:
                slice_ = PUMP_SLICE
            else:
                slice_ = min(PUMP_SLICE, deadline - time.monotonic())
                if slice_ <= 0:
                    raise ConfirmTimeoutError(len(self._unconfirmed), timeout)
            # Nothing came within the slice: look at the deadline again.
            with contextlib.suppress(TimeoutError, BlockingIOError):
                pump(slice_)

    def wait_for_room(self, pump: Callable[[float], Any], timeout: float | None = None) -> None:
        """Block until one more message may be published without exceeding the window."""
        self.wait(self.max_unconfirmed - 1, pump, timeout)

    def reset(self) -> list[Unconfirmed]:
        """The channel is gone: return every message it left unconfirmed, oldest first.

        The next channel in confirm mode numbers from 1 again; messages
        already nacked or returned stay to be raised.
        """
        with self._lock:
            left = [self._unconfirmed[seq] for seq in self._order if seq in self._unconfirmed]
            self._unconfirmed.clear()
            self._order.clear()
            self._next_seq = 1
        return left
