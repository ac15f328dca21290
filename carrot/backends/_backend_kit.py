"""Building blocks a backend module opts into: lazy client imports, publish flags, mixins.

:mod:`carrot.backends.base` re-exports every name here, their public home
(see its docstring for what each is for); a backend imports them from there.

* :func:`import_client` and :class:`ClientAttribute`: the optional client
  library, imported only when the backend is used;
* :func:`publish_flags`: ``immediate`` emulated as RabbitMQ documents it;
* :class:`FlowByCancelMixin`: the consumer registry and ``flow()`` by
  cancel/consume;
* :class:`ChannelSettleMixin`: ``ack``/``reject``/``requeue`` on an
  AMQP-style channel;
* :class:`ChannelDeclareMixin`: ``queue_declare`` on an AMQP-style channel.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from carrot.exceptions import ClientNotInstalled

if TYPE_CHECKING:
    from carrot.connection import BrokerConnection

__all__ = [
    "IMMEDIATE_EXPIRATION",
    "ChannelDeclareMixin",
    "ChannelSettleMixin",
    "ClientAttribute",
    "ConsumerCallback",
    "FlowByCancelMixin",
    "import_client",
    "publish_flags",
]

#: What a consumer's callback receives: the backend's raw message (the
#: consumer turns it into a :class:`~carrot.backends.base.BaseMessage` with ``message_to_python``).
ConsumerCallback = Callable[[Any], object]


def import_client(module: str, package: str, backend: str | None = None) -> ModuleType:
    """Import the optional client library ``module`` when a backend needs it.

    :param module: the module to import (``"pika"``, ``"stomp"``).
    :param package: the pip package that provides it (``"stomp.py"``).
    :param backend: the backend's name for the message (default: ``module``).
    :raises carrot.exceptions.ClientNotInstalled: (an ``ImportError``) it is
        missing; the message names the pip package.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ClientNotInstalled(backend or module, package) from exc


class ClientAttribute:
    """A class attribute taken from an optional client library when it is read.

    A backend module imports (and its docs build) without the client;
    reading the attribute then gives ``missing``. Used for error tuples
    (``connection_errors``) and client classes::

        def _errors():
            from pika import exceptions

            return (exceptions.AMQPConnectionError, OSError)

        connection_errors = ClientAttribute(_errors, ())

    :param resolve: returns the value; may import the client.
    :param missing: the value when ``resolve`` raises :exc:`ImportError`.
    """

    def __init__(self, resolve: Callable[[], Any], missing: Any = None) -> None:
        self.resolve = resolve
        self.missing = missing

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        try:
            return self.resolve()
        except ImportError:
            return self.missing


#: The per-message TTL RabbitMQ documents as the replacement for ``immediate``.
IMMEDIATE_EXPIRATION = "0"


def publish_flags(mandatory: object, immediate: object) -> tuple[bool, str | None]:
    """``(mandatory, expiration)`` to send for carrot's ``mandatory``/``immediate``.

    RabbitMQ 3.0+ refuses the AMQP ``immediate`` flag by closing the
    connection, so it is emulated: the message goes ``mandatory`` with a
    per-message TTL of 0 (``expiration`` ``"0"``), which RabbitMQ documents
    as the replacement. ``expiration`` is ``None`` when nothing is to be set.

    >>> publish_flags(None, True)
    (True, '0')
    >>> publish_flags(None, None)
    (False, None)
    """
    # Hot path (every publish): no allocation beyond the tuple.
    if immediate:
        return True, IMMEDIATE_EXPIRATION
    return bool(mandatory), None


class FlowByCancelMixin:
    """The consumer registry, and ``flow()`` for brokers that cannot pause a channel.

    RabbitMQ refuses ``channel.flow(active=False)`` and STOMP and kombu's
    virtual transports have no flow control, so pausing cancels the
    backend's consumers and resuming declares them again with the same tags
    and callbacks. The backend records each consumer with
    :meth:`remember_consumer` in ``declare_consumer``, calls
    :meth:`forget_consumer` in ``cancel`` and :meth:`forget_consumers` when
    its channel goes away.

    .. versionadded:: 0.11

    .. versionchanged:: 0.11
       carrot 0.10's AMQP backends sent ``channel.flow``, which RabbitMQ
       refuses by closing the connection.
    """

    #: consumer_tag -> (queue, no_ack, callback) of the running consumers.
    _consumers: dict[str, tuple[str, bool, ConsumerCallback]]
    #: The consumers ``flow(False)`` cancelled, to restart on ``flow(True)``.
    _paused: dict[str, tuple[str, bool, ConsumerCallback]] | None = None

    def __init__(self, connection: BrokerConnection, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)  # type: ignore[call-arg]
        self._consumers = {}
        self._paused = None

    def remember_consumer(
        self, consumer_tag: str, queue: str, no_ack: bool, callback: ConsumerCallback
    ) -> None:
        """Record a consumer ``declare_consumer`` starts (``flow(True)`` restarts it)."""
        self._consumers[consumer_tag] = (queue, no_ack, callback)

    def forget_consumer(self, consumer_tag: str) -> bool:
        """Drop ``consumer_tag`` from the registry in ``cancel``.

        :returns: True when ``flow(False)`` had already cancelled it at the
            broker, so ``cancel`` has nothing more to send (and ``flow(True)``
            will not restart it).
        """
        self._consumers.pop(consumer_tag, None)
        return self._paused is not None and self._paused.pop(consumer_tag, None) is not None

    def forget_consumers(self) -> None:
        """Forget every consumer: the channel closed, they ended with it."""
        self._consumers.clear()
        self._paused = None

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


class ChannelSettleMixin:
    """``ack``, ``reject`` and ``requeue`` on the backend's AMQP-style :attr:`channel`.

    For backends whose ``channel`` has ``basic_ack(delivery_tag)`` and
    ``basic_reject(delivery_tag, requeue=...)`` (py-amqp, pika, kombu).

    .. versionadded:: 0.11
    """

    channel: Any

    def ack(self, delivery_tag: Any) -> None:
        """Acknowledge a delivery."""
        # Hot path (every ack).
        self.channel.basic_ack(delivery_tag)

    def reject(self, delivery_tag: Any) -> None:
        """Reject a delivery; the broker drops (or dead-letters) it."""
        self.channel.basic_reject(delivery_tag, requeue=False)

    def requeue(self, delivery_tag: Any) -> None:
        """Reject a delivery and put it back on its queue."""
        self.channel.basic_reject(delivery_tag, requeue=True)


class ChannelDeclareMixin:
    """``queue_declare`` on the backend's AMQP-style :attr:`channel`.

    For backends whose ``channel.queue_declare`` takes AMQP's keywords
    (py-amqp, pika, kombu). :meth:`_declare_ok` turns the channel's reply
    into what the backend returns (by default the reply itself).

    .. versionadded:: 0.11
    """

    channel: Any
    #: The backend's :meth:`~carrot.backends.base.BaseBackend.warn_if_queue_exists`.
    warn_if_queue_exists: Callable[..., None]

    def queue_declare(
        self,
        queue: str,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        warn_if_exists: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Any:
        """Declare a queue.

        :keyword warn_if_exists: warn with
            :class:`~carrot.backends.base.QueueAlreadyExistsWarning` when
            the queue is already there.
        """
        if warn_if_exists:
            self.warn_if_queue_exists(queue)
        return self._declare_ok(
            self.channel.queue_declare(
                queue=queue,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=arguments,
            )
        )

    @staticmethod
    def _declare_ok(reply: Any) -> Any:
        return reply
