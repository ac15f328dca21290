"""The contract every backend follows, and the message it hands back.

Third-party backends subclass :class:`BaseBackend` and are named by dotted
path (``BrokerConnection(backend_cls="myapp.backends.Backend")``). Every
method has a harmless default so a backend implements only what it supports.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from carrot.exceptions import ConnectionClosedError, MessageStateError

__all__ = ["ACKNOWLEDGED_STATES", "BaseBackend", "BaseMessage", "MessageStateError"]

#: States in which a message can no longer be acked, rejected or requeued.
ACKNOWLEDGED_STATES = frozenset(["ACK", "REJECTED", "REQUEUED"])

_NOT_DECODED = object()


class BaseMessage:
    """A message received from a backend.

    :param backend: the backend that received it; ``ack()`` and friends go
        through it.
    :keyword body: the raw body: ``bytes``, or ``str`` when the transport
        already decoded it with ``content_encoding``.
    :keyword delivery_tag: the broker's tag for acknowledging it.
    :keyword content_type: the MIME type of the body.
    :keyword content_encoding: the charset of the body, or ``"binary"``.
    :keyword delivery_info: exchange, routing_key, redelivered, delivery_tag
        (and message_count after a ``get``).
    """

    #: compat: carrot exposed the error class on every message.
    MessageStateError = MessageStateError

    # compat: class-level defaults, so a subclass whose __init__ sets the
    # attributes itself (without calling ours) still decodes, acks and goes
    # through a ConsumerSet. The delivery_info default is read-only, shared.
    body: Any = None
    delivery_tag: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    delivery_info: Mapping[str, Any] = MappingProxyType({})
    _state: str | None = "RECEIVED"
    _decoded_cache: Any = _NOT_DECODED

    def __init__(self, backend: Any, **kwargs: Any) -> None:
        self.backend = backend
        self.body = kwargs.get("body")
        self.delivery_tag = kwargs.get("delivery_tag")
        self.content_type = kwargs.get("content_type")
        self.content_encoding = kwargs.get("content_encoding")
        delivery_info = kwargs.get("delivery_info")
        self.delivery_info = delivery_info if delivery_info is not None else {}
        self._decoded_cache = _NOT_DECODED
        self._state = "RECEIVED"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._state} tag={self.delivery_tag!r} "
            f"content_type={self.content_type!r} body={len(self.body or b'')}B>"
        )

    def decode(self) -> Any:
        """Deserialize the body by its content type and encoding.

        :raises carrot.exceptions.DecodeError: the body is not valid for its
            content type or charset.
        """
        from carrot import serialization

        return serialization.decode(self.body, self.content_type, self.content_encoding)

    @property
    def payload(self) -> Any:
        """The decoded body, decoded once and cached.

        .. versionchanged:: 0.11
           A decoded value that is false (``0``, ``""``, ``{}``) is cached
           too; carrot 0.10 decoded it again on every access.
        """
        if self._decoded_cache is _NOT_DECODED:
            self._decoded_cache = self.decode()
        return self._decoded_cache

    def _settle(self, method: str, state: str) -> None:
        if self._state in ACKNOWLEDGED_STATES:
            raise MessageStateError(f"Message already acknowledged with state: {self._state}")
        getattr(self.backend, method)(self.delivery_tag)
        self._state = state

    def ack(self) -> None:
        """Acknowledge this message as processed, removing it from the queue.

        :raises carrot.exceptions.MessageStateError: already acknowledged.
        """
        self._settle("ack", "ACK")

    def reject(self) -> None:
        """Reject this message; the broker drops it (or dead-letters it).

        :raises carrot.exceptions.MessageStateError: already acknowledged.
        """
        self._settle("reject", "REJECTED")

    def requeue(self) -> None:
        """Reject this message and put it back on the queue.

        :raises carrot.exceptions.MessageStateError: already acknowledged.
        """
        self._settle("requeue", "REQUEUED")

    @property
    def acknowledged(self) -> bool:
        """True once the message was acked, rejected or requeued."""
        return self._state in ACKNOWLEDGED_STATES


class BaseBackend:
    """Base class for backends; every operation defaults to doing nothing.

    :param connection: the :class:`~carrot.connection.BrokerConnection`
        holding the settings (hostname, userid, ...).
    """

    #: Port used when the connection names none.
    default_port: int | None = None
    #: Backend-specific options, from the ``extra_options`` keyword.
    extra_options: Any = None
    #: Exceptions that mean the connection is lost (retry after reconnect).
    connection_errors: tuple[type[BaseException], ...] = ()
    #: Exceptions that mean an operation on a channel failed.
    channel_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        self.connection = connection
        self.extra_options = kwargs.get("extra_options")

    def _established(self) -> Any:
        """The open connection of :attr:`connection` (opened on first use).

        :raises carrot.exceptions.ConnectionClosedError: the
            :class:`~carrot.connection.BrokerConnection` was closed.
        """
        conn = self.connection.connection
        if conn is None:
            raise ConnectionClosedError()
        return conn

    def queue_declare(self, *args: Any, **kwargs: Any) -> Any:
        """Declare a queue by name."""

    def queue_delete(self, *args: Any, **kwargs: Any) -> Any:
        """Delete a queue by name."""

    def exchange_declare(self, *args: Any, **kwargs: Any) -> Any:
        """Declare an exchange by name."""

    def queue_bind(self, *args: Any, **kwargs: Any) -> Any:
        """Bind a queue to an exchange."""

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """Pop a message off the queue, or return ``None``."""

    def declare_consumer(self, *args: Any, **kwargs: Any) -> Any:
        """Start consuming a queue with a callback."""

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        """Iterate over the declared consumers, yielding per message."""

    def cancel(self, *args: Any, **kwargs: Any) -> Any:
        """Cancel a consumer by its tag."""

    def ack(self, delivery_tag: Any) -> Any:
        """Acknowledge a message."""

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        """Discard every message in ``queue``; return how many."""
        return 0

    def reject(self, delivery_tag: Any) -> Any:
        """Reject a message (drop it)."""

    def requeue(self, delivery_tag: Any) -> Any:
        """Reject a message and put it back on the queue."""

    def purge(self, queue: str, **kwargs: Any) -> int:
        """Alias of :meth:`queue_purge`."""
        return self.queue_purge(queue, **kwargs)

    def message_to_python(self, raw_message: Any) -> Any:
        """Wrap a raw transport message in this backend's message class."""
        return raw_message

    def prepare_message(self, message_data: Any, delivery_mode: Any, **kwargs: Any) -> Any:
        """Build the transport message to publish."""
        return message_data

    def publish(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> Any:
        """Publish a prepared message."""

    def close(self) -> None:
        """Close the channel, if any."""

    def establish_connection(self) -> Any:
        """Open and return the underlying connection."""

    def close_connection(self, connection: Any) -> None:
        """Close a connection made by :meth:`establish_connection`."""

    def flow(self, active: bool) -> Any:
        """Pause (``False``) or resume (``True``) deliveries."""

    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> Any:
        """Limit unacknowledged deliveries."""

    #: ``True`` when :meth:`publish` returns only once the transport holds
    #: the message (an in-process queue), so ``Publisher(confirm=True)``
    #: counts each message confirmed as soon as :meth:`publish` returns.
    confirms_on_publish: bool = False

    def confirm_select(self, window: Any) -> None:
        """Put the channel in publisher-confirm mode; report the broker's answers to ``window``.

        ``window`` is a :class:`carrot.confirms.ConfirmWindow`: call its
        ``acked``, ``nacked`` and ``returned`` as the broker answers.

        :raises NotImplementedError: this backend has no publisher confirms.

        .. versionadded:: 0.11
        """
        if not self.confirms_on_publish:
            raise NotImplementedError(
                f"the {type(self).__module__}.{type(self).__name__} backend has no publisher "
                "confirms: Publisher(confirm=True) needs a backend that has them (amqp, pika, "
                "memory)"
            )

    def drain_confirms(self, timeout: float) -> None:
        """Read the broker's answers for up to ``timeout`` seconds (see :meth:`confirm_select`).

        With :attr:`confirms_on_publish` there is nothing to read.

        .. versionadded:: 0.11
        """
        if not self.confirms_on_publish:
            raise NotImplementedError(
                f"{type(self).__name__}.drain_confirms: the backend has no publisher confirms"
            )


class FlowByCancelMixin:
    """``flow()`` for brokers that cannot pause a channel: cancel, then consume again.

    RabbitMQ refuses ``channel.flow(active=False)`` and STOMP and kombu's
    virtual transports have no flow control, so pausing cancels the
    backend's consumers and resuming declares them again with the same tags
    and callbacks. The backend keeps :attr:`_consumers` up to date in
    ``declare_consumer`` and ``cancel``, and forgets :attr:`_paused` when its
    channel goes away.

    .. versionadded:: 0.11

    .. versionchanged:: 0.11
       carrot 0.10's AMQP backends sent ``channel.flow``, which RabbitMQ
       refuses by closing the connection.
    """

    #: consumer_tag -> (queue, no_ack, callback) of the running consumers.
    _consumers: dict[str, tuple[str, bool, Any]]
    #: The consumers ``flow(False)`` cancelled, to restart on ``flow(True)``.
    _paused: dict[str, tuple[str, bool, Any]] | None = None

    def flow(self, active: bool) -> None:
        """Pause (``False``) or resume (``True``) deliveries to this backend's consumers.

        Messages already received (within the prefetch window) still reach
        the callbacks.
        """
        if active:
            paused, self._paused = self._paused, None
            for tag, (queue, no_ack, callback) in (paused or {}).items():
                self.declare_consumer(queue, no_ack, callback, tag)  # type: ignore[attr-defined]
        elif self._paused is None:
            paused = dict(self._consumers)
            for tag in paused:
                self.cancel(tag)  # type: ignore[attr-defined]
            self._paused = paused
