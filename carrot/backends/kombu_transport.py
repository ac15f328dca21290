"""Backends on kombu's virtual transports: in-process memory, Redis, and others by URL.

``backend_cls="kombu"`` (:class:`Backend`) with no URL runs on kombu's
in-memory transport: exchanges, bindings and queues are shared by every
connection in the process, so carrot code gets real routing without a broker.
``backend_cls="redis"`` (:class:`RedisBackend`) runs on Redis. A kombu URL as
the host name picks any kombu virtual transport::

    BrokerConnection(hostname="redis://127.0.0.1:6379/0", backend_cls="kombu")

Without a URL the kombu connection is built from the connection's fields:
:attr:`Backend.kombu_transport` with hostname, userid, password, port and
virtual_host (for Redis the virtual host is the database number; ``"/"`` is 0).

Features:

* direct, topic and fanout exchanges, routed as the kombu transport routes
  them; queues, bindings, ``get``, consumers with callbacks;
* memory and Redis transports: headers exchanges too (kombu has none), with
  RabbitMQ's matching (``x-match`` ``all`` or ``any``);
* ack / reject / requeue; ``queue_purge`` and ``queue_delete`` return counts;
  ``qos`` (``prefetch_count`` only); ``flow`` (emulated, see :meth:`Backend.flow`);
* ``delivery_info`` with exchange, routing_key, redelivered, delivery_tag,
  consumer_tag (and message_count after a ``get``);
* memory and Redis transports: a requeued message, and an unacknowledged one
  when its channel closes, goes back to the front of the queue it came from
  (kombu alone re-routes it through the exchange, copying it into every
  queue bound there);
* memory and Redis transports: each queue a message is routed to gets its
  own copy with its own delivery tag (kombu alone shares one tag between the
  copies, and on Redis the ack of one copy forgets the other);
* memory transport: idle queues are polled every 10 ms (kombu: every second);
* Redis: ``queue_delete`` also removes the bindings other connections made
  (kombu alone forgets only its own); closing a channel from a message
  callback works (kombu alone blocks for ever).

Limits:

* an exchange type the transport cannot route (headers, on other kombu
  transports) raises :exc:`UnsupportedExchangeTypeError` when declared;
* ``mandatory`` and ``immediate`` are ignored: an unroutable message is
  dropped and nothing is returned; no per-message or queue TTL, except Redis's
  ``x-expires`` queue argument; priority is ignored by the memory transport,
  and Redis serves it in kombu's order: lower numbers first (0 is the
  highest), in four bands (0-2, 3-5, 6-8, 9), the reverse of AMQP;
* ``prefetch_size`` and ``apply_global`` are ignored; ``queue_delete``
  ignores ``if_unused``, and with ``if_empty`` leaves a queue holding messages
  in place (AMQP raises a channel error);
* durability is the transport's: the memory transport keeps nothing past the
  process, Redis keeps everything whatever ``durable`` says; ``exclusive``
  and ``auto_delete`` are not enforced (Redis deletes an auto-delete queue
  bound to a fanout exchange when its channel closes);
* Redis: a fanout exchange is Redis PUB/SUB, so only queues with a consumer
  running at the time receive the message (``get`` never sees it), one queue
  per fanout exchange on a channel; exchange types are known to the connection
  that declared them (carrot's Publisher declares its exchange); an empty
  queue does not exist (``queue_exists`` is False); messages of a consumer
  that died without closing its channel come back after the transport's
  ``visibility_timeout`` (one hour by default);
* other kombu transports by URL run as kombu made them, without the fixes
  above; kombu's AMQP transports are not supported here (use the default
  backend).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import TYPE_CHECKING, Any

from amqp.exceptions import ChannelError, NotFound

from carrot.backends._kombu_connection import ConnectionBackend
from carrot.backends._kombu_errors import (
    AMQP_TRANSPORTS as AMQP_TRANSPORTS,  # compat: defined here before the split
)
from carrot.backends._kombu_errors import (
    KOMBU_CHANNEL_ERRORS,
    KOMBU_CONNECTION_ERRORS,
    REDIS_CHANNEL_ERRORS,
    REDIS_CONNECTION_ERRORS,
    UnsupportedExchangeTypeError,
    UnsupportedTransportError,
    recoverable,
)
from carrot.backends._kombu_message import Message
from carrot.backends._kombu_seam import queue_size
from carrot.backends.base import ConsumerCallback, QueueAlreadyExistsWarning

if TYPE_CHECKING:
    from kombu.message import Message as KombuMessage

__all__ = [
    "REDIS_DEFAULT_PORT",
    "Backend",
    "Message",
    "QueueAlreadyExistsWarning",
    "RedisBackend",
    "UnsupportedExchangeTypeError",
    "UnsupportedTransportError",
]

# Public names defined in private modules are documented, shown in
# tracebacks and pickled under this module, their public home.
for _public in (Message, UnsupportedExchangeTypeError, UnsupportedTransportError):
    _public.__module__ = __name__
del _public

#: The Redis port.
REDIS_DEFAULT_PORT = 6379

#: The message class, for annotations inside :class:`Backend` (whose
#: ``Message`` attribute shadows the name there).
_Message = Message


class Backend(ConnectionBackend):
    """carrot's backend contract on a kombu virtual transport.

    :param connection: the :class:`~carrot.connection.BrokerConnection`; its
        host name may be a kombu URL (``"redis://host:6379/0"``).
    """

    Message = Message
    protocol = "kombu"
    #: ``mandatory`` is ignored: nothing is ever returned.
    returns_unroutable = False

    #: Errors meaning the connection is gone (Redis's too, for a ``redis://`` URL).
    connection_errors = KOMBU_CONNECTION_ERRORS
    #: Connection errors worth retrying.
    recoverable_connection_errors = recoverable(connection_errors)
    #: Errors meaning an operation on the channel failed.
    channel_errors = KOMBU_CHANNEL_ERRORS

    # -- declarations ------------------------------------------------------

    def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` exists (on Redis: holds messages)."""
        try:
            self.channel.queue_declare(queue=queue, passive=True)
        except ChannelError:
            return False
        return True

    def exchange_exists(self, exchange: str) -> None:
        """``None``: kombu's transports cannot be asked without declaring.

        (On Redis an exchange's type is known only to the connection that
        declared it.)
        """
        return None

    def _message_count(self, queue: str) -> int:
        try:
            declared = self.channel.queue_declare(queue=queue, passive=True)
            message_count: int = declared.message_count
            return message_count
        except ChannelError:
            return 0

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> int:
        """Delete ``queue`` and its bindings; return the number of messages it held.

        :keyword if_unused: ignored (kombu does not track consumers per queue).
        :keyword if_empty: leave the queue alone (returning 0) if it holds messages.
        """
        channel = self.channel
        held = self._message_count(queue)
        if if_empty and held:
            return 0
        # kombu deletes a queue's messages only through its bindings.
        channel.queue_purge(queue)
        channel.queue_delete(queue, if_unused=if_unused, if_empty=if_empty)
        return held

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        """Discard every ready message in ``queue``; return how many."""
        return self.channel.queue_purge(queue) or 0

    def exchange_declare(self, exchange: str, type: str, durable: bool, auto_delete: bool) -> Any:  # noqa: A002 -- compat: carrot's parameter name
        """Declare an exchange.

        :raises UnsupportedExchangeTypeError: the transport cannot route ``type``.
        """
        channel = self.channel
        if type not in channel.exchange_types:
            raise UnsupportedExchangeTypeError(exchange, type, sorted(channel.exchange_types))
        return channel.exchange_declare(
            exchange=exchange, type=type, durable=durable, auto_delete=auto_delete
        )

    def queue_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: dict[str, Any] | None = None
    ) -> Any:
        """Bind ``queue`` to ``exchange``.

        :raises amqp.exceptions.NotFound: the exchange was not declared.
        """
        try:
            return self.channel.queue_bind(
                queue=queue, exchange=exchange, routing_key=routing_key, arguments=arguments
            )
        except KeyError:
            raise NotFound(f"NOT_FOUND - no exchange {exchange!r}", None, None, 404) from None

    # -- receiving ---------------------------------------------------------

    def message_to_python(self, raw_message: KombuMessage) -> _Message:
        """Wrap a kombu message in :attr:`Message`."""
        return self.Message(self, raw_message)

    def get(self, queue: str, no_ack: bool = False) -> _Message | None:
        """Fetch one message from ``queue``, or ``None`` if it is empty."""
        channel = self.channel
        raw_message = channel.basic_get(queue, no_ack=no_ack)
        if raw_message is None:
            return None
        raw_message.delivery_info = dict(
            raw_message.delivery_info or (), message_count=queue_size(channel, queue)
        )
        return self.message_to_python(raw_message)

    def declare_consumer(
        self,
        queue: str,
        no_ack: bool,
        callback: ConsumerCallback,
        consumer_tag: str,
        nowait: bool = False,
    ) -> str:
        """Start consuming ``queue``; ``callback(raw_message)`` per delivery."""

        def on_delivery(raw_message: KombuMessage) -> object:
            # Hot path: runs once per delivered message.
            raw_message.delivery_info = dict(
                raw_message.delivery_info or (), consumer_tag=consumer_tag
            )
            return callback(raw_message)

        self.remember_consumer(consumer_tag, queue, no_ack, callback)
        self.channel.basic_consume(queue, no_ack, on_delivery, consumer_tag)
        return consumer_tag

    def consume(self, limit: int | None = None) -> Iterator[bool]:
        """Dispatch deliveries to the consumers' callbacks, yielding after each.

        Stops after ``limit`` deliveries, or when the channel has been closed.
        """
        for total in count():
            if limit and total >= limit:
                return
            channel = self._channel
            if channel is None or channel.closed:
                return
            self._established().drain_events()
            yield True

    def cancel(self, consumer_tag: str) -> None:
        """Stop the consumer ``consumer_tag``."""
        if self.forget_consumer(consumer_tag):
            return  # flow(False) cancelled it already
        channel = self._channel
        if channel is None or channel.closed:
            return
        channel.basic_cancel(consumer_tag)

    # -- sending -----------------------------------------------------------

    def prepare_message(  # type: ignore[override]
        # override: carrot 0.10's base takes **kwargs; Publisher passes only these.
        self,
        message_data: Any,
        delivery_mode: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> dict[str, Any]:
        """Build the kombu message (a dict) to publish."""
        message: dict[str, Any] = self.channel.prepare_message(
            message_data,
            priority=priority,
            content_type=content_type,
            content_encoding=content_encoding,
            properties={"delivery_mode": delivery_mode},
        )
        return message

    def publish(  # type: ignore[override]
        # override: carrot 0.10's base takes **kwargs; Publisher passes only these.
        self,
        message: dict[str, Any],
        exchange: str,
        routing_key: str,
        mandatory: bool | None = None,
        immediate: bool | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish a prepared message.

        :keyword mandatory: ignored: the transport returns nothing, an
            unroutable message is dropped.
        :keyword immediate: ignored, as ``mandatory``.
        :keyword headers: headers sent with the message.
        """
        # Hot path: runs once per published message. kombu encodes the body
        # and stamps the routing into the dict it is given, so it gets a copy:
        # the prepared message stays as it was and can be sent again.
        props = message["properties"]
        message = {**message, "properties": {**props, "delivery_info": {}}}
        if headers:
            message["headers"] = {**(message.get("headers") or {}), **headers}
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key)

    # -- flow control ------------------------------------------------------

    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> None:
        """Limit unacknowledged deliveries on this channel (``prefetch_count`` only)."""
        self.channel.basic_qos(
            prefetch_size=prefetch_size, prefetch_count=prefetch_count, apply_global=apply_global
        )


class RedisBackend(Backend):
    """carrot's backend contract on Redis, through kombu's Redis transport.

    Needs the ``redis`` package. The virtual host is the database number
    (``"/"`` is database 0).

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    """

    kombu_transport = "redis"
    default_port = REDIS_DEFAULT_PORT
    protocol = "Redis"

    #: Errors meaning the connection is gone (kombu's list for Redis).
    connection_errors = REDIS_CONNECTION_ERRORS
    #: Errors meaning a Redis command failed.
    channel_errors = REDIS_CHANNEL_ERRORS
    #: Connection errors worth retrying.
    recoverable_connection_errors = recoverable(REDIS_CONNECTION_ERRORS)
