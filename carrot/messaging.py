"""Sending and receiving messages: publishers, consumers and sets of consumers.

:class:`Publisher` sends to an exchange, :class:`Consumer` receives from a
queue (declaring the queue, the exchange and the binding between them),
:class:`Messaging` pairs one of each, and :class:`ConsumerSet` consumes from
several queues on one channel.

Everything here talks to the broker only through the backend contract
(:class:`carrot.backends.base.BaseBackend`), so every backend works: py-amqp
(the default), the in-memory backend, kombu transports, and third-party
backends named by dotted path.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Callable, Iterator
from itertools import count
from typing import TYPE_CHECKING, Any

from carrot import recovery
from carrot._keywords import nested_construction, warn_unknown_keywords
from carrot.confirms import ConfirmWindow
from carrot.exceptions import (
    ContentDisallowed,
    EncodeError,
    FilterWithAutoAckError,
    UnknownDeliveryModeError,
)
from carrot.serialization import encode as _encode
from carrot.serialization import registry as _registry

if TYPE_CHECKING:
    from carrot.backends.base import BaseBackend, BaseMessage
    from carrot.connection import BrokerConnection

__all__ = [
    "Consumer",
    "ConsumerSet",
    "FilterWithAutoAckError",
    "Messaging",
    "Publisher",
    "UnknownDeliveryModeError",
]

#: A callback: ``callback(message_data, message)``; what it returns is ignored.
Callback = Callable[[Any, "BaseMessage"], object]
#: A decode error handler: ``on_decode_error(message, exc)``.
DecodeErrorHandler = Callable[["BaseMessage", BaseException], object]
#: A routing key; for a ``headers`` exchange, the headers (a binding's arguments).
RoutingKey = str | dict[str, Any]
#: A delivery mode: a name from ``Publisher.DELIVERY_MODES``, or 1 or 2.
DeliveryMode = int | str

logger = logging.getLogger(__name__)


def _check_priority(priority: object) -> None:
    """Refuse a message priority that is not an AMQP octet (an int from 0 to 255)."""
    if isinstance(priority, int) and 0 <= priority <= 255:
        return  # an int subclass (bool): packed as its value
    raise EncodeError(f"priority must be an integer from 0 to 255, not {priority!r}")


def _accepted(accept: Any, connection: Any) -> frozenset[str] | None:
    """The content types allowed by ``accept``, or by the connection's default when it is None."""
    if accept is None:
        accept = getattr(connection, "accept", None)
    return _registry.accepted_content_types(accept)


def _disallow(message: Any, accepted: frozenset[str] | None) -> ContentDisallowed:
    """Make ``message.decode()`` (and so ``payload``) raise :exc:`ContentDisallowed`.

    The body never reaches a decoder: the message's own ``decode`` is
    shadowed on the instance, whatever the backend's message class.
    """
    content_type = message.content_type

    def decode() -> Any:
        raise ContentDisallowed(content_type, accepted or ())

    message.decode = decode
    return ContentDisallowed(content_type, accepted or ())


def _undecodable(
    message: Any,
    exc: BaseException,
    on_decode_error: DecodeErrorHandler | None,
    settle: bool,
    queue: Any = None,
) -> bool:
    """Deal with a delivered message whose body can't be (or may not be) decoded.

    ``on_decode_error(message, exc)`` runs when given; then, whatever it did
    or raised, a message it left unsettled is rejected without requeue
    (unless ``settle`` is false: a ``no_ack`` delivery), so it never comes
    back in a redelivery loop. A disallowed content type is logged at ERROR.

    :returns: True when the caller should carry on; False when it should
        re-raise ``exc`` (a decode error and no handler, as carrot 0.10).
    """
    if isinstance(exc, ContentDisallowed):
        logger.error(
            "rejected a message from queue %r (delivery tag %r): %s",
            queue,
            message.delivery_tag,
            exc,
        )
    try:
        if on_decode_error is not None:
            on_decode_error(message, exc)
            return True
        return isinstance(exc, ContentDisallowed)
    finally:
        if settle and not message.acknowledged:
            message.reject()


class Consumer:
    """Message consumer.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    :keyword queue: the queue to consume from (default :attr:`queue`).
    :keyword exchange: the exchange the queue is bound to (default
        :attr:`exchange`).
    :keyword routing_key: the binding key (default :attr:`routing_key`); for
        a ``headers`` exchange, the binding's arguments dict.
    :keyword backend: the backend instance (channel) to use; by default a new
        one from ``connection.create_backend()``.
    :keyword durable: overrides :attr:`durable`.
    :keyword exclusive: overrides :attr:`exclusive`.
    :keyword auto_delete: overrides :attr:`auto_delete`.
    :keyword exchange_type: overrides :attr:`exchange_type`.
    :keyword warn_if_exists: overrides :attr:`warn_if_exists`.
    :keyword auto_ack: overrides :attr:`auto_ack`.
    :keyword auto_declare: overrides :attr:`auto_declare`.
    :keyword queue_arguments: overrides :attr:`queue_arguments`.
    :keyword no_ack: overrides :attr:`no_ack`.
    :keyword accept: overrides :attr:`accept`.
    :keyword on_decode_error: overrides :attr:`on_decode_error`.

    Options given as ``None`` keep the class attribute, so subclasses
    configure themselves with class attributes::

        class FeedConsumer(Consumer):
            queue = "feed"
            exchange = "feed"
            routing_key = "importer"

    .. versionchanged:: 0.11
       The consumer tag (:attr:`consumer_tag`) ends in a short random part
       after carrot's ``module.ClassN``, so tags stay unique across processes
       and forks.

    .. versionadded:: 0.11
       ``accept`` and ``on_decode_error``.

    .. versionchanged:: 0.11
       A delivered message whose body fails to decode is rejected without
       requeue before the error propagates (carrot 0.10 left it unsettled,
       so it came back for ever once the channel closed).

    .. versionchanged:: 0.11
       An unknown keyword argument is still ignored, but a
       :exc:`~carrot.exceptions.CarrotWarning` names it.
    """

    #: Serializer names or content types the consumer decodes (``["json"]``);
    #: a message of any other content type is never decoded: while consuming
    #: it is rejected without requeue and logged at ERROR, and the ``payload``
    #: of a fetched one raises :exc:`~carrot.exceptions.ContentDisallowed`.
    #: ``None``: the connection's ``accept``, and when that is None too,
    #: every content type (carrot 0.10). Read when consuming or fetching starts.
    accept: Any = None
    #: Called as ``on_decode_error(message, exc)`` when a delivered body fails
    #: to decode or is not accepted; it may ack, reject or requeue the message
    #: and consuming goes on. A message it leaves unsettled is rejected
    #: without requeue. ``None``: the message is rejected without requeue and
    #: a decode error propagates (a disallowed content type only is logged).
    on_decode_error: DecodeErrorHandler | None = None
    #: The queue to consume from.
    queue: str = ""
    #: The exchange the queue is bound to.
    exchange: str = ""
    #: The binding key; for a ``headers`` exchange the binding's arguments.
    routing_key: RoutingKey = ""
    #: Queue and exchange survive a broker restart.
    durable: bool = True
    #: The queue is used by this connection only (implies :attr:`auto_delete`).
    exclusive: bool = False
    #: The queue and exchange are deleted when no longer used.
    auto_delete: bool = False
    #: ``"direct"``, ``"topic"``, ``"fanout"`` or ``"headers"``.
    exchange_type: str = "direct"
    #: True while a consumer is registered with the broker (see :meth:`consume`).
    channel_open: bool = False
    #: Warn (``QueueAlreadyExistsWarning``) when the queue is already declared.
    warn_if_exists: bool = False
    #: Declare queue, exchange and binding when created.
    auto_declare: bool = True
    #: Acknowledge every message as soon as it is received.
    auto_ack: bool = False
    #: Extra queue arguments (``x-max-length``, ``x-max-priority``, ...).
    queue_arguments: dict[str, Any] | None = None
    #: Tell the broker not to expect acknowledgements at all.
    no_ack: bool = False
    _closed: bool = True
    #: True while consuming with ``no_ack``: those deliveries are never acked.
    _consuming_no_ack: bool = False

    #: The keyword arguments that override class attributes when not ``None``.
    _init_opts = (
        "durable",
        "exclusive",
        "auto_delete",
        "exchange_type",
        "warn_if_exists",
        "auto_ack",
        "auto_declare",
        "queue_arguments",
        "no_ack",
        "accept",
        "on_decode_error",
    )
    #: The content types :attr:`accept` resolved to, while consuming.
    _accepted_types: frozenset[str] | None = None
    #: The other keyword arguments read from ``**kwargs`` (others warn).
    _keywords: tuple[str, ...] = ("backend", "accept", "on_decode_error")

    #: compat: returns the number in the consumer tag; a class attribute
    #: carrot's subclasses override (with a function, or another counter's).
    _next_consumer_tag = count(1).__next__

    def __init__(
        self,
        connection: BrokerConnection,
        queue: str | None = None,
        exchange: str | None = None,
        routing_key: RoutingKey | None = None,
        **kwargs: Any,
    ) -> None:
        warn_unknown_keywords(type(self), kwargs)
        self.connection = connection
        backend = kwargs.get("backend")
        self.backend: BaseBackend = backend if backend is not None else connection.create_backend()
        self.queue = queue or self.queue
        self.exchange = exchange or self.exchange
        self.routing_key = routing_key or self.routing_key
        #: Called as ``callback(message_data, message)``, in registration order.
        self.callbacks: list[Callback] = []
        for name in self._init_opts:
            value = kwargs.get(name)
            if value is not None:
                setattr(self, name, value)
        if self.exclusive:
            self.auto_delete = True
        # A bad accept list fails here, before anything is declared.
        self._accepted_types = _accepted(self.accept, connection)
        self.consumer_tag = self._generate_consumer_tag()
        if self.auto_declare:
            self.declare()
        recovery.install(self)  # only with BrokerConnection(auto_recover=True)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} queue={self.queue!r} exchange={self.exchange!r} "
            f"routing_key={self.routing_key!r} tag={self.consumer_tag!r}>"
        )

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[BaseMessage | None]:
        """Iterate over the queue with :meth:`fetch`, yielding ``None`` when it is empty."""
        return self.iterqueue(infinite=True)

    def _generate_consumer_tag(self) -> str:
        """A consumer tag: ``module.Class``, :meth:`_next_consumer_tag`, a short random part.

        The random part keeps tags unique across processes and forks.
        """
        cls = type(self)
        return f"{cls.__module__}.{cls.__name__}{self._next_consumer_tag()}.{uuid.uuid4().hex[:8]}"

    def declare(self) -> Consumer:
        """Declare the queue and the exchange, and bind the queue to it.

        .. versionchanged:: 0.11
           The binding is made only when both a queue and an exchange are
           named: RabbitMQ refuses bindings to the default exchange.
        """
        backend = self.backend
        routing_key = self.routing_key
        arguments = None
        if self.exchange_type == "headers":
            # The "routing key" of a headers binding is its arguments table.
            arguments, routing_key = routing_key, ""
        if self.queue:
            backend.queue_declare(
                queue=self.queue,
                durable=self.durable,
                exclusive=self.exclusive,
                auto_delete=self.auto_delete,
                warn_if_exists=self.warn_if_exists,
                arguments=self.queue_arguments,
            )
        if self.exchange:
            backend.exchange_declare(
                exchange=self.exchange,
                type=self.exchange_type,
                durable=self.durable,
                auto_delete=self.auto_delete,
            )
            if self.queue:
                if arguments is None:
                    # Backends written for carrot 0.9 take no ``arguments``.
                    backend.queue_bind(
                        queue=self.queue, exchange=self.exchange, routing_key=routing_key
                    )
                else:
                    backend.queue_bind(
                        queue=self.queue,
                        exchange=self.exchange,
                        routing_key=routing_key,
                        arguments=arguments,
                    )
        self._closed = False
        return self

    def _receive_callback(self, raw_message: Any) -> None:
        # Hot path: runs once per delivered message.
        message = self.backend.message_to_python(raw_message)
        accepted = self._accepted_types
        if accepted is not None and not _registry.is_accepted(message.content_type, accepted):
            exc = _disallow(message, accepted)
            _undecodable(message, exc, self.on_decode_error, not self._consuming_no_ack, self.queue)
            return
        if self.auto_ack and not self._consuming_no_ack and not message.acknowledged:
            message.ack()
        try:
            decoded = message.payload
        # compat: a third-party Message.decode() may raise anything.
        except Exception as exc:
            if not _undecodable(
                message, exc, self.on_decode_error, not self._consuming_no_ack, self.queue
            ):
                raise
            return
        self.receive(decoded, message)

    def fetch(
        self,
        no_ack: bool | None = None,
        auto_ack: bool | None = None,
        enable_callbacks: bool = False,
    ) -> BaseMessage | None:
        """Receive the next message waiting on the queue, without consuming.

        :keyword no_ack: the broker does not expect an acknowledgement.
        :keyword auto_ack: acknowledge the message before returning it.
        :keyword enable_callbacks: also pass it to the callbacks (:meth:`receive`),
            handling a body that fails to decode (or is not accepted) as
            consuming does (:attr:`on_decode_error`).
        :returns: the message, or ``None`` when the queue is empty. When its
            content type is not in :attr:`accept`, its ``decode()`` and
            ``payload`` raise :exc:`~carrot.exceptions.ContentDisallowed`.

        .. versionchanged:: 0.11
           ``auto_ack`` no longer acks a message fetched with ``no_ack``
           (the broker considers it settled, and closed the channel on the
           unknown delivery tag).
        """
        # compat: an explicit False does not override a true class/instance
        # setting; carrot computed ``no_ack or self.no_ack`` and code relies on it.
        no_ack = no_ack or self.no_ack
        auto_ack = auto_ack or self.auto_ack
        message: BaseMessage | None = self.backend.get(self.queue, no_ack=no_ack)
        if message is None:
            return None
        accepted = _accepted(self.accept, self.connection)
        disallowed = None
        if accepted is not None and not _registry.is_accepted(message.content_type, accepted):
            disallowed = _disallow(message, accepted)
        if auto_ack and not no_ack and not message.acknowledged:
            message.ack()
        if enable_callbacks:
            try:
                if disallowed is not None:
                    raise disallowed
                decoded = message.payload
            except Exception as exc:
                if not _undecodable(message, exc, self.on_decode_error, not no_ack, self.queue):
                    raise
            else:
                self.receive(decoded, message)
        return message

    def process_next(self) -> BaseMessage | None:
        """Deprecated: use ``fetch(enable_callbacks=True)``."""
        warnings.warn(
            "Consumer.process_next() is deprecated, use fetch(enable_callbacks=True) instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.fetch(enable_callbacks=True)

    def receive(self, message_data: Any, message: BaseMessage) -> None:
        """Pass a received message to the callbacks, in registration order.

        :raises NotImplementedError: no callback is registered.
        """
        callbacks = self.callbacks
        if not callbacks:
            raise NotImplementedError("No consumer callbacks registered")
        for callback in callbacks:
            callback(message_data, message)

    def register_callback(self, callback: Callback) -> None:
        """Add ``callback(message_data, message)``, called for every message received."""
        self.callbacks.append(callback)

    def purge(self) -> int:
        """Discard every message waiting on the queue; return how many."""
        return self.backend.queue_purge(self.queue)

    def discard_all(self, filterfunc: Callable[[BaseMessage], object] | None = None) -> int:
        """Discard the messages waiting on the queue; return how many.

        :keyword filterfunc: discard only the messages for which
            ``filterfunc(message)`` is true (messages are fetched and acked
            one by one).
        :raises FilterWithAutoAckError: a filter was given while
            :attr:`auto_ack` or :attr:`no_ack` is set.

        .. versionchanged:: 0.11
           With a filter, the messages that do not match are requeued once
           the queue is empty, keeping their order; carrot 0.10 left them
           unacknowledged on the channel until it closed.
        """
        if not filterfunc:
            return self.backend.queue_purge(self.queue)
        if self.no_ack or self.auto_ack:
            raise FilterWithAutoAckError()
        discarded = 0
        kept = []  # fetched and not discarded: requeued at the end, whatever happens
        try:
            while True:
                message = self.fetch()
                if message is None:
                    break
                kept.append(message)
                if filterfunc(message):
                    kept.pop()
                    message.ack()
                    discarded += 1
        finally:
            # Last first: transports that requeue at the head of the queue
            # (kombu's virtual ones, the memory backend) keep the order;
            # RabbitMQ puts each back at its own position anyway.
            for message in reversed(kept):
                message.requeue()
        return discarded

    def iterconsume(self, limit: int | None = None, no_ack: bool | None = None) -> Iterator[Any]:
        """Start consuming and return an iterator over the deliveries.

        Each step waits for a message, passes it to the callbacks and yields
        a true value. The iterator ends after ``limit`` steps, or once the
        channel is closed.
        """
        self.consume(no_ack=no_ack)
        return self.backend.consume(limit=limit)

    def consume(self, no_ack: bool | None = None) -> None:
        """Register this consumer with the broker; deliveries go to :meth:`receive`.

        They are dispatched while the connection's events are drained
        (:meth:`wait`, :meth:`iterconsume`,
        :meth:`BrokerConnection.drain_events() <carrot.connection.BrokerConnection.drain_events>`).

        .. versionchanged:: 0.11
           Calling it again while consuming does nothing; before, the broker
           refused the reused consumer tag and closed the channel.
           :attr:`auto_ack` does not ack deliveries consumed with ``no_ack``
           (carrot 0.10 did, and the broker closed the channel on the unknown
           delivery tag, dropping the deliveries in flight).
        """
        if self.channel_open:
            return
        no_ack = bool(no_ack or self.no_ack)
        self._accepted_types = _accepted(self.accept, self.connection)
        # Set first: deliveries may reach the callbacks (which may cancel)
        # before declare_consumer returns.
        self.channel_open = True
        self._consuming_no_ack = no_ack
        try:
            self.backend.declare_consumer(
                queue=self.queue,
                no_ack=no_ack,
                callback=self._receive_callback,
                consumer_tag=self.consumer_tag,
                nowait=True,
            )
        except BaseException:
            self.channel_open = False
            raise

    def wait(self, limit: int | None = None) -> list[Any]:
        """Consume, dispatching to the callbacks, until ``limit`` messages arrived.

        With no limit it runs until the channel is closed (e.g. by
        :meth:`close` in a callback).
        """
        it = self.iterconsume(limit)
        if limit:
            return list(it)
        for _ in it:
            pass
        return []

    def iterqueue(
        self, limit: int | None = None, infinite: bool = False
    ) -> Iterator[BaseMessage | None]:
        """Iterate over the waiting messages with :meth:`fetch`.

        :keyword limit: stop after this many messages.
        :keyword infinite: on an empty queue yield ``None`` and carry on,
            instead of stopping.

        .. versionchanged:: 0.11
           The limit is checked before fetching; carrot 0.10 fetched one
           more message than the limit and dropped it unacknowledged.
        """
        for fetched in count():
            if limit and fetched >= limit:
                return
            message = self.fetch()
            if message is None and not infinite:
                return
            yield message

    def cancel(self) -> None:
        """Stop consuming (the channel stays open)."""
        if self.channel_open:
            self.backend.cancel(self.consumer_tag)
            self.channel_open = False
            self._closed = True

    def close(self) -> None:
        """Stop consuming and close the channel."""
        self.cancel()
        self.backend.close()
        self._closed = True

    def flow(self, active: bool) -> None:
        """Pause (``False``) or resume (``True``) deliveries to this channel."""
        return self.backend.flow(active)

    def qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False
    ) -> None:
        """Limit the unacknowledged messages delivered at a time (0: no limit)."""
        return self.backend.qos(prefetch_size, prefetch_count, apply_global)


class Publisher:
    """Message publisher.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    :keyword exchange: the exchange to publish to (default :attr:`exchange`).
    :keyword routing_key: the default routing key (default :attr:`routing_key`).
    :keyword backend: the backend instance (channel) to use; by default a new
        one from ``connection.create_backend()``.
    :keyword exchange_type: overrides :attr:`exchange_type`.
    :keyword durable: overrides :attr:`durable`.
    :keyword auto_delete: overrides :attr:`auto_delete`.
    :keyword serializer: overrides :attr:`serializer`.
    :keyword delivery_mode: overrides :attr:`delivery_mode`; a name from
        :attr:`DELIVERY_MODES` or 1/2.
    :keyword auto_declare: overrides :attr:`auto_declare`.
    :keyword confirm: put the channel in publisher-confirm mode: :meth:`send`
        returns only once the broker confirmed the message (see
        :attr:`confirm`).
    :keyword max_unconfirmed: with ``confirm``, how many messages may await
        the broker's confirm at once (see :attr:`max_unconfirmed`).
    :keyword mandatory: overrides :attr:`mandatory`.
    :raises UnknownDeliveryModeError: (a ``ValueError``) a delivery mode that
        is neither a name from :attr:`DELIVERY_MODES` nor 1 or 2.
    :raises NotImplementedError: ``confirm=True`` on a backend that has no
        publisher confirms (named in the message).

    .. versionadded:: 0.11
       ``confirm``, ``max_unconfirmed`` and ``mandatory``.

    .. versionchanged:: 0.11
       A delivery mode other than those names, 1 and 2 (``3``, ``"2"``,
       ``"bogus"``) raises :exc:`UnknownDeliveryModeError` here and in
       :meth:`create_message`/:meth:`send`, before anything is sent; carrot
       0.10 passed it on to the transport, which failed or sent it as is.

    .. versionchanged:: 0.11
       An unknown keyword argument is still ignored, but a
       :exc:`~carrot.exceptions.CarrotWarning` names it.
    """

    #: Delivery mode names and their AMQP values.
    DELIVERY_MODES = {"transient": 1, "persistent": 2, "non-persistent": 1}
    #: Messages are kept in memory only.
    TRANSIENT_DELIVERY_MODE = 1
    #: compat: carrot's (misspelt) name for :attr:`TRANSIENT_DELIVERY_MODE`.
    NONE_PERSISTENT_DELIVERY_MODE = 1
    #: Messages are written to disk, surviving a broker restart.
    PERSISTENT_DELIVERY_MODE = 2

    #: The exchange to publish to.
    exchange: str = ""
    #: The default routing key; for a ``headers`` exchange, the headers.
    routing_key: RoutingKey = ""
    #: The default delivery mode (persistent).
    delivery_mode: DeliveryMode = 2
    _closed: bool = True
    #: ``"direct"``, ``"topic"``, ``"fanout"`` or ``"headers"``.
    exchange_type: str = "direct"
    #: The exchange survives a broker restart.
    durable: bool = True
    #: The exchange is deleted when no longer used.
    auto_delete: bool = False
    #: Declare the exchange when created.
    auto_declare: bool = True
    #: The serializer name (``None``: the registry's default, json).
    serializer: str | None = None
    #: Publisher confirms: the channel is in confirm mode, and a message
    #: counts as sent once the broker confirmed it (``basic.ack``); a
    #: refused one (``basic.nack``) raises
    #: :exc:`~carrot.exceptions.MessageNacked`.
    confirm: bool = False
    #: With :attr:`confirm`, how many messages may await their confirm at
    #: once. 1: :meth:`send` waits for its own message's confirm. N > 1:
    #: :meth:`send` returns once the message is written, waiting only while N
    #: are unconfirmed; :meth:`wait_for_confirms` waits for the rest.
    max_unconfirmed: int = 1
    #: The default for :meth:`send`'s ``mandatory``: the broker returns a
    #: message no queue took; with :attr:`confirm` that raises
    #: :exc:`~carrot.exceptions.MessageReturned`.
    mandatory: bool = False

    #: The keyword arguments that override class attributes when not ``None``.
    _init_opts = (
        "exchange_type",
        "durable",
        "auto_delete",
        "serializer",
        "delivery_mode",
        "auto_declare",
        "confirm",
        "max_unconfirmed",
        "mandatory",
    )
    #: The other keyword arguments read from ``**kwargs`` (others warn).
    _keywords: tuple[str, ...] = ("backend",)
    #: The channel's :class:`~carrot.confirms.ConfirmWindow` with
    #: :attr:`confirm`, else ``None``.
    _confirms: ConfirmWindow | None = None
    #: Set by a confirmed :meth:`send` once its message is written (so a
    #: recovery re-sends it from the window instead of sending it again).
    _taken: bool = False

    def __init__(
        self,
        connection: BrokerConnection,
        exchange: str | None = None,
        routing_key: RoutingKey | None = None,
        **kwargs: Any,
    ) -> None:
        warn_unknown_keywords(type(self), kwargs)
        self.connection = connection
        self.exchange = exchange or self.exchange
        self.routing_key = routing_key or self.routing_key
        for name in self._init_opts:
            value = kwargs.get(name)
            if value is not None:
                setattr(self, name, value)
        # Checked before a channel is opened, so a bad value leaves none behind.
        self.delivery_mode = self._delivery_mode(self.delivery_mode)
        window = ConfirmWindow(self.max_unconfirmed) if self.confirm else None
        backend = kwargs.get("backend")
        self.backend: BaseBackend = backend if backend is not None else connection.create_backend()
        self._closed = False
        if window is not None:
            self.backend.confirm_select(window)
            self._confirms = window
        if self.auto_declare and self.exchange:
            self.declare()
        recovery.install(self)  # only with BrokerConnection(auto_recover=True)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} exchange={self.exchange!r} routing_key={self.routing_key!r}>"
        )

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _delivery_mode(self, value: object) -> int:
        """The AMQP delivery mode (1 or 2) for a name from :attr:`DELIVERY_MODES` or a number.

        :raises UnknownDeliveryModeError: anything else, before it reaches
            the broker.
        """
        mode = self.DELIVERY_MODES.get(value, value) if isinstance(value, str) else value
        if isinstance(mode, int) and mode in (1, 2):
            return int(mode)
        raise UnknownDeliveryModeError(value, self.DELIVERY_MODES)

    def declare(self) -> None:
        """Declare the exchange; nothing to do for the default exchange (``""``)."""
        # compat: carrot 0.10 skipped the default exchange here too (brokers
        # refuse to declare it), and code publishing to queues calls declare().
        if self.exchange:
            self.backend.exchange_declare(
                exchange=self.exchange,
                type=self.exchange_type,
                durable=self.durable,
                auto_delete=self.auto_delete,
            )

    def create_message(
        self,
        message_data: Any,
        delivery_mode: DeliveryMode | None = None,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        serializer: str | None = None,
    ) -> Any:
        """Serialize ``message_data`` and build the backend's message.

        :keyword delivery_mode: overrides :attr:`delivery_mode`.
        :keyword priority: the message priority (0-9 on RabbitMQ).
        :keyword content_type: the body's MIME type. When given, nothing is
            serialized: a ``str`` is encoded with ``content_encoding`` (or
            utf-8) and ``bytes`` are sent as they are (``content_encoding``
            defaults to ``"binary"``).
        :keyword content_encoding: the body's charset, or ``"binary"``.
        :keyword serializer: overrides :attr:`serializer`.
        :raises carrot.exceptions.EncodeError: the data can't be serialized or
            encoded, or ``priority`` is not an integer from 0 to 255.

        .. versionchanged:: 0.11
           With ``content_type`` given, a body that is not ``str`` or
           ``bytes`` (or a ``str`` the charset can't encode) raises
           :exc:`~carrot.exceptions.EncodeError` here, before sending. So
           does a ``priority`` that is not an integer from 0 to 255 (an AMQP
           octet; the transport failed on it with ``struct.error``).
        """
        # Hot path: runs once per published message.
        if priority is not None and (priority.__class__ is not int or not 0 <= priority <= 255):
            _check_priority(priority)
        if not content_type:
            content_type, content_encoding, message_data = _encode(
                message_data, serializer=serializer or self.serializer
            )
        elif isinstance(message_data, str):
            content_encoding = content_encoding or "utf-8"
            try:
                message_data = message_data.encode(content_encoding)
            except (LookupError, UnicodeError) as exc:
                raise EncodeError(f"can't encode the body as {content_encoding!r}: {exc}") from exc
        elif isinstance(message_data, (bytes, bytearray, memoryview)):
            content_encoding = content_encoding or "binary"
        else:
            raise EncodeError(
                f"with content_type given the body must be str or bytes, "
                f"not {type(message_data).__name__}"
            )
        if not delivery_mode:
            # compat: carrot computed ``delivery_mode or self.delivery_mode``,
            # so 0 (or "") means the publisher's default.
            delivery_mode = self.delivery_mode
        elif delivery_mode.__class__ is not int or (delivery_mode != 2 and delivery_mode != 1):
            delivery_mode = self._delivery_mode(delivery_mode)
        return self.backend.prepare_message(
            message_data,
            delivery_mode,
            priority=priority,
            content_type=content_type,
            content_encoding=content_encoding,
        )

    def send(
        self,
        message_data: Any,
        routing_key: RoutingKey | None = None,
        delivery_mode: DeliveryMode | None = None,
        mandatory: bool = False,
        immediate: bool = False,
        priority: int = 0,
        content_type: str | None = None,
        content_encoding: str | None = None,
        serializer: str | None = None,
        exchange: str | None = None,
    ) -> None:
        """Send a message.

        :param message_data: the body, serialized with ``serializer`` (or
            :attr:`serializer`) unless ``content_type`` is given.
        :keyword routing_key: overrides :attr:`routing_key`; for a ``headers``
            exchange, the headers.
        :keyword delivery_mode: ``"transient"``/``1`` or ``"persistent"``/``2``;
            default :attr:`delivery_mode`.
        :keyword mandatory: the broker returns the message if no queue is
            bound for it, instead of dropping it (the py-amqp backend keeps
            returned messages on ``backend.returned_messages``).
        :keyword immediate: deliver only if a consumer is ready for it now,
            otherwise drop it (or return it). RabbitMQ 3.0+ refuses the AMQP
            ``immediate`` flag, so the py-amqp backend emulates it: the message
            is published ``mandatory`` with a per-message TTL of 0, so it is
            not left waiting in a queue without a consumer.
        :keyword priority: the message priority (needs a queue declared with
            ``x-max-priority`` on RabbitMQ).
        :keyword content_type: see :meth:`create_message`.
        :keyword content_encoding: see :meth:`create_message`.
        :keyword serializer: overrides :attr:`serializer`.
        :keyword exchange: overrides :attr:`exchange`.
        :raises carrot.exceptions.EncodeError: the data can't be serialized;
            nothing was sent.
        """
        # Hot path: runs once per published message; the message is built
        # (and serialization errors raised) before anything goes out.
        headers = None
        routing_key = routing_key or self.routing_key
        if self.exchange_type == "headers":
            headers, routing_key = routing_key, ""
        message = self.create_message(
            message_data,
            delivery_mode,
            priority,
            content_type,
            content_encoding,
            serializer,
        )
        if self._confirms is not None:
            return self._send_confirmed(
                message,
                exchange or self.exchange,
                routing_key,
                mandatory=mandatory or self.mandatory,
                immediate=immediate,
                headers=headers,
            )
        self.backend.publish(
            message,
            exchange=exchange or self.exchange,
            # arg-type: a dict routing key is a headers exchange's, swapped
            # for "" above; anything else is passed on as given (compat).
            routing_key=routing_key,  # type: ignore[arg-type]
            mandatory=mandatory or self.mandatory,
            immediate=immediate,
            headers=headers,
        )

    def _send_confirmed(
        self, message: Any, exchange: str, routing_key: Any, **publish_kwargs: Any
    ) -> None:
        # Hot path with confirm=True: the window's bookkeeping is O(1), and
        # the broker is only waited for when the window is full.
        window = self._confirms
        assert window is not None
        pump = self.backend.drain_confirms
        # A nack or return of an earlier message is raised before this one
        # is taken (so the caller knows this one was not sent).
        window.raise_failures()
        if len(window) >= window.max_unconfirmed:
            window.wait_for_room(pump)
            window.raise_failures()
        entry = window.published(message, exchange, routing_key, **publish_kwargs)
        backend = self.backend
        try:
            backend.publish(message, exchange=exchange, routing_key=routing_key, **publish_kwargs)
        except BaseException:
            window.unpublished(entry)
            raise
        # Taken: from here on, recovery re-sends it rather than send() again.
        self._taken = True
        if backend.confirms_on_publish:
            window.acked(entry.seq)
        self._finish_confirmed()

    def _finish_confirmed(self) -> None:
        """With a window of 1, wait for the message just sent (or re-sent) to be confirmed."""
        window = self._confirms
        assert window is not None
        if window.max_unconfirmed == 1:
            window.wait(0, self.backend.drain_confirms)
            window.raise_failures()

    def _republish(self, entries: list[Any]) -> None:
        """Publish ``entries`` (:class:`~carrot.confirms.Unconfirmed`) again, through the window.

        Used by recovery for what a lost channel left unconfirmed and what the
        broker nacked (at-least-once: the broker may already have some).
        """
        window = self._confirms
        assert window is not None
        backend = self.backend
        for old in entries:
            window.wait_for_room(backend.drain_confirms)
            entry = window.published(
                old.message, old.exchange, old.routing_key, **old.publish_kwargs
            )
            backend.publish(
                old.message,
                exchange=old.exchange,
                routing_key=old.routing_key,
                **old.publish_kwargs,
            )
            if backend.confirms_on_publish:
                window.acked(entry.seq)

    def wait_for_confirms(self, timeout: float | None = None) -> None:
        """Wait until the broker confirmed every message sent so far.

        :keyword timeout: seconds; ``None`` waits as long as it takes.
        :raises carrot.exceptions.MessageNacked: the broker refused some
            (``exc.messages`` lists them).
        :raises carrot.exceptions.MessageReturned: some were published
            ``mandatory`` and no queue took them.
        :raises carrot.exceptions.ConfirmTimeoutError: (a ``TimeoutError``)
            some are still unconfirmed after ``timeout`` seconds.
        :raises ValueError: the publisher was not created with ``confirm=True``.

        .. versionadded:: 0.11
        """
        window = self._confirms
        if window is None:
            raise ValueError(f"{self!r} was not created with confirm=True: nothing to wait for")
        window.wait(0, self.backend.drain_confirms, timeout)
        window.raise_failures()

    def close(self) -> None:
        """Close the channel; with :attr:`confirm`, wait for the outstanding confirms first.

        .. versionchanged:: 0.11
           With ``confirm=True`` it waits for the broker to confirm every
           message sent (see :meth:`wait_for_confirms`) before closing.
        """
        try:
            if self._confirms is not None and not self._closed and len(self._confirms):
                self.wait_for_confirms()
        finally:
            self.backend.close()
            self._closed = True


class Messaging:
    """A publisher and a consumer for the same exchange, queue and routing key.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    :keyword queue: overrides :attr:`queue`.
    :keyword exchange: overrides :attr:`exchange`.
    :keyword routing_key: overrides :attr:`routing_key`.

    Other keyword arguments (``serializer``, ``durable``, ...) are passed to
    both :attr:`publisher_cls` and :attr:`consumer_cls`, which ignore those
    they do not know.

    .. versionchanged:: 0.11
       Those other keyword arguments reach the publisher and the consumer;
       carrot 0.10 dropped them silently. One that neither knows is still
       ignored, but a :exc:`~carrot.exceptions.CarrotWarning` names it.
    """

    #: The queue the consumer reads.
    queue: str = ""
    #: The exchange both use.
    exchange: str = ""
    #: The routing key both use.
    routing_key: RoutingKey = ""
    #: The class of :attr:`publisher`.
    publisher_cls: type[Publisher] = Publisher
    #: The class of :attr:`consumer`.
    consumer_cls: type[Consumer] = Consumer
    _closed: bool = True
    #: The keyword arguments read from ``**kwargs``; the others go to
    #: :attr:`publisher_cls` and :attr:`consumer_cls` (and warn if neither knows them).
    _keywords: tuple[str, ...] = ("queue", "exchange", "routing_key")

    def __init__(self, connection: BrokerConnection, **kwargs: Any) -> None:
        warn_unknown_keywords(type(self), kwargs, also=(self.publisher_cls, self.consumer_cls))
        self.connection = connection
        self.exchange = kwargs.pop("exchange", None) or self.exchange
        self.queue = kwargs.pop("queue", None) or self.queue
        self.routing_key = kwargs.pop("routing_key", None) or self.routing_key
        #: Called as ``callback(message_data, message)``, in registration order.
        self.callbacks: list[Callback] = []
        with nested_construction():  # checked above, against both classes
            self.publisher = self.publisher_cls(
                connection, exchange=self.exchange, routing_key=self.routing_key, **kwargs
            )
            self.consumer = self.consumer_cls(
                connection,
                queue=self.queue,
                exchange=self.exchange,
                routing_key=self.routing_key,
                **kwargs,
            )
        self.consumer.register_callback(self.receive)
        self._closed = False

    def __enter__(self) -> Messaging:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def register_callback(self, callback: Callback) -> None:
        """Add ``callback(message_data, message)``, called for every message received."""
        self.callbacks.append(callback)

    def receive(self, message_data: Any, message: BaseMessage) -> None:
        """Pass a received message to the callbacks, in registration order.

        :raises NotImplementedError: no callback is registered.
        """
        if not self.callbacks:
            raise NotImplementedError("No consumer callbacks registered")
        for callback in self.callbacks:
            callback(message_data, message)

    def send(self, message_data: Any, delivery_mode: DeliveryMode | None = None) -> None:
        """Send a message with the publisher (see :meth:`Publisher.send`)."""
        self.publisher.send(message_data, delivery_mode=delivery_mode)

    def fetch(self, **kwargs: Any) -> BaseMessage | None:
        """Fetch a message with the consumer (see :meth:`Consumer.fetch`)."""
        return self.consumer.fetch(**kwargs)

    def close(self) -> None:
        """Close the consumer's and the publisher's channels."""
        self.consumer.close()
        self.publisher.close()
        self._closed = True


class ConsumerSet:
    """Consume from several queues at once, on one channel.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    :keyword from_dict: ``{queue: options}``: a consumer is made for each
        with :meth:`add_consumer_from_dict`.
    :keyword consumers: :class:`Consumer` instances to add
        (:meth:`add_consumer`).
    :keyword callbacks: callbacks ``callback(message_data, message)``.
    :keyword auto_ack: overrides :attr:`auto_ack`.
    :keyword on_decode_error: overrides :attr:`on_decode_error`.
    :keyword accept: overrides :attr:`accept`.

    Every consumer of the set uses the set's :attr:`backend` (one channel).
    :attr:`consumers` is a public list: consumers appended to it (created
    with ``backend=consumer_set.backend``) start receiving at the next
    :meth:`consume`.

    .. versionchanged:: 0.11
       :attr:`auto_ack` does not ack the deliveries of a consumer with
       ``no_ack`` (carrot 0.10 did, and the broker closed the channel on the
       unknown delivery tag). A message whose body fails to decode is
       rejected without requeue when :attr:`on_decode_error` leaves it
       unsettled, or before the error propagates without one (carrot 0.10
       left it unsettled: it came back for ever once the channel closed).

    .. versionchanged:: 0.11
       An unknown keyword argument is still ignored, but a
       :exc:`~carrot.exceptions.CarrotWarning` names it.

    .. versionadded:: 0.11
       ``accept``.
    """

    #: The keyword arguments read from ``**options`` (others warn).
    _keywords: tuple[str, ...] = ("auto_ack", "on_decode_error", "accept")

    #: Acknowledge every message as soon as it is received.
    auto_ack: bool = False
    #: Called as ``on_decode_error(message, exc)`` when a body can't be
    #: decoded or is not accepted; it may settle the message, consuming goes
    #: on, and a message it leaves unsettled is rejected without requeue.
    #: ``None``: the message is rejected without requeue and a decode error
    #: propagates. A consumer's own handler wins for its messages.
    on_decode_error: DecodeErrorHandler | None = None
    #: Serializer names or content types decoded (see :attr:`Consumer.accept`);
    #: for the messages of consumers whose own ``accept`` is None. ``None``:
    #: the connection's ``accept``.
    accept: Any = None
    #: The content types the set's :attr:`accept` resolved to (None: all).
    _set_accepted: frozenset[str] | None = None

    def __init__(
        self,
        connection: BrokerConnection,
        from_dict: dict[str, dict[str, Any]] | None = None,
        consumers: list[Consumer] | None = None,
        callbacks: list[Callback] | None = None,
        **options: Any,
    ) -> None:
        warn_unknown_keywords(type(self), options)
        self.connection = connection
        self.options = options
        self.from_dict = from_dict or {}
        #: The consumers of the set; a public list.
        self.consumers: list[Consumer] = []
        #: Called as ``callback(message_data, message)``, in registration order.
        self.callbacks: list[Callback] = list(callbacks or [])
        # consumer_tag -> consumer, for the consumers registered with the broker.
        self._open_consumers: dict[str, Consumer] = {}
        #: The backend (channel) every consumer of the set shares.
        self.backend: BaseBackend = connection.create_backend()
        auto_ack = options.get("auto_ack")
        if auto_ack is not None:
            self.auto_ack = auto_ack
        on_decode_error = options.get("on_decode_error")
        if on_decode_error is not None:
            self.on_decode_error = on_decode_error
        accept = options.get("accept")
        if accept is not None:
            self.accept = accept
        #: consumer_tag -> content types accepted (None: all), per open consumer.
        self._accepted_types: dict[str, frozenset[str] | None] = {}
        # A bad accept list fails here.
        self._set_accepted = _accepted(self.accept, connection)
        for consumer in consumers or ():
            self.add_consumer(consumer)
        for queue, queue_options in self.from_dict.items():
            self.add_consumer_from_dict(queue, **queue_options)
        recovery.install(self)  # only with BrokerConnection(auto_recover=True)

    def __enter__(self) -> ConsumerSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_consumer_from_dict(self, queue: str, **options: Any) -> Consumer:
        """Create a :class:`Consumer` for ``queue`` on this set's channel and add it.

        :keyword binding_key: accepted as the ``routing_key``.

        Other options are :class:`Consumer`'s keyword arguments.
        """
        if "binding_key" in options:
            binding_key = options.pop("binding_key")
            options.setdefault("routing_key", binding_key)
        consumer = Consumer(self.connection, queue=queue, backend=self.backend, **options)
        self.consumers.append(consumer)
        return consumer

    def add_consumer(self, consumer: Consumer) -> None:
        """Add ``consumer``; it is moved to this set's channel."""
        consumer.backend = self.backend
        self.consumers.append(consumer)

    def register_callback(self, callback: Callback) -> None:
        """Add ``callback(message_data, message)``, called for every message received."""
        self.callbacks.append(callback)

    def _receive_callback(self, raw_message: Any) -> None:
        # Hot path: runs once per delivered message. An override point too:
        # real code replaced it to see the raw message first.
        message = self.backend.message_to_python(raw_message)
        tag = message.delivery_info.get("consumer_tag")
        child = self._open_consumers.get(tag)
        settle = child is None or not child.no_ack  # no_ack: the broker knows no tag
        on_decode_error = self.on_decode_error
        if child is not None and child.on_decode_error is not None:
            on_decode_error = child.on_decode_error
        accepted = self._accepted_types.get(tag, self._set_accepted)
        if accepted is not None and not _registry.is_accepted(message.content_type, accepted):
            exc = _disallow(message, accepted)
            queue = child.queue if child is not None else None
            _undecodable(message, exc, on_decode_error, settle, queue)
            return
        if not message.acknowledged:
            if child is None:
                auto_ack = self.auto_ack
            elif child.no_ack:
                auto_ack = False  # the broker knows no such delivery tag
            elif child.callbacks:
                auto_ack = child.auto_ack  # compat: as if it consumed alone
            else:
                auto_ack = self.auto_ack
            if auto_ack:
                message.ack()
        try:
            decoded = message.payload
        # compat: any decode failure goes to on_decode_error, as in carrot:
        # a third-party Message.decode() may raise anything.
        except Exception as exc:
            queue = child.queue if child is not None else None
            if not _undecodable(message, exc, on_decode_error, settle, queue):
                raise
        else:
            self.receive(decoded, message)

    def receive(self, message_data: Any, message: BaseMessage) -> None:
        """Pass a received message to the set's callbacks, or to its consumer's.

        The consumer is found by the delivery's consumer tag. One that has
        callbacks of its own keeps them: its messages go to its callbacks
        only (and its :attr:`~Consumer.auto_ack` applies), as in carrot 0.10.

        :raises NotImplementedError: no callback is registered for the message.

        .. versionchanged:: 0.11
           A consumer with callbacks of its own gets its messages through the
           set's :meth:`_receive_callback`, so :attr:`on_decode_error`
           applies to them too (carrot 0.10 used the consumer's own, where a
           decode error propagated).
        """
        child = self._open_consumers.get(message.delivery_info.get("consumer_tag", ""))
        callbacks = child.callbacks if child is not None and child.callbacks else self.callbacks
        if not callbacks:
            raise NotImplementedError("No consumer callbacks registered")
        for callback in callbacks:
            callback(message_data, message)

    def _declare_consumer(self, consumer: Consumer, nowait: bool) -> None:
        # Registered first: while waiting for the broker's answer, deliveries
        # may already reach the callbacks, which may cancel or close the set.
        tag = consumer.consumer_tag
        if consumer.accept is not None:
            self._accepted_types[tag] = _accepted(consumer.accept, self.connection)
        else:
            self._accepted_types[tag] = _accepted(self.accept, self.connection)
        self._open_consumers[tag] = consumer
        consumer.channel_open = True
        try:
            self.backend.declare_consumer(
                queue=consumer.queue,
                no_ack=consumer.no_ack,
                callback=self._receive_callback,
                consumer_tag=tag,
                nowait=nowait,
            )
        except BaseException:
            self._open_consumers.pop(tag, None)
            consumer.channel_open = False
            raise

    def consume(self) -> None:
        """Register every consumer not yet registered with the broker.

        Consumers added since the last call start receiving too.

        .. versionchanged:: 0.11
           Every consumer is registered without waiting for the broker's
           answer (carrot 0.10 waited for the last one), so no message is
           dispatched before the caller starts draining events; an error
           (such as a missing queue) surfaces at the next drain. A set with
           no consumers does nothing (carrot 0.10 raised ``IndexError``).
        """
        # nowait for every one (carrot waited for the broker's answer to the
        # last): py-amqp would run the callbacks for messages already waiting
        # while it waits, outside the caller's drain loop.
        self._set_accepted = _accepted(self.accept, self.connection)
        for consumer in self.consumers:
            if consumer.consumer_tag not in self._open_consumers:
                self._declare_consumer(consumer, nowait=True)

    def iterconsume(self, limit: int | None = None) -> Iterator[Any]:
        """Start consuming and return an iterator over the deliveries.

        Each step yields a true value; it ends after ``limit`` steps or once
        the channel is closed.
        """
        self.consume()
        return self.backend.consume(limit=limit)

    def discard_all(self) -> int:
        """Discard the messages waiting on every queue of the set; return how many."""
        return sum(consumer.discard_all() for consumer in self.consumers)

    def flow(self, active: bool) -> None:
        """Pause (``False``) or resume (``True``) deliveries to this channel."""
        return self.backend.flow(active)

    def qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False
    ) -> None:
        """Limit the unacknowledged messages delivered at a time (0: no limit)."""
        return self.backend.qos(prefetch_size, prefetch_count, apply_global)

    def cancel(self) -> None:
        """Stop every consumer of the set (the channel stays open)."""
        open_consumers, self._open_consumers = self._open_consumers, {}
        self._accepted_types.clear()
        for tag, consumer in open_consumers.items():
            self.backend.cancel(tag)
            consumer.channel_open = False

    def cancel_by_queue(self, queue: str) -> None:
        """Stop the consumers of ``queue`` and remove them from the set.

        .. versionchanged:: 0.11
           The consumers are removed from :attr:`consumers`, so a later
           :meth:`consume` does not start them again; a queue that is not
           being consumed is ignored (carrot 0.10 raised ``KeyError``).
        """
        for tag, consumer in list(self._open_consumers.items()):
            if consumer.queue == queue:
                del self._open_consumers[tag]
                self._accepted_types.pop(tag, None)
                self.backend.cancel(tag)
                consumer.channel_open = False
        self.consumers[:] = [c for c in self.consumers if c.queue != queue]

    def close(self) -> None:
        """Stop consuming and close the channel (and any other the consumers use)."""
        self.cancel()
        backends = {id(self.backend): self.backend}
        for consumer in self.consumers:
            backends.setdefault(id(consumer.backend), consumer.backend)
            consumer._closed = True
        for backend in backends.values():
            backend.close()
