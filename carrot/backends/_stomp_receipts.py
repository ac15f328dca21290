"""The receipts one STOMP connection waits for: requests it blocks on, and confirmed SENDs.

A frame sent with a ``receipt`` header is answered by a RECEIPT naming it,
or by an ERROR (RabbitMQ's ERROR for a SEND names no receipt). :class:`Receipts`
hands out the receipt ids and, on stomp.py's receiver thread, turns the
answers into what waits for them: a :class:`threading.Event` for a request
whose caller blocks (SUBSCRIBE), a ``callback(ok)`` for a SEND made with
:meth:`~carrot.backends.pystomp.Connection.send_confirmed`. Nothing here
does I/O; the :class:`~carrot.backends.pystomp.Connection` sends the frames
and decides what an ERROR or a lost connection raises (a missing answer
raises here).

Threads: the receiver thread calls :meth:`Receipts.received`,
:meth:`Receipts.refused`, :meth:`Receipts.wake_waiters` and
:meth:`Receipts.lost`; the other methods run on the thread making the
request, each touching one dict entry (dict operations are atomic).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from carrot.backends._stomp_errors import StompConnectionError

__all__ = ["Receipts"]


class Receipts:
    """Receipt ids of one connection, and who waits for each."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        #: receipt id -> the event its blocked requester waits on.
        self.waiting: dict[str, threading.Event] = {}
        #: receipt id -> ``callback(ok)`` of a SEND awaiting its receipt.
        self.sends: dict[str, Callable[[bool], object]] = {}
        #: Set (by the receiver thread) when a SEND's receipt or ERROR came.
        self.send_settled = threading.Event()

    def _next_id(self) -> str:
        return f"carrot-{next(self._ids)}"

    def expect(self) -> tuple[str, threading.Event]:
        """A new receipt id, and the event set when its RECEIPT, an ERROR or the loss comes."""
        receipt = self._next_id()
        event = self.waiting[receipt] = threading.Event()
        return receipt, event

    def wait(self, receipt: str, event: threading.Event, timeout: float) -> None:
        """Wait for ``event`` from :meth:`expect`: ``receipt``'s answer, or the loss.

        :raises StompConnectionError: nothing came within ``timeout`` seconds.
        """
        if not event.wait(timeout):
            self.waiting.pop(receipt, None)
            raise StompConnectionError(f"no receipt from the STOMP broker for {receipt}")

    def expect_send(self, callback: Callable[[bool], object]) -> str:
        """A new receipt id for a SEND; ``callback(ok)`` runs when it is answered."""
        receipt = self._next_id()
        self.sends[receipt] = callback
        return receipt

    def forget_send(self, receipt: str) -> None:
        """The SEND asking for ``receipt`` was not sent after all."""
        self.sends.pop(receipt, None)

    def waits_for(self, receipt: str | None) -> bool:
        """Whether a blocked request waits for ``receipt``."""
        return receipt in self.waiting

    # -- on stomp.py's receiver thread ----------------------------------------

    def received(self, receipt: str) -> None:
        """A RECEIPT came: confirm its SEND, or wake its requester."""
        callback = self.sends.pop(receipt, None)
        if callback is not None:
            callback(True)
            self.send_settled.set()
            return
        event = self.waiting.pop(receipt, None)
        if event is not None:
            event.set()

    def refused(self, receipt: str) -> None:
        """An ERROR naming ``receipt`` came: if it answers a SEND, that SEND is refused."""
        callback = self.sends.pop(receipt, None)
        if callback is not None:
            callback(False)  # the broker refused that SEND
            self.send_settled.set()

    def wake_waiters(self) -> None:
        """Wake every blocked requester (an ERROR came, or the connection is gone)."""
        for event in list(self.waiting.values()):
            event.set()

    def lost(self) -> None:
        """The connection is gone: no receipt will come."""
        self.send_settled.set()
        self.wake_waiters()
