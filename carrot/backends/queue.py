"""The embedded in-memory backend: one process-wide FIFO queue, no broker.

Named ``"memory"``, ``"mem"`` or ``"queue"``
(``BrokerConnection(backend_cls="memory")``); it needs no hostname, user or
password. It keeps carrot 0.10's semantics, which test suites written for
carrot rely on.

Features:

* publish, ``get`` and consumers with callbacks, from any number of threads
  of one process; messages are taken in the order they were published
  (FIFO), each by exactly one consumer or ``get``;
* several consumers take turns (round robin);
* ``ack`` (accepted; the message is already off the queue), ``reject``
  (drops it) and ``requeue`` (puts it back at the *front* of the queue with
  ``delivery_info["redelivered"] = True``, as a broker redelivers it first);
* ``delivery_mode``, ``priority`` and headers travel with the message
  (:attr:`Message.properties`, :attr:`Message.headers`);
* ``queue_purge`` returns how many messages it removed; ``flow(False)``
  pauses a backend's consumers;
* :func:`reset` empties the queue and forgets every consumer, for test
  isolation.

Limits:

* **No routing.** Exchange, routing key, queue names and bindings are
  accepted and ignored: every message goes into the one module-level
  :data:`mqueue`, and any consumer or ``get`` in the process may take it. A
  message published to exchange ``"a"`` with routing key ``"x"`` is received
  by a consumer of queue ``"y"``; ``queue_purge("any")`` empties everything.
* **One process.** Other processes see none of it.
* **Nothing persists.** Durable queues and persistent messages die with the
  process, and a message taken but never acked is gone (as in carrot 0.10);
  only :meth:`Message.requeue` puts it back.
* No prefetch: messages are handed to consumers one at a time and ``qos`` is
  recorded only.

For real exchanges, bindings and routing without a broker, use kombu's
in-memory transport: when the kombu backend is available,
``BrokerConnection(hostname="memory://", backend_cls="kombu")``.

Deliveries happen in the thread that calls :meth:`Backend.consume`,
:meth:`Backend.drain_events` or :meth:`Connection.drain_events`
(``BrokerConnection.drain_events``). :meth:`Backend.consume` and
:meth:`Backend.drain_events` deliver to that backend's own consumers;
the connection's ``drain_events`` to the consumers of every backend made from
that :class:`~carrot.connection.BrokerConnection`. A waiting consumer blocks
on the queue for :data:`POLL_INTERVAL` seconds at a time, checking in between
whether it was closed.
"""

from __future__ import annotations

import queue as queue_module
from typing import Any, NamedTuple

from carrot.backends import _memory_broker
from carrot.backends._memory_broker import (
    Connection,
    PreparedMessage,
    _consuming,
    _delivered,
    _delivery_tags,
    _registry,
    reset,
)
from carrot.backends._memory_consumers import MemoryConsumers
from carrot.backends.base import BaseBackend, BaseMessage
from carrot.exceptions import ConnectionClosedError

__all__ = [
    "POLL_INTERVAL",
    "Backend",
    "Connection",
    "ConnectionClosedError",
    "Message",
    "PreparedMessage",
    "mqueue",
    "reset",
]

# Public names defined in private modules are documented, shown in
# tracebacks and pickled under this module, their public home.
for _public in (
    Connection,
    PreparedMessage,
    reset,
):
    _public.__module__ = __name__
del _public

#: compat: carrot 0.10's module-level queue, shared by every backend of the
#: process. It holds :class:`PreparedMessage` tuples, which unpack as
#: ``body, content_type, content_encoding`` as carrot's did.
mqueue = _memory_broker.mqueue

#: Seconds a waiting consumer blocks on the queue before it checks whether
#: it has been closed or cancelled (read-only here: set
#: ``carrot.backends._memory_broker.POLL_INTERVAL`` to change it).
POLL_INTERVAL = _memory_broker.POLL_INTERVAL


class Message(BaseMessage):
    """A message received from the in-memory queue.

    :param backend: the :class:`Backend` that received it.
    :keyword properties: delivery_mode, priority and application_headers.

    The other keywords are :class:`~carrot.backends.base.BaseMessage`'s.
    """

    #: The :class:`PreparedMessage` this was made from (what requeue puts back).
    _record: PreparedMessage | None = None

    def __init__(self, backend: Backend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.properties: dict[str, Any] = kwargs.get("properties") or {}

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers (empty when it has none)."""
        return self.properties.get("application_headers") or {}


#: The message class, for annotations inside :class:`Backend` (whose
#: ``Message`` attribute shadows the name there).
_Message = Message


class queue_declare_ok_t(NamedTuple):  # noqa: N801 -- py-amqp's name for this result
    """What :meth:`Backend.queue_declare` returns, shaped like py-amqp's."""

    queue: str
    message_count: int
    consumer_count: int


class Backend(MemoryConsumers, BaseBackend):
    """carrot 0.10's Python-queue backend: one shared FIFO, no routing.

    :param connection: the :class:`~carrot.connection.BrokerConnection`;
        its hostname, user and password are not used.
    """

    #: A message is in the queue when :meth:`publish` returns: with
    #: ``Publisher(confirm=True)`` every message counts as confirmed then.
    confirms_on_publish = True

    Message = Message
    #: Raised when waiting on a closed connection or backend.
    connection_errors: tuple[type[BaseException], ...] = (ConnectionClosedError,)
    #: Nothing here fails per channel.
    channel_errors: tuple[type[BaseException], ...] = ()

    protocol = "in-process"
    #: ``mandatory`` is ignored: nothing is ever returned.
    returns_unroutable = False
    #: Always true: messages never leave this process.
    in_process = True

    #: Set by :meth:`qos`; recorded only (there is no prefetch).
    prefetch_size: int = 0
    #: Set by :meth:`qos`; recorded only (there is no prefetch).
    prefetch_count: int = 0

    # -- connection --------------------------------------------------------

    def establish_connection(self) -> Connection:
        """Return a :class:`Connection`; nothing to connect to, so no settings needed."""
        return Connection(self.connection)

    def close_connection(self, connection: Connection) -> None:
        """Close a connection from :meth:`establish_connection`."""
        connection.close()

    # -- declarations (accepted; there is one queue) ----------------------

    def queue_declare(
        self,
        queue: str,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        warn_if_exists: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> queue_declare_ok_t:
        """Accept a queue declaration; every name is the one shared queue.

        :returns: ``(queue, message_count, consumer_count)`` of the shared
            queue, like py-amqp's result.
        """
        with _registry:
            consumers = sum(len(backend._consumers) for backend in list(_consuming))
        return queue_declare_ok_t(queue, mqueue.qsize(), consumers)

    def queue_exists(self, queue: str) -> bool:
        """Always true: every queue name is the one shared queue."""
        return True

    def exchange_exists(self, exchange: str) -> None:
        """``None``: there are no exchanges to look for (no routing)."""
        return None

    def server_description(self) -> str:
        """``"carrot memory backend"``."""
        return "carrot memory backend"

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> int:
        """Accept a queue deletion; nothing is deleted, as every name is the
        shared queue other code may still use. Returns 0."""
        return 0

    def exchange_declare(
        self,
        exchange: str,
        type: str = "direct",  # noqa: A002 -- compat: carrot's parameter name
        durable: bool = True,
        auto_delete: bool = False,
    ) -> None:
        """Accept an exchange declaration (there is no routing)."""

    def queue_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: dict[str, Any] | None = None
    ) -> None:
        """Accept a binding (there is no routing)."""

    def queue_purge(self, queue: str | None = None, **kwargs: Any) -> int:
        """Discard every waiting message (of every queue: there is one); return how many."""
        return mqueue.clear()

    # -- receiving ---------------------------------------------------------

    def _to_message(self, record: tuple[Any, ...], **delivery_info: Any) -> _Message:
        # Hot path (every delivery).
        if not isinstance(record, PreparedMessage):
            # Something put a plain (body, content_type, content_encoding) on mqueue.
            record = PreparedMessage(*record)
        tag = next(_delivery_tags)
        delivery_info.update(
            exchange=record.exchange,
            routing_key=record.routing_key,
            redelivered=record.redelivered,
            delivery_tag=tag,
        )
        message = self.Message(
            self,
            body=record[0],
            content_type=record[1],
            content_encoding=record[2],
            delivery_tag=tag,
            delivery_info=delivery_info,
            properties=record.properties,
        )
        message._record = record
        _delivered[tag] = message
        return message

    def message_to_python(self, raw_message: Any) -> BaseMessage:
        """Return a delivered :class:`Message` as is; wrap a queued tuple.

        compat: as in carrot 0.10, consumer callbacks receive the
        :class:`Message` itself.
        """
        if isinstance(raw_message, BaseMessage):
            return raw_message
        return self._to_message(raw_message)

    def get(self, *args: Any, **kwargs: Any) -> _Message | None:
        """Take the next message, or return ``None`` at once if there is none.

        The arguments (``queue``, ``no_ack``, ...) are accepted and ignored,
        as in carrot 0.10: there is one queue, and a message taken is off it
        either way.

        .. versionchanged:: 0.11
           Never blocks: carrot 0.10 checked the size, then waited on the
           queue, and hung when another thread took the last message between.
        """
        try:
            record = mqueue.get_nowait()
        except queue_module.Empty:
            return None
        return self._to_message(record, message_count=mqueue.qsize())

    def ack(self, delivery_tag: int) -> None:
        """Acknowledge: nothing to do, the message already left the queue."""
        _delivered.pop(delivery_tag, None)

    def reject(self, delivery_tag: int) -> None:
        """Reject: the message is dropped."""
        _delivered.pop(delivery_tag, None)

    def requeue(self, delivery_tag: int) -> None:
        """Put the message back at the front of the queue, marked redelivered.

        Works while the :class:`Message` is still referenced; an unknown tag
        is ignored.

        .. versionchanged:: 0.11
           carrot 0.10 did nothing here, so a requeued message was lost.
        """
        message = _delivered.pop(delivery_tag, None)
        record = getattr(message, "_record", None)
        if record is not None:
            record.redelivered = True
            mqueue.put_front(record)

    # -- sending -----------------------------------------------------------

    def prepare_message(
        self,
        message_data: Any,
        delivery_mode: Any,
        content_type: str | None = None,
        content_encoding: str | None = None,
        **kwargs: Any,
    ) -> PreparedMessage:
        """Build the ``(body, content_type, content_encoding)`` tuple to publish.

        ``delivery_mode`` and the ``priority`` keyword go into its ``properties``.

        compat: the positions are carrot 0.10's (content type third), not the
        other backends' (priority third); :class:`~carrot.messaging.Publisher`
        passes everything by keyword.
        """
        priority = kwargs.get("priority")
        return PreparedMessage(
            message_data,
            content_type,
            content_encoding,
            {"delivery_mode": delivery_mode, "priority": priority},
        )

    def publish(
        self,
        message: Any,
        exchange: str,
        routing_key: str,
        mandatory: bool | None = None,
        immediate: bool | None = None,
        headers: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Put a prepared message on the shared queue.

        :param exchange: recorded in ``delivery_info``; does not route.
        :param routing_key: recorded in ``delivery_info``; does not route.
        :keyword mandatory: accepted; every message is deliverable here.
        :keyword immediate: accepted; the message waits for a consumer.
        :keyword headers: stored as ``properties["application_headers"]``.

        Other keywords are accepted and ignored, as in carrot 0.10.

        :raises TypeError: ``message`` is not a ``(body, content_type,
            content_encoding)`` tuple.

        .. versionchanged:: 0.11
           Anything else raises here; carrot 0.10 queued it and the consumer
           failed on it later.
        """
        # Hot path (every publish): one tuple and one put.
        if not isinstance(message, (tuple, list)) or len(message) != 3:
            raise TypeError(
                "the memory backend publishes what prepare_message() returns, a "
                f"(body, content_type, content_encoding) tuple, not {type(message).__name__}"
            )
        properties = dict(getattr(message, "properties", None) or ())
        if headers:
            properties["application_headers"] = dict(headers)
        record = PreparedMessage(message[0], message[1], message[2], properties)
        record.exchange = exchange
        record.routing_key = routing_key
        mqueue.put(record)

    # -- flow control ------------------------------------------------------

    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> None:
        """Record the limits; they change nothing, as messages go one at a time."""
        self.prefetch_size = prefetch_size
        self.prefetch_count = prefetch_count
