"""AMQP 0-9-1 through pika 1.x (``backend_cls="pika"``, ``"pikachu"``, ``"syncpika"``).

Features:

* every exchange type (direct, topic, fanout, headers), durable and
  auto-delete exchanges and queues, queue arguments and binding arguments;
* consumers with callbacks, ``basic_get``, ack / reject / requeue, qos;
* ``mandatory`` publishing; returned messages are logged and kept on
  :attr:`Backend.returned_messages`; ``immediate`` emulated as the py-amqp
  backend does (``mandatory`` plus a per-message TTL of 0);
* a consumer the broker cancels (its queue deleted) makes the next
  ``drain_events``/``consume`` raise :exc:`pika.exceptions.ConsumerCancelled`
  (a channel error), as py-amqp does;
* ``flow(False)``/``flow(True)`` emulated by cancelling and restarting the
  channel's consumers (RabbitMQ refuses ``channel.flow(False)``);
* TLS through ``ssl=True``, a dict of options or an :class:`ssl.SSLContext`;
* heartbeats: ``BrokerConnection(heartbeat=N)`` is pika's ``heartbeat``
  (whole seconds, rounded up); pika sends them and gives a silent broker
  up within ``2 * (N + 5)`` seconds (it looks every ``N + 5``), but only
  while it does I/O (see Limits);
* ``ensure_connection`` retries a refused or timed-out connect
  (:exc:`PikaConnectError`) and a lost connection, and raises a refused
  login or virtual host at once (:attr:`Backend.recoverable_connection_errors`).

Limits:

* carrot's API is synchronous, so both backends run on
  :class:`pika.BlockingConnection`. pika 1.x has no asyncore connection:
  :class:`AsyncoreBackend` is kept as a name for code that names it and is
  the same backend as :class:`SyncBackend`.
* pika hands deliveries and returned messages over only while it processes
  I/O, so :attr:`Backend.returned_messages` fills during
  :meth:`Connection.drain_events` (or ``consume``), not within ``publish``.
* ``Backend.channel`` is pika's :class:`~pika.adapters.blocking_connection.BlockingChannel`;
  its number is ``channel_number`` (py-amqp's channels have ``channel_id``).
* One thread per connection: pika's blocking connection is not thread-safe.
  For the same reason nothing sends heartbeats while the application is
  outside pika: a callback or loop body longer than about ``2 * N`` seconds
  costs the connection (the broker closes it), unlike on the py-amqp
  backend.
* :attr:`Message.properties` uses pika's names (``headers``, where py-amqp
  says ``application_headers``); :attr:`Message.headers` is the same on
  every backend.

pika is imported when this module is (py-amqp is not), but a missing pika
only fails when a backend is created (``BrokerConnection(backend_cls="pika").connect()``):
:exc:`~carrot.exceptions.ClientNotInstalled` naming the pip package.
Importing this module, resolving its aliases or building the docs never
needs pika.

.. versionchanged:: 0.11
   Runs on pika 1.x; carrot 0.10 ran on pika 0.5 and its asyncore connection.
"""

from __future__ import annotations

from itertools import count
from typing import Any

from carrot.backends._pika_channel import ChannelBackend
from carrot.backends._pika_connect import (
    PikaConnectError,
    _blocking_connection,
    _channel_errors,
    _connection_errors,
    _recoverable_connection_errors,
    connection_parameters,
    open_connection,
)
from carrot.backends._pika_connection import Connection
from carrot.backends._pika_message import DeclareOk, Message, RawMessage
from carrot.backends.base import (
    ClientAttribute,
    QueueAlreadyExistsWarning,
    import_client,
    publish_flags,
)

try:
    import pika
    from pika import exceptions as pika_exceptions
except ImportError:  # pika is optional; backends raise ClientNotInstalled
    pika = None
    pika_exceptions = None

__all__ = [
    "DEFAULT_PORT",
    "AsyncoreBackend",
    "Backend",
    "Connection",
    "DeclareOk",
    "Message",
    "PikaConnectError",
    "QueueAlreadyExistsWarning",
    "RawMessage",
    "SyncBackend",
]

# Public names defined in private modules are documented, shown in
# tracebacks and pickled under this module, their public home.
for _public in (
    Connection,
    DeclareOk,
    Message,
    PikaConnectError,
    RawMessage,
):
    _public.__module__ = __name__
del _public

#: The AMQP port.
DEFAULT_PORT = 5672
#: The AMQP-over-TLS port, used when ``ssl`` is on and no port is given.
DEFAULT_TLS_PORT = 5671


#: The message class, for annotations inside :class:`Backend` (whose
#: ``Message`` attribute shadows the name there).
_Message = Message


class Backend(ChannelBackend):
    """AMQP through pika's :class:`~pika.BlockingConnection`.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    :raises carrot.exceptions.ClientNotInstalled: pika is not installed.
    """

    default_port = DEFAULT_PORT
    #: Port used with TLS when the connection names none.
    default_tls_port = DEFAULT_TLS_PORT
    Message = Message

    #: Errors meaning the connection is gone (pika's ``AMQPConnectionError``
    #: family, its connect workflow's errors and socket errors; empty without pika).
    connection_errors = ClientAttribute(_connection_errors, ())
    #: Errors meaning a channel operation failed (pika's ``AMQPChannelError``
    #: family; empty without pika).
    channel_errors = ClientAttribute(_channel_errors, ())
    #: Connection errors worth retrying: not a refused login or virtual host.
    recoverable_connection_errors = ClientAttribute(_recoverable_connection_errors, ())
    #: compat: carrot 0.10's connection class attribute (pika's
    #: :class:`~pika.BlockingConnection`, read when a connection is made).
    _connection_cls = ClientAttribute(_blocking_connection)

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        import_client("pika", "pika")
        super().__init__(connection, **kwargs)
        self.default_port = kwargs.get("default_port", self.default_port)
        self._channel = None

    # -- connection --------------------------------------------------------

    def connection_parameters(self) -> Any:
        """The :class:`pika.ConnectionParameters` for :attr:`connection`'s settings.

        ``connect_timeout`` bounds both the TCP connect (``socket_timeout``)
        and the whole AMQP handshake (``stack_timeout``). ``heartbeat`` is
        pika's, in whole seconds (pika's blocking connection answers them
        only while it does I/O). With ``ssl`` and no port, the port is 5671.

        .. versionchanged:: 0.11
           The port defaults to 5671 with TLS.

        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            naming the missing hostname, userid or password.
        """
        self.check_settings("hostname", "userid", "password")
        return connection_parameters(self.connection, self.default_port, self.default_tls_port)

    def establish_connection(self) -> Connection:
        """Open a :class:`pika.BlockingConnection` with the settings of :attr:`connection`.

        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            naming the missing hostname, userid or password.
        :raises PikaConnectError: refused, unreachable, or no handshake in time.
        :raises pika.exceptions.ProbableAuthenticationError: the login was refused.
        :raises pika.exceptions.ProbableAccessDeniedError: the virtual host was refused.
        """
        return open_connection(self._connection_cls, self.connection_parameters())

    def close_connection(self, connection: Any) -> None:
        """Close a connection opened by :meth:`establish_connection`."""
        connection.close()

    # -- declarations ------------------------------------------------------

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> int:
        """Delete ``queue``; return the number of messages it held."""
        frame = self.channel.queue_delete(queue=queue, if_unused=if_unused, if_empty=if_empty)
        count: int = frame.method.message_count  # pika is untyped
        return count

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        """Discard every ready message in ``queue``; return how many."""
        return self.channel.queue_purge(queue=queue).method.message_count or 0

    @staticmethod
    def _declare_ok(reply: Any) -> DeclareOk:
        ok = reply.method
        return DeclareOk(ok.queue, ok.message_count, ok.consumer_count)

    def exchange_declare(self, exchange: str, type: str, durable: bool, auto_delete: bool) -> Any:  # noqa: A002 -- compat: carrot's parameter name
        """Declare an exchange."""
        return self.channel.exchange_declare(
            exchange=exchange, exchange_type=type, durable=durable, auto_delete=auto_delete
        )

    def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: dict[str, Any] = {},  # noqa: B006 -- compat: carrot's default; never mutated
    ) -> Any:
        """Bind ``queue`` to ``exchange``."""
        # compat: carrot's pika backend had arguments={}; pika gets None for "none".
        return self.channel.queue_bind(
            queue=queue, exchange=exchange, routing_key=routing_key, arguments=arguments or None
        )

    # -- receiving ---------------------------------------------------------

    def message_to_python(self, raw_message: Any) -> _Message:
        """Wrap a :class:`RawMessage` in :attr:`Message`."""
        return self.Message(self, raw_message)

    def get(self, queue: str, no_ack: bool = False) -> _Message | None:
        """Fetch one message from ``queue``, or ``None`` if it is empty."""
        channel = self.channel
        method, properties, body = channel.basic_get(queue, auto_ack=no_ack)
        if method is None:
            return None
        return self.message_to_python(RawMessage(channel, method, properties, body))

    def declare_consumer(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, nowait: bool = False
    ) -> str:
        """Start consuming ``queue``; ``callback(raw_message)`` per delivery.

        :keyword nowait: accepted for compatibility; pika always waits for
            the broker's ``basic.consume-ok``.
        """
        channel = self.channel
        conn = self._conn
        self.remember_consumer(consumer_tag, queue, no_ack, callback)
        conn._watch(channel)
        tag: str = channel.basic_consume(  # pika is untyped
            queue=queue,
            on_message_callback=conn._deliver_later(callback),
            auto_ack=no_ack,
            consumer_tag=consumer_tag,
        )
        return tag

    def consume(self, limit: int | None = None) -> Any:
        """Dispatch deliveries to the consumers' callbacks, yielding ``True`` after each.

        Stops after ``limit`` messages, or when the channel has been closed.
        """
        for total in count():
            if limit and total >= limit:
                return
            channel = self._channel
            if channel is None or not channel.is_open:
                return
            if not self._conn._dispatch_one(channel):
                return
            yield True

    def cancel(self, consumer_tag: str) -> None:
        """Stop the consumer ``consumer_tag``.

        Deliveries that already reached the client but no callback yet are
        put back on the queue (``no_ack`` ones, which the broker no longer
        holds, still go to the callback), as pika itself does.
        """
        consumer = self._consumers.get(consumer_tag)
        if self.forget_consumer(consumer_tag):
            return  # flow(False) cancelled it at the broker already
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        no_ack_callback = consumer[2] if consumer is not None and consumer[1] else None
        self._conn.cancel_consumer(channel, consumer_tag, no_ack_callback)
        if not self._consumers:
            self._conn._unwatch(channel)

    # -- sending -----------------------------------------------------------

    def prepare_message(  # type: ignore[override]
        # override: carrot 0.10's base takes **kwargs; Publisher passes only these.
        self,
        message_data: Any,
        delivery_mode: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> tuple[Any, Any]:
        """Build the message to publish: ``(body, pika.BasicProperties)``.

        compat: carrot 0.10's pika backend returned the same pair.
        """
        # Hot path: runs once per published message.
        return message_data, pika.BasicProperties(
            delivery_mode=delivery_mode,
            priority=priority,
            content_type=content_type,
            content_encoding=content_encoding,
        )

    def publish(  # type: ignore[override]
        # override: carrot 0.10's base takes **kwargs; Publisher passes only these.
        self,
        message: Any,
        exchange: str,
        routing_key: str,
        mandatory: bool | None = None,
        immediate: bool | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish a message made by :meth:`prepare_message`.

        :keyword mandatory: have the broker return it if no queue is bound;
            returns land in :attr:`returned_messages` when pika next does
            I/O (``drain_events``, ``consume``).
        :keyword immediate: emulated (see :func:`~carrot.backends.base.publish_flags`).
        :keyword headers: the message's headers table.
        """
        # Hot path: runs once per published message.
        body, properties = message
        if headers:
            properties.headers = headers
        mandatory, expiration = publish_flags(mandatory, immediate)
        if expiration is not None:
            properties.expiration = expiration
        confirms = self._confirms
        if confirms is not None:
            self._publish_confirmed(confirms, exchange, routing_key, body, properties, mandatory)
            return
        self.channel.basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            properties=properties,
            mandatory=mandatory,
        )

    # -- flow control ------------------------------------------------------

    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> None:
        """Limit unacknowledged deliveries on this channel."""
        self.channel.basic_qos(
            prefetch_size=prefetch_size, prefetch_count=prefetch_count, global_qos=apply_global
        )


class SyncBackend(Backend):
    """The pika backend on :class:`pika.BlockingConnection` (``backend_cls="syncpika"``)."""


class AsyncoreBackend(Backend):
    """The pika backend under carrot 0.10's asyncore name (``"pika"``, ``"pikachu"``).

    .. versionchanged:: 0.11
       pika 1.x has no asyncore connection and carrot's API is synchronous,
       so this runs on :class:`pika.BlockingConnection` like
       :class:`SyncBackend`; the name is kept for code that names it.
    """
