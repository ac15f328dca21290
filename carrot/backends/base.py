"""The contract every backend follows, the message it hands back, and the helpers backends share.

Third-party backends subclass :class:`BaseBackend` and are named by dotted
path (``BrokerConnection(backend_cls="myapp.backends.Backend")``). What a
backend must provide (what moves, settles or counts messages) raises
:exc:`NotImplementedError` naming the backend class and the method until the
backend defines it; the defaults that remain do real work, or do nothing
where that is the true answer (a backend with no connection of its own, or
whose queues need no declaration, as carrot 0.10's defaults allowed).

Helpers for backends (used by every backend in :mod:`carrot.backends`):

* :func:`import_client`: import an optional client library lazily, raising
  :exc:`~carrot.exceptions.ClientNotInstalled` naming the pip package, and
  :class:`ClientAttribute` for class attributes taken from that library;
* :meth:`BaseBackend.check_settings`: :exc:`~carrot.exceptions.MissingConnectionSetting`
  for an unset hostname, userid or password;
* :meth:`BaseBackend.warn_if_queue_exists`: ``queue_declare(warn_if_exists=True)``;
* :meth:`BaseBackend.record_return`: the returned-message log and
  :attr:`BaseBackend.returned_messages`;
* :func:`publish_flags`: ``immediate`` emulated as RabbitMQ documents it;
* :class:`FlowByCancelMixin`: the consumer registry, ``flow()`` by
  cancel/consume, and forgetting the consumers when the channel closes;
* :class:`ChannelSettleMixin`, :class:`ChannelDeclareMixin`:
  ``ack``/``reject``/``requeue`` and ``queue_declare`` on an AMQP-style channel.

.. versionchanged:: 0.11
   carrot 0.10's :class:`BaseBackend` did nothing in every method, so a
   backend missing ``publish`` or ``ack`` lost messages silently; now those
   raise :exc:`NotImplementedError` naming the backend and the method.
"""

from __future__ import annotations

import collections
import functools
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

# compat: names written ``X as X`` are not public API but were importable from
# here before the helpers moved out; backends still import them from here.
from carrot.backends._backend_defaults import BackendDefaults, ReturnedMessage
from carrot.backends._backend_defaults import _text as _text
from carrot.backends._backend_kit import IMMEDIATE_EXPIRATION as IMMEDIATE_EXPIRATION
from carrot.backends._backend_kit import (
    ChannelDeclareMixin,
    ChannelSettleMixin,
    ClientAttribute,
    FlowByCancelMixin,
    import_client,
    publish_flags,
)
from carrot.backends._backend_kit import ConsumerCallback as ConsumerCallback
from carrot.exceptions import ClientNotInstalled as ClientNotInstalled
from carrot.exceptions import ConnectionClosedError as ConnectionClosedError
from carrot.exceptions import MessageStateError
from carrot.exceptions import MissingConnectionSetting as MissingConnectionSetting

if TYPE_CHECKING:
    from carrot.connection import BrokerConnection

__all__ = [
    "ACKNOWLEDGED_STATES",
    "RETURNED_MESSAGES_MAX",
    "BaseBackend",
    "BaseMessage",
    "ChannelDeclareMixin",
    "ChannelSettleMixin",
    "ClientAttribute",
    "FlowByCancelMixin",
    "MessageStateError",
    "QueueAlreadyExistsWarning",
    "ReturnedMessage",
    "import_client",
    "publish_flags",
]

logger = logging.getLogger("carrot.backends")

#: States in which a message can no longer be acked, rejected or requeued.
ACKNOWLEDGED_STATES = frozenset(["ACK", "REJECTED", "REQUEUED"])

#: How many returned messages :attr:`BaseBackend.returned_messages` keeps.
RETURNED_MESSAGES_MAX = 1000

_NOT_DECODED = object()

_P = ParamSpec("_P")
_R = TypeVar("_R")

# compat: the helpers for backends live in private modules; this is their
# public home, where backends (ours and third-party) import them from, and
# where they are documented, shown in tracebacks and pickled.
for _public in (
    ChannelDeclareMixin,
    ChannelSettleMixin,
    ClientAttribute,
    FlowByCancelMixin,
    ReturnedMessage,
    import_client,
    publish_flags,
):
    _public.__module__ = __name__
del _public


class QueueAlreadyExistsWarning(UserWarning):
    """A queue with that name already exists, so a new one was not created."""


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
    # compat: None before __init__ runs, as in carrot (a subclass that never
    # calls it still settles: None is not an acknowledged state).
    _state: str | None = None
    _decoded_cache: Any = _NOT_DECODED

    def __init__(self, backend: BaseBackend, **kwargs: Any) -> None:
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


def _must_provide(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Mark a contract method: calling it before a backend defines it raises.

    The result keeps ``method``'s signature for type checkers, so callers
    see the contract's parameter and return types.
    """
    name = method.__name__

    def contract(self: object, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__module__}.{type(self).__qualname__} does not implement "
            f"{name}(), which the carrot backend contract requires"
        )

    return cast("Callable[_P, _R]", functools.wraps(method)(contract))


class BaseBackend(BackendDefaults):
    """Base class for backends: the contract, and helpers for implementing it.

    :param connection: the :class:`~carrot.connection.BrokerConnection`
        holding the settings (hostname, userid, ...).

    .. versionchanged:: 0.11
       The methods that move, settle or count messages (``publish``,
       ``get``, ``declare_consumer``, ``consume``, ``cancel``, ``ack``,
       ``reject``, ``requeue``, ``queue_purge``, ``queue_delete``, ``flow``,
       ``qos``) raise :exc:`NotImplementedError` naming the backend and the
       method until the backend defines them; carrot 0.10 did nothing there,
       so a backend missing one lost messages silently.
    """

    #: Port used when the connection names none.
    default_port: int | None = None
    #: Backend-specific options, from the ``extra_options`` keyword.
    extra_options: Any = None
    #: Exceptions that mean the connection is lost (retry after reconnect).
    connection_errors: tuple[type[BaseException], ...] = ()
    #: Exceptions that mean an operation on a channel failed.
    channel_errors: tuple[type[BaseException], ...] = ()
    #: The connection errors worth retrying (``BrokerConnection.ensure_connection``
    #: retries these and raises the others at once): not a refused login or
    #: virtual host. ``None`` means every one of :attr:`connection_errors`.
    recoverable_connection_errors: tuple[type[BaseException], ...] | None = None
    #: The wire protocol as users know it (``carrot ping``/``bench`` print it).
    protocol: str = "AMQP"
    #: How publishing to the default exchange reaches a queue, when it is
    #: not AMQP's way (``carrot demo`` prints it); ``""`` for AMQP.
    default_exchange_note: str = ""
    #: True where a queue exists only while it is subscribed to (RabbitMQ's
    #: exclusive STOMP queues): publishing before subscribing loses messages.
    subscribe_before_publish: bool = False
    #: True where ``publish(mandatory=True)`` has the broker return an
    #: unroutable message onto :attr:`returned_messages` (AMQP brokers do).
    returns_unroutable: bool = True

    def __init__(self, connection: BrokerConnection, **kwargs: Any) -> None:
        self.connection = connection
        self.extra_options = kwargs.get("extra_options")
        #: Messages the broker returned as unroutable (``mandatory=True``),
        #: newest last, as ``(reply_code, reply_text, exchange, routing_key,
        #: message)`` (a :class:`ReturnedMessage`); filled by :meth:`record_return`.
        self.returned_messages: collections.deque[ReturnedMessage] = collections.deque(
            maxlen=RETURNED_MESSAGES_MAX
        )

    # -- the contract: required ---------------------------------------------

    @_must_provide
    def queue_delete(self, *args: Any, **kwargs: Any) -> Any:
        """Delete a queue by name (required)."""

    @_must_provide
    def get(self, *args: Any, **kwargs: Any) -> BaseMessage | None:
        """Pop a message off the queue, or return ``None`` (required)."""

    @_must_provide
    def declare_consumer(self, *args: Any, **kwargs: Any) -> Any:
        """Start consuming a queue with a callback (required)."""

    @_must_provide
    def consume(self, *args: Any, **kwargs: Any) -> Iterator[Any]:  # type: ignore[empty-body]
        """Iterate over the declared consumers, yielding per message (required)."""
        # empty-body: _must_provide replaces this body; backends override it.

    @_must_provide
    def cancel(self, *args: Any, **kwargs: Any) -> None:
        """Cancel a consumer by its tag (required)."""

    @_must_provide
    def ack(self, delivery_tag: Any) -> None:
        """Acknowledge a message (required)."""

    @_must_provide
    def reject(self, delivery_tag: Any) -> None:
        """Reject a message, dropping it (required)."""

    @_must_provide
    def requeue(self, delivery_tag: Any) -> None:
        """Reject a message and put it back on the queue (required)."""

    @_must_provide
    def queue_purge(self, queue: str, **kwargs: Any) -> int:  # type: ignore[empty-body]
        """Discard every message in ``queue``; return how many (required)."""
        # empty-body: _must_provide replaces this body; backends override it.

    @_must_provide
    def publish(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> Any:
        """Publish a prepared message (required)."""

    @_must_provide
    def flow(self, active: bool) -> None:
        """Pause (``False``) or resume (``True``) deliveries (required)."""

    @_must_provide
    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> None:
        """Limit unacknowledged deliveries (required)."""

    # -- the contract: defaults -----------------------------------------------
    # compat: carrot 0.10's do-nothing defaults, kept where doing nothing is
    # a true answer: a backend with no connection of its own, or whose queues
    # need no declaration (ghettoq-style backends implement none of these).

    def establish_connection(self) -> Any:
        """Open and return the underlying connection; ``None``: the backend has none."""

    def close_connection(self, connection: Any) -> None:
        """Close a connection made by :meth:`establish_connection` (none: nothing to close)."""

    def queue_declare(self, *args: Any, **kwargs: Any) -> Any:
        """Declare a queue by name; the default is for backends whose queues need none."""

    def exchange_declare(self, *args: Any, **kwargs: Any) -> Any:
        """Declare an exchange by name; the default is for backends that need none."""

    def queue_bind(self, *args: Any, **kwargs: Any) -> Any:
        """Bind a queue to an exchange; the default is for backends without routing."""

    def close(self) -> None:
        """Close the channel; a backend that holds none has nothing to close."""

    def purge(self, queue: str, **kwargs: Any) -> int:
        """Alias of :meth:`queue_purge`."""
        return self.queue_purge(queue, **kwargs)

    def message_to_python(self, raw_message: Any) -> Any:
        """Wrap a raw transport message in this backend's message class.

        The default hands ``raw_message`` over as it is (for backends whose
        consumers already receive :class:`BaseMessage` objects), as carrot 0.10 did.
        """
        return raw_message

    def prepare_message(self, message_data: Any, delivery_mode: Any, **kwargs: Any) -> Any:
        """Build the transport message to publish.

        The default publishes ``message_data`` as it is, as carrot 0.10 did.
        """
        return message_data

    # queue_exists, exchange_exists, server_description, round_trip,
    # collect_returns, check_settings, record_return, confirm_select and
    # drain_confirms (newer than carrot 0.10) come from BackendDefaults
    # (_backend_defaults.py); they are documented here.

    # -- helpers for backends --------------------------------------------------

    def warn_if_queue_exists(self, queue: str, stacklevel: int = 3) -> None:
        """``queue_declare(warn_if_exists=True)``: warn when ``queue`` is already there.

        :keyword stacklevel: as :func:`warnings.warn`; the default points at
            the caller of the backend's ``queue_declare``.
        """
        if self.queue_exists(queue):
            warnings.warn(
                QueueAlreadyExistsWarning(f"{QueueAlreadyExistsWarning.__doc__} (queue {queue!r})"),
                stacklevel=stacklevel,
            )

    #: ``True`` when :meth:`publish` returns only once the transport holds
    #: the message (an in-process queue), so ``Publisher(confirm=True)``
    #: counts each message confirmed as soon as :meth:`publish` returns.
    confirms_on_publish: bool = False
