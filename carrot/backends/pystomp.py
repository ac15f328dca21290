"""STOMP backend on stomp.py, mapping carrot's AMQP model onto RabbitMQ's STOMP destinations.

Named ``"stomp"`` or ``"stompy"``::

    BrokerConnection(hostname="127.0.0.1", userid="guest", password="guest",
                     backend_cls="stomp")

The port defaults to 61613; the virtual host travels in the STOMP ``host``
header (RabbitMQ reads its virtual host from there). It needs ``stomp.py``
(8.x or 9.x): ``pip install stomp.py``. Importing this module does not;
creating a :class:`Backend` without it raises
:exc:`~carrot.exceptions.ClientNotInstalled`.

Features:

* publish with content type, content encoding, ``delivery_mode``
  (``persistent`` header), ``priority`` and headers; bodies are bytes both
  ways, so binary payloads survive; messages interoperate with AMQP
  clients of the same RabbitMQ (properties map to headers and back);
* ``queue_declare`` of a queue that is neither exclusive nor auto-delete
  creates it on the broker (a short subscription to ``/queue/Q`` with the
  ``durable``/``auto-delete`` headers and ``x-*`` arguments, on a separate
  STOMP connection that is then closed);
* ``queue_bind(Q, E, K)`` binds for real: a short subscription to
  ``/exchange/E/K`` with ``x-queue-name: Q`` makes RabbitMQ declare ``Q``
  and bind it to ``E`` with ``K``; messages published afterwards are routed
  into ``Q`` even before anyone consumes;
* consumers (``ack: client-individual``, or ``auto`` with ``no_ack``), with
  ``qos(prefetch_count=N)`` sent as ``prefetch-count`` on later
  subscriptions; ack, reject (``NACK`` with ``requeue: false``, dropped or
  dead-lettered) and requeue (``NACK``, redelivered with ``redelivered``);
* ``get`` and ``queue_purge``, emulated (see below);
* ``delivery_info`` with exchange and routing_key (from the ``destination``
  header), redelivered, delivery_tag and consumer_tag;
* STOMP has no channels: the backends made from one
  :class:`~carrot.connection.BrokerConnection` share its STOMP connection
  (:class:`Connection`), whose ``drain_events`` serves all their consumers;
* errors: an ERROR frame raises :exc:`StompError` (in ``channel_errors``); a
  lost, refused or timed-out connection raises :exc:`StompConnectionError`
  or stomp.py's ``ConnectFailedException`` (in ``connection_errors``).

Thread safety: stomp.py reads frames on a thread of its own. That thread
only puts them on a :class:`queue.Queue`; callbacks run in the thread that
calls :meth:`Connection.drain_events` (``BrokerConnection.drain_events``)
or iterates :meth:`Backend.consume`, never on stomp.py's thread.

Limits (STOMP is not AMQP):

* **No exchange declaration.** ``exchange_declare`` does nothing: an
  exchange must already exist (RabbitMQ's ``amq.direct``, ``amq.topic``,
  ``amq.fanout``, ``amq.headers``, or one declared over AMQP). Binding a
  queue to a missing one raises :exc:`StompError`; publishing to one makes
  RabbitMQ send an ERROR frame (raised by the next ``drain_events``) and
  close the connection, as AMQP closes the channel.
* **Bindings without arguments.** A headers-exchange binding's arguments
  cannot be sent; ``queue_bind`` of an exclusive or auto-delete queue is
  remembered and made when the queue is first consumed (a queue created by
  a short subscription would be deleted when it ends); only its first
  binding is used then.
* **get() waits, and prefetches one.** STOMP has no ``basic.get``:
  :meth:`Backend.get` subscribes to the queue (``prefetch-count: 1``) on a
  STOMP connection of its own and waits up to :attr:`Backend.get_timeout`
  seconds, so an empty queue costs that long (and a message still on its way
  when the wait ends stays in the queue). The message's connection stays
  open until it is acked, rejected or requeued; then the subscription is kept
  for the next ``get`` of that queue, and the broker may already have sent it
  the next message, which other consumers do not see until that ``get``. It
  goes back to the queue (marked ``redelivered``) when the queue is consumed
  by this backend, or when the backend closes; an empty ``get`` closes it.
  ``message_count`` is not known.
* **queue_purge counts what it drains**: it consumes (``ack: auto``) until
  no message comes for :attr:`Backend.purge_quiet_time` seconds.
* ``flow(False)`` unsubscribes the consumers, ``flow(True)`` subscribes them
  again;
* ``queue_delete`` and ``exchange_declare`` do nothing; ``qos``
  applies to subscriptions made after it; ``prefetch_size`` and
  ``apply_global`` are ignored; ``mandatory``/``immediate`` are ignored.
* A consumer cancelled while deliveries of it are unsettled stays
  subscribed until they are settled (STOMP refuses an ACK after
  ``UNSUBSCRIBE``); deliveries that reach it meanwhile are requeued when
  drained. A message in flight at ``UNSUBSCRIBE`` stays unacknowledged
  until the connection closes, then RabbitMQ redelivers it.
* stomp.py adds a ``content-length`` header to what it sends, which AMQP
  consumers see among the message headers.
* Heart-beats are off (:attr:`Backend.heartbeats`); the connection is
  watched by TCP only.

.. versionchanged:: 0.11
   Runs on stomp.py (carrot 0.10 used stompy). carrot 0.10 sent every
   message to the destination named by the *exchange*, ignoring the routing
   key; now an exchange name maps to ``/exchange/<exchange>/<routing_key>``,
   and a name starting with ``/`` is still taken as a destination.
   ``reject`` and ``requeue`` work (carrot 0.10 raised NotImplementedError);
   ``get`` waits up to :attr:`Backend.get_timeout` instead of reading
   only what had already arrived.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from carrot.backends._stomp_consuming import Message, StompConsuming
from carrot.backends._stomp_destinations import (
    KnownQueues,
    consume_destination,
    destination_info,
    publish_destination,
)
from carrot.backends._stomp_errors import StompConnectionError, StompError
from carrot.backends._stomp_publishing import StompPublishing
from carrot.backends._stomp_side import SideConnections
from carrot.backends._stomp_subscriptions import Subscription
from carrot.backends._stomp_wire import DEFAULT_PORT, Connection
from carrot.backends.base import ClientAttribute, import_client

if TYPE_CHECKING:
    from carrot.connection import BrokerConnection

__all__ = [
    "DEFAULT_PORT",
    "Backend",
    "Connection",
    "Message",
    "StompConnectionError",
    "StompError",
    "consume_destination",
    "destination_info",
    "publish_destination",
]

# Public names defined in private modules are documented, shown in
# tracebacks and pickled under this module, their public home.
for _public in (
    Connection,
    Message,
    StompConnectionError,
    StompError,
):
    _public.__module__ = __name__
del _public


def _import_stomp() -> ModuleType:
    return import_client("stomp", "stomp.py")


def _connection_errors() -> tuple[type[BaseException], ...]:
    from stomp import exception

    stomp_errors = (
        exception.ConnectFailedException,
        exception.NotConnectedException,
        exception.ConnectionClosedException,
    )
    return (StompConnectionError, OSError, *stomp_errors)


def _declare_args(
    durable: bool = True,
    exclusive: bool = False,
    auto_delete: bool = False,
    warn_if_exists: bool = False,
    arguments: dict[str, Any] | None = None,
    *ignored: Any,
    **ignored_keywords: Any,
) -> dict[str, Any]:
    # queue_declare's arguments after the queue name, by position or keyword.
    return {
        "durable": durable,
        "exclusive": exclusive,
        "auto_delete": auto_delete,
        "arguments": arguments,
    }


class Backend(StompPublishing, StompConsuming):
    """carrot's backend for RabbitMQ's STOMP plugin, on stomp.py.

    Its receiving half (consumers, ``get``, settling) is
    :class:`~carrot.backends._stomp_consuming.StompConsuming`, its sending
    half (``publish``, confirms) :class:`~carrot.backends._stomp_publishing.StompPublishing`.

    :param connection: the :class:`~carrot.connection.BrokerConnection`
        (hostname, userid, password, virtual_host, port, connect_timeout,
        ssl).
    :raises carrot.exceptions.ClientNotInstalled: stomp.py is not installed.
    """

    Message = Message
    default_port = DEFAULT_PORT
    #: compat: carrot 0.10's client class attribute (stompy's ``Stomp``);
    #: here stomp.py's ``Connection12``, which connections are made with.
    Stomp = ClientAttribute(lambda: _import_stomp().Connection12)
    #: Lost or failed connections: ours and stomp.py's.
    connection_errors = ClientAttribute(_connection_errors, (StompConnectionError, OSError))
    #: An ERROR frame from the broker.
    channel_errors: tuple[type[BaseException], ...] = (StompError,)
    #: A refused login (an ERROR frame) is a channel error, so every
    #: connection error is worth retrying.
    recoverable_connection_errors = connection_errors
    protocol = "STOMP"
    #: ``mandatory`` is ignored: nothing is ever returned.
    returns_unroutable = False
    default_exchange_note = "STOMP: /amq/queue/, no exchange declared"
    subscribe_before_publish = True

    #: Seconds :meth:`get` waits for a message before returning ``None``.
    get_timeout: float = 0.5
    #: Seconds without a message after which :meth:`queue_purge` stops.
    purge_quiet_time: float = 0.2
    #: Most seconds :meth:`queue_purge` spends draining.
    purge_max_time: float = 30.0
    #: STOMP heart-beats ``(send_ms, receive_ms)``; off.
    heartbeats: tuple[int, int] = (0, 0)

    def __init__(self, connection: BrokerConnection, **kwargs: Any) -> None:
        _import_stomp()
        super().__init__(connection, **kwargs)
        #: consumer_tag -> its subscription.
        self._subscriptions: dict[str, Subscription] = {}
        #: The queues this backend declared or bound, and where to consume them.
        self._queues = KnownQueues()
        #: get(), queue_purge() and declarations, on connections of their own.
        self._side = SideConnections(self._new_connection)
        #: Set by :meth:`qos`: ``prefetch-count`` of later subscriptions.
        self.prefetch_count = 0

    # -- connections ---------------------------------------------------------

    def _new_connection(self) -> Connection:
        self.check_settings("hostname", kind="STOMP")
        conninfo = self.connection
        assert conninfo.hostname is not None  # check_settings raised otherwise
        conn = Connection(
            conninfo.hostname,
            int(conninfo.port or self.default_port),
            conninfo.userid,
            conninfo.password,
            conninfo.virtual_host,
            conninfo.connect_timeout,
            self.heartbeats,
            getattr(conninfo, "ssl", False),
            client_cls=self.Stomp,
        )
        conn.client = conninfo
        return conn.connect()

    def establish_connection(self) -> Connection:
        """Connect to the broker; every backend of the BrokerConnection shares it.

        :raises carrot.exceptions.MissingConnectionSetting: no hostname.
        """
        return self._new_connection()

    def close_connection(self, connection: Connection) -> None:
        """Close a connection from :meth:`establish_connection`."""
        connection.close()

    @property
    def channel(self) -> Connection:
        """The shared :class:`Connection` (STOMP has no channels).

        :raises carrot.exceptions.ConnectionClosedError: the
            :class:`~carrot.connection.BrokerConnection` was closed.
        """
        conn: Connection = self._established()
        return conn

    def close(self) -> None:
        """Cancel this backend's consumers and return unsettled ``get`` messages."""
        self._paused = None  # a later flow(True) has nothing to resume
        for tag in list(self._subscriptions):
            self.cancel(tag)
        self._side.close()

    # -- declarations -----------------------------------------------------------

    def queue_declare(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """Remember ``queue``'s properties; create it now unless exclusive or auto-delete.

        The other arguments are ``durable=True``, ``exclusive=False``,
        ``auto_delete=False``, ``warn_if_exists=False`` and
        ``arguments=None``, by position or keyword (``warn_if_exists`` is
        ignored: STOMP cannot ask whether a queue exists); more are
        accepted and ignored, as carrot 0.10 did.

        :raises StompError: it exists with other properties.
        """
        subscription = self._queues.declare(queue, _declare_args(*args, **kwargs))
        if subscription is not None:
            self._side.subscribe_briefly(*subscription)
            self._queues.created(queue)

    def exchange_declare(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing: STOMP cannot declare exchanges (see the module's limits)."""

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> int:
        """Forget ``queue``; STOMP cannot delete it, so it stays on the broker. Returns 0.

        An exclusive or auto-delete queue goes when its last consumer does.
        """
        self._queues.forget(queue)
        return 0

    def exchange_exists(self, exchange: str) -> None:
        """``None``: STOMP cannot ask (publishing to a missing exchange closes the connection)."""
        return None

    def round_trip(self) -> tuple[str, Callable[[], object]]:
        """A SUBSCRIBE answered by its receipt, then UNSUBSCRIBE, on a ``/topic/`` of its own.

        RabbitMQ removes the topic's auto-delete queue at the UNSUBSCRIBE.
        """
        connection = self._established()
        destination = f"/topic/carrot.ping.{uuid.uuid4().hex[:12]}"

        def operation() -> None:
            connection.unsubscribe(connection.subscribe(destination, ack="auto"))

        return "SUBSCRIBE receipt", operation

    def queue_bind(
        self, queue: str, exchange: str, routing_key: Any, arguments: dict[str, Any] | None = None
    ) -> None:
        """Bind ``queue`` to ``exchange`` with ``routing_key``.

        Done by a short subscription to ``/exchange/<exchange>/<routing_key>``
        with ``x-queue-name: <queue>``. ``arguments`` cannot be sent. An
        exclusive or auto-delete queue is bound when it is first consumed.
        """
        subscription = self._queues.bind(queue, exchange, routing_key)
        if subscription is not None:
            self._side.subscribe_briefly(*subscription)
            self._queues.created(queue)

    def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` is known to exist (STOMP cannot ask the broker)."""
        return queue in self._queues.existing
