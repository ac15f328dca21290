"""A memory backend's consumers: registering them with the in-process broker, and delivering.

:class:`MemoryConsumers` is a base class of :class:`carrot.backends.queue.Backend`,
and its methods are documented there: ``declare_consumer``, ``cancel``,
``consumers``, ``drain_events``, ``consume``, ``flow`` and ``close``.

Threads: every write to a backend's ``_consumers``, ``_flow_active`` and
``_closed`` holds :data:`~carrot.backends._memory_broker._registry` and
notifies it, so a consumer waiting in
:func:`~carrot.backends._memory_broker._dispatch` sees consumers come, go
and pause.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from carrot.backends._memory_broker import _consuming, _dispatch, _Entry, _registry
from carrot.exceptions import ConnectionClosedError

if TYPE_CHECKING:
    from carrot.backends.base import ConsumerCallback
    from carrot.backends.queue import Backend
    from carrot.connection import BrokerConnection

__all__ = ["MemoryConsumers"]


class MemoryConsumers:
    """The consumer side of :class:`~carrot.backends.queue.Backend` (documented there)."""

    connection: BrokerConnection

    def __init__(self, connection: BrokerConnection, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)  # type: ignore[call-arg]
        # consumer_tag -> (queue, no_ack, callback)
        self._consumers: dict[str, tuple[str, bool, ConsumerCallback]] = {}
        self._turn = itertools.count()
        self._closed = False
        self._flow_active = True

    def close(self) -> None:
        """Cancel this backend's consumers; :meth:`consume` loops end.

        Declaring a consumer afterwards opens the backend again.
        """
        with _registry:
            self._closed = True
            self._consumers.clear()
            _consuming.discard(self)
            _registry.notify_all()

    def declare_consumer(
        self,
        queue: str,
        no_ack: bool,
        callback: ConsumerCallback,
        consumer_tag: str,
        nowait: bool = False,
    ) -> str:
        """Register ``callback(message)`` to receive messages; returns the tag.

        The queue name is recorded but does not select messages. A tag used
        again on this backend replaces the earlier consumer.

        .. versionchanged:: 0.11
           A backend holds several consumers, which take turns; carrot 0.10
           kept only the last callback declared, and ``cancel`` did nothing.
        """
        with _registry:
            self._closed = False
            self._consumers[consumer_tag] = (queue, no_ack, callback)
            _consuming.add(self)
            _registry.notify_all()
        return consumer_tag

    def cancel(self, consumer_tag: str) -> None:
        """Stop the consumer ``consumer_tag`` (nothing happens for an unknown tag)."""
        with _registry:
            self._consumers.pop(consumer_tag, None)
            if not self._consumers:
                _consuming.discard(self)
            _registry.notify_all()

    @property
    def consumers(self) -> dict[str, tuple[str, bool, ConsumerCallback]]:
        """A copy of this backend's consumers: tag -> (queue, no_ack, callback)."""
        return dict(self._consumers)

    def _entries(self) -> list[_Entry]:
        # Called with _registry held.
        if not self._flow_active:
            return []
        backend = cast("Backend", self)  # only Backend mixes this in
        return [(backend, tag, entry[2]) for tag, entry in self._consumers.items()]

    def _is_closed(self) -> bool:
        return self._closed or getattr(self.connection, "_closed", None) is True

    def drain_events(self, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver one message to one of this backend's consumers.

        :keyword timeout: seconds to wait; ``None`` waits until a message is
            delivered (or the backend is closed).
        :raises socket.timeout: nothing was delivered within ``timeout``.
        :raises ConnectionClosedError: the backend (or its connection) was closed
            while waiting.

        .. versionchanged:: 0.11
           Waits for a message, and honours ``timeout`` (carrot 0.10 slept
           0.1 s and returned when the queue was empty).
        """
        _dispatch(self._entries, timeout, self._is_closed, self._turn)

    def consume(self, limit: int | None = None) -> Iterator[bool]:
        """Deliver messages to this backend's consumers, yielding ``True`` after each.

        :param limit: stop after this many messages (``None`` or 0: no limit).

        Ends when the backend or its connection is closed; waits for messages
        (blocking on the queue, :data:`POLL_INTERVAL` at a time) in between.
        """
        for delivered in itertools.count():
            if limit and delivered >= limit:
                return
            try:
                _dispatch(self._entries, None, self._is_closed, self._turn)
            except ConnectionClosedError:
                return
            yield True

    def flow(self, active: bool) -> None:
        """Pause (``False``) or resume (``True``) deliveries to this backend's consumers.

        While paused, messages wait on the queue (other consumers may take
        them).
        """
        with _registry:
            self._flow_active = bool(active)
            _registry.notify_all()
