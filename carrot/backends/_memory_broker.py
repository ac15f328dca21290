"""The in-process broker under the memory backend: one FIFO queue, the consumer registry, dispatch.

:mod:`carrot.backends.queue` is the backend and re-exports the public names
(:data:`mqueue`, :func:`reset`, :class:`PreparedMessage`, :class:`Connection`,
:data:`POLL_INTERVAL`). Every name here is process-wide state.

Threads: :data:`_registry` (a condition) guards every backend's
``_consumers``, ``_flow_active`` and ``_closed`` (set in
:mod:`~carrot.backends._memory_consumers`) and the :data:`_consuming` set;
:data:`mqueue` has its own lock, and is never waited on while
:data:`_registry` is held.
"""

from __future__ import annotations

import itertools
import queue as queue_module
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from carrot.exceptions import ConnectionClosedError

if TYPE_CHECKING:
    from carrot.backends._memory_consumers import MemoryConsumers
    from carrot.backends.base import ConsumerCallback
    from carrot.backends.queue import Backend, Message
    from carrot.connection import BrokerConnection

__all__ = ["POLL_INTERVAL", "Connection", "PreparedMessage", "mqueue", "reset"]

#: Seconds a waiting consumer blocks on the queue before it checks whether
#: it has been closed or cancelled.
POLL_INTERVAL = 0.05


class _MessageQueue(queue_module.Queue["PreparedMessage"]):
    """A :class:`queue.Queue` that can also put at the front, and clear."""

    def put_front(self, item: PreparedMessage) -> None:
        """Put ``item`` where the next ``get`` takes it first."""
        with self.not_empty:
            self.queue.appendleft(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()

    def clear(self) -> int:
        """Remove every item; return how many there were."""
        with self.mutex:
            removed = len(self.queue)
            self.queue.clear()
            self.unfinished_tasks = max(0, self.unfinished_tasks - removed)
            if not self.unfinished_tasks:
                self.all_tasks_done.notify_all()
            self.not_full.notify_all()
            return removed


#: compat: carrot 0.10's module-level queue, shared by every backend of the
#: process. It holds :class:`PreparedMessage` tuples, which unpack as
#: ``body, content_type, content_encoding`` as carrot's did.
mqueue: _MessageQueue = _MessageQueue()

#: Guards the consumer registry; notified when consumers come, go or pause.
_registry = threading.Condition()
#: Backends that have at least one consumer. Held strongly, as a broker
#: holds a consumer: it receives until cancelled or closed (or :func:`reset`),
#: even when the code that started it keeps no reference.
_consuming: set[MemoryConsumers] = set()
#: Delivery tags, unique in the process.
_delivery_tags = itertools.count(1)
#: delivery_tag -> the Message handed out, while someone holds it (for requeue).
_delivered: weakref.WeakValueDictionary[int, Message] = weakref.WeakValueDictionary()


def reset() -> None:
    """Empty :data:`mqueue` and forget every consumer and delivered message.

    For test isolation: call it in a fixture before (or after) each test.

    .. versionadded:: 0.11
    """
    with _registry:
        for backend in list(_consuming):
            backend._consumers.clear()
        _consuming.clear()
        _registry.notify_all()
    mqueue.clear()
    _delivered.clear()


class PreparedMessage(tuple[Any, str | None, str | None]):
    """A message as :meth:`Backend.prepare_message` builds it and :data:`mqueue` holds it.

    A ``(body, content_type, content_encoding)`` tuple, as carrot 0.10 used:
    it compares equal to the plain tuple and unpacks the same. It also
    carries the message's :attr:`properties` and, once published, where it
    was sent.

    :param body: the message body.
    :param content_type: the MIME type of the body.
    :param content_encoding: the charset of the body, or ``"binary"``.
    :param properties: ``delivery_mode``, ``priority``, ``application_headers``.
    """

    #: delivery_mode, priority and application_headers (when given).
    properties: dict[str, Any]
    #: The exchange it was published to (``None`` until published).
    exchange: str | None = None
    #: The routing key it was published with (``None`` until published).
    routing_key: str | None = None
    #: True once the message has been requeued.
    redelivered: bool = False

    def __new__(
        cls,
        body: Any,
        content_type: str | None = None,
        content_encoding: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> PreparedMessage:
        self = tuple.__new__(cls, (body, content_type, content_encoding))
        self.properties = properties if properties is not None else {}
        return self

    @property
    def body(self) -> Any:
        """The message body."""
        return self[0]

    @property
    def content_type(self) -> str | None:
        """The MIME type of the body."""
        return self[1]

    @property
    def content_encoding(self) -> str | None:
        """The charset of the body, or ``"binary"``."""
        return self[2]


#: (backend, consumer_tag, callback) of one consumer.
_Entry = tuple["Backend", str, "ConsumerCallback"]


def _dispatch(
    entries: Callable[[], list[_Entry]],
    timeout: float | None,
    is_closed: Callable[[], bool],
    turn: Iterator[int],
) -> None:
    """Take one message and hand it to one of ``entries()``, waiting up to ``timeout``.

    A message is taken only when there is a consumer for it.

    :raises socket.timeout: ``timeout`` seconds passed without a delivery.
    :raises ConnectionClosedError: ``is_closed()`` became true while waiting.
    """
    # Hot path (every delivery): one registry snapshot, one queue get.
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if is_closed():
            raise ConnectionClosedError("the in-memory connection or channel is closed")
        if deadline is None:
            wait = POLL_INTERVAL
        else:
            wait = min(POLL_INTERVAL, max(0.0, deadline - time.monotonic()))
        with _registry:
            candidates = entries()
            if not candidates:
                _registry.wait(wait)
        if candidates:
            try:
                record = mqueue.get(timeout=wait)
            except queue_module.Empty:
                pass
            else:
                backend, tag, callback = candidates[next(turn) % len(candidates)]
                if backend._consumers.get(tag, (None, None, None))[2] is callback:
                    callback(backend._to_message(record, consumer_tag=tag))
                    return
                # Cancelled while we waited: give the message back, first in line.
                mqueue.put_front(record)
        if deadline is not None and time.monotonic() >= deadline:
            # socket.timeout is TimeoutError (Python 3.10+), what carrot callers catch.
            raise TimeoutError("timed out")


class Connection:
    """The connection object of the memory backend (``BrokerConnection.connection``).

    :param client: the :class:`~carrot.connection.BrokerConnection` it
        belongs to.
    """

    def __init__(self, client: BrokerConnection) -> None:
        #: The BrokerConnection this belongs to.
        self.client = client
        #: False once :meth:`close` was called.
        self.connected = True
        #: What a broker would report about itself (``carrot ping`` prints it).
        self.server_properties: dict[str, Any] = {
            "product": "carrot in-memory backend",
            "version": _carrot_version(),
            "platform": "in-process",
        }
        self._turn = itertools.count()

    def __repr__(self) -> str:
        state = "open" if self.connected else "closed"
        return f"<{type(self).__name__} in-process {state}>"

    def _entries(self) -> list[_Entry]:
        client = self.client
        entries: list[_Entry] = []
        for backend in list(_consuming):
            if backend.connection is client:
                entries.extend(backend._entries())
        return entries

    def _is_closed(self) -> bool:
        return not self.connected or getattr(self.client, "_closed", None) is True

    def drain_events(self, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver one message to a consumer of any backend of this connection.

        :keyword timeout: seconds to wait; ``None`` waits until a message is
            delivered (or the connection is closed).
        :raises socket.timeout: nothing was delivered within ``timeout``.
        :raises ConnectionClosedError: the connection was closed while waiting.
        """
        _dispatch(self._entries, timeout, self._is_closed, self._turn)

    def channel(self) -> Backend:
        """A new backend bound to this connection (what a channel is here)."""
        return cast("Backend", self.client.create_backend())

    def close(self) -> None:
        """Close: cancel the consumers of this connection's backends."""
        self.connected = False
        with _registry:
            for backend in list(_consuming):
                if backend.connection is self.client:
                    backend._consumers.clear()
                    _consuming.discard(backend)
            _registry.notify_all()


def _carrot_version() -> str:
    from carrot import __version__

    return __version__
