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
* TLS through ``ssl=True``, a dict of options or an :class:`ssl.SSLContext`.

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
* :attr:`Message.properties` uses pika's names (``headers``, where py-amqp
  says ``application_headers``); :attr:`Message.headers` is the same on
  every backend.

pika is imported when this module is, but a missing pika only fails when a
backend is created (``BrokerConnection(backend_cls="pika").connect()``):
:exc:`~carrot.exceptions.ClientNotInstalled` naming the pip package.
Importing this module, resolving its aliases or building the docs never
needs pika.

.. versionchanged:: 0.11
   Runs on pika 1.x; carrot 0.10 ran on pika 0.5 and its asyncore connection.
"""

from __future__ import annotations

import collections
import logging
import ssl as ssl_module
import time
import warnings
from itertools import count
from typing import Any, NamedTuple

from carrot.backends.base import _NOT_DECODED, BaseBackend, BaseMessage, FlowByCancelMixin
from carrot.backends.pyamqplib import QueueAlreadyExistsWarning
from carrot.exceptions import ClientNotInstalled, MissingConnectionSetting

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
    "QueueAlreadyExistsWarning",
    "RawMessage",
    "SyncBackend",
]

logger = logging.getLogger(__name__)

#: The AMQP port.
DEFAULT_PORT = 5672

#: Seconds pika waits per round while :meth:`Connection.drain_events` has no
#: timeout, so a channel the broker closed is noticed (pika's
#: ``process_data_events`` does not report it; pika issue #1472).
POLL_INTERVAL = 1.0

if pika_exceptions is not None:
    _CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
        pika_exceptions.AMQPConnectionError,  # ConnectionClosed, StreamLostError, ...
        OSError,
    )
    _CHANNEL_ERRORS: tuple[type[BaseException], ...] = (
        pika_exceptions.AMQPChannelError,  # ChannelClosed(ByBroker), ChannelWrongStateError, ...
    )
else:
    _CONNECTION_ERRORS = ()
    _CHANNEL_ERRORS = ()


class RawMessage(NamedTuple):
    """What pika hands over for one message, as :meth:`Backend.message_to_python` takes it.

    compat: carrot 0.10's pika backend passed consumer callbacks the tuple
    ``(channel, method, header, body)``; this is that tuple, with names.
    """

    #: The pika channel it arrived on (acks go there).
    channel: Any
    #: ``Basic.Deliver``, ``Basic.GetOk`` or ``Basic.Return``.
    method: Any
    #: The :class:`pika.BasicProperties`.
    properties: Any
    #: The body, ``bytes``.
    body: bytes


class DeclareOk(NamedTuple):
    """What :meth:`Backend.queue_declare` returns (py-amqp returns the same fields)."""

    queue: str
    message_count: int
    consumer_count: int


def _require_pika() -> Any:
    if pika is None:
        raise ClientNotInstalled("pika", "pika")
    return pika


def _properties_dict(properties: Any) -> dict[str, Any]:
    """The set fields of a :class:`pika.BasicProperties` as a dict."""
    if properties is None:
        return {}
    return {key: value for key, value in vars(properties).items() if value is not None}


class Message(BaseMessage):
    """A message received through pika.

    :param backend: the :class:`Backend` that received it.
    :param raw_message: a :class:`RawMessage` (or carrot 0.10's 4-tuple
        ``(channel, method, properties, body)``).
    """

    def __init__(self, backend: Any, raw_message: Any, **kwargs: Any) -> None:
        # Hot path (every delivery): attributes set directly.
        _channel, method, properties, body = raw_message
        self.backend = backend
        self.raw_message = raw_message
        self._properties = properties
        self.body = kwargs.get("body", body)
        self.delivery_tag = method.delivery_tag
        self.content_type = getattr(properties, "content_type", None)
        self.content_encoding = getattr(properties, "content_encoding", None)
        info = {
            "exchange": method.exchange,
            "routing_key": method.routing_key,
            "redelivered": method.redelivered,
            "delivery_tag": method.delivery_tag,
        }
        consumer_tag = getattr(method, "consumer_tag", None)
        if consumer_tag is not None:
            info["consumer_tag"] = consumer_tag
        message_count = getattr(method, "message_count", None)
        if message_count is not None:
            info["message_count"] = message_count
        self.delivery_info = info
        self._decoded_cache = _NOT_DECODED
        self._state = "RECEIVED"

    @property
    def properties(self) -> dict[str, Any]:
        """The AMQP properties that are set (``headers``, ``priority``, ``delivery_mode``, ...)."""
        return _properties_dict(self._properties)

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers table (empty when it has none)."""
        return getattr(self._properties, "headers", None) or {}


class Connection:
    """A :class:`pika.BlockingConnection` with the waiting calls carrot offers.

    Consumer deliveries are queued here as pika hands them over and
    dispatched one per :meth:`drain_events`, so ``consume(limit=1)`` handles
    exactly one message even when pika read several at once.

    :param pika_connection: the open :class:`pika.BlockingConnection`.
    """

    def __init__(self, pika_connection: Any) -> None:
        #: The underlying :class:`pika.BlockingConnection`.
        self.pika_connection = pika_connection
        # (callback, RawMessage) of deliveries not dispatched yet, oldest first.
        self._ready: collections.deque = collections.deque()
        # Channels with consumers, so a close by the broker is noticed.
        self._consuming: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pika open={self.is_open}>"

    @property
    def is_open(self) -> bool:
        """Whether the connection is open."""
        return bool(self.pika_connection.is_open)

    @property
    def connected(self) -> bool:
        """Alias of :attr:`is_open` (py-amqp's name, which BrokerConnection checks)."""
        return self.is_open

    @property
    def server_properties(self) -> dict[str, Any] | None:
        """The broker's properties (product, version, capabilities), if known."""
        # pika keeps them on its internal connection object only.
        impl = getattr(self.pika_connection, "_impl", None)
        return getattr(impl, "server_properties", None)

    def channel(self, channel_number: int | None = None) -> Any:
        """Open a new pika channel."""
        return self.pika_connection.channel(channel_number)

    def close(self) -> None:
        """Close the connection (nothing happens if it is closed already)."""
        self._ready.clear()
        self._consuming.clear()
        if self.pika_connection.is_open:
            self.pika_connection.close()

    def process_data_events(self, time_limit: float | None = 0) -> None:
        """Let pika do its I/O for up to ``time_limit`` seconds (returns, heartbeats)."""
        self.pika_connection.process_data_events(time_limit=time_limit)

    # -- deliveries --------------------------------------------------------

    def _deliver_later(self, callback: Any) -> Any:
        """A pika ``on_message_callback`` queueing deliveries for ``callback``."""
        ready = self._ready

        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            # Hot path: runs per delivery, inside pika's dispatch.
            ready.append((callback, RawMessage(channel, method, properties, body)))

        return on_message

    def _watch(self, channel: Any) -> None:
        self._consuming[id(channel)] = channel

    def _unwatch(self, channel: Any) -> None:
        self._consuming.pop(id(channel), None)

    def _take(self, channel: Any, consumer_tag: str | None = None) -> list[RawMessage]:
        """Remove and return the queued deliveries of ``channel`` (and ``consumer_tag``)."""
        ready = self._ready  # mutated in place: the pika callbacks hold it
        taken, kept = [], []
        for entry in ready:
            raw = entry[1]
            if raw.channel is channel and (
                consumer_tag is None or raw.method.consumer_tag == consumer_tag
            ):
                taken.append(raw)
            else:
                kept.append(entry)
        ready.clear()
        ready.extend(kept)
        return taken

    def _check_channels(self) -> None:
        for key, channel in list(self._consuming.items()):
            if channel.is_closed:
                del self._consuming[key]
                reason = getattr(channel, "_closing_reason", None)  # pika keeps it there
                if isinstance(reason, BaseException):
                    raise reason
                raise pika_exceptions.ChannelClosed(-1, "channel closed")

    def _wait(self, timeout: float | None, channel: Any = None) -> bool:
        """Do I/O until a delivery is queued; False when ``channel`` is closed first.

        :raises socket.timeout: nothing arrived within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in count():
            if self._ready:
                return True
            self._check_channels()  # a consuming channel the broker closed raises
            if channel is not None and not channel.is_open:
                return False  # closed by us
            if deadline is None:
                limit = POLL_INTERVAL
            else:
                limit = deadline - time.monotonic()
                if limit <= 0:
                    raise TimeoutError("timed out")  # socket.timeout is TimeoutError
            self.pika_connection.process_data_events(time_limit=min(limit, POLL_INTERVAL))
        return False  # pragma: no cover -- count() never ends

    def drain_events(self, allowed_methods: Any = None, timeout: float | None = None) -> Any:
        """Wait for one delivery on any channel and dispatch it to its consumer's callback.

        :keyword allowed_methods: accepted for compatibility and ignored.
        :keyword timeout: seconds to wait; :exc:`socket.timeout` when it passes.
        :raises pika.exceptions.ChannelClosed: a consuming channel was closed
            by the broker while waiting.
        """
        # Hot path: one call per delivered message.
        if not self._ready:
            self._wait(timeout)
        callback, raw = self._ready.popleft()
        return callback(raw)

    def wait_multi(
        self, channels: Any, allowed_methods: Any = None, timeout: float | None = None
    ) -> Any:
        """Wait until a delivery for one of ``channels`` is dispatched.

        Deliveries for other channels that come first are dispatched too.

        :keyword allowed_methods: accepted for compatibility and ignored.
        :keyword timeout: seconds to wait; :exc:`socket.timeout` when it passes.
        """
        wanted = {id(channel) for channel in channels}
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in count():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._ready:
                self._wait(remaining)
            callback, raw = self._ready.popleft()
            result = callback(raw)
            if id(raw.channel) in wanted:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")  # socket.timeout is TimeoutError
        return None  # pragma: no cover -- count() never ends

    def _dispatch_one(self, channel: Any) -> bool:
        """Dispatch one delivery (waiting for it); False once ``channel`` is closed."""
        if not self._ready and not self._wait(None, channel):
            return False
        callback, raw = self._ready.popleft()
        callback(raw)
        return True


def _ssl_options(ssl: Any, hostname: str) -> Any:
    """pika's :class:`~pika.SSLOptions` for carrot's ``ssl`` setting (True, dict or context)."""
    if not ssl:
        return None
    if isinstance(ssl, ssl_module.SSLContext):
        return pika.SSLOptions(ssl, server_hostname=hostname)
    options = dict(ssl) if isinstance(ssl, dict) else {}
    context = ssl_module.create_default_context(
        cafile=options.get("ca_certs"), capath=options.get("ca_path")
    )
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"))
    if options.get("ciphers"):
        context.set_ciphers(options["ciphers"])
    if "check_hostname" in options:
        context.check_hostname = bool(options["check_hostname"])
    cert_reqs = options.get("cert_reqs")
    if cert_reqs is not None:
        if cert_reqs == ssl_module.CERT_NONE:
            context.check_hostname = False
        context.verify_mode = cert_reqs
    return pika.SSLOptions(context, server_hostname=options.get("server_hostname", hostname))


class Backend(FlowByCancelMixin, BaseBackend):
    """AMQP through pika's :class:`~pika.BlockingConnection`.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    :raises carrot.exceptions.ClientNotInstalled: pika is not installed.
    """

    default_port = DEFAULT_PORT
    Message = Message

    #: Errors meaning the connection is gone (pika's ``AMQPConnectionError``
    #: family and socket errors; empty without pika).
    connection_errors = _CONNECTION_ERRORS
    #: Errors meaning a channel operation failed (pika's ``AMQPChannelError``
    #: family; empty without pika).
    channel_errors = _CHANNEL_ERRORS

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        _require_pika()
        super().__init__(connection, **kwargs)
        self.default_port = kwargs.get("default_port", self.default_port)
        self._channel: Any = None
        # consumer_tag -> (queue, no_ack, callback) of this channel's consumers.
        self._consumers: dict[str, tuple[str, bool, Any]] = {}
        # The consumers flow(False) cancelled, to restart on flow(True).
        self._paused: dict[str, tuple[str, bool, Any]] | None = None
        #: Messages the broker returned as unroutable (``mandatory=True``),
        #: newest last, as ``(reply_code, reply_text, exchange, routing_key, raw_message)``.
        self.returned_messages: collections.deque = collections.deque(maxlen=1000)

    # -- connection --------------------------------------------------------

    def connection_parameters(self) -> Any:
        """The :class:`pika.ConnectionParameters` for :attr:`connection`'s settings.

        ``connect_timeout`` bounds both the TCP connect (``socket_timeout``)
        and the whole AMQP handshake (``stack_timeout``). Heartbeats are off,
        as with the py-amqp backend: pika's blocking connection answers them
        only while it does I/O, so a long callback would get the connection
        closed by the broker.

        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            naming the missing hostname, userid or password.
        """
        conninfo = self.connection
        if not conninfo.hostname:
            raise MissingConnectionSetting("hostname")
        if conninfo.userid is None:
            raise MissingConnectionSetting("userid")
        if conninfo.password is None:
            raise MissingConnectionSetting("password")
        timeout = conninfo.connect_timeout or None  # pika: None means no limit
        return pika.ConnectionParameters(
            host=conninfo.hostname,
            port=int(conninfo.port or self.default_port),
            virtual_host=conninfo.virtual_host or "/",
            credentials=pika.PlainCredentials(conninfo.userid, conninfo.password),
            ssl_options=_ssl_options(conninfo.ssl, conninfo.hostname),
            socket_timeout=timeout,
            stack_timeout=timeout,
            connection_attempts=1,
            heartbeat=0,
        )

    def establish_connection(self) -> Connection:
        """Open a :class:`pika.BlockingConnection` with the settings of :attr:`connection`.

        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            naming the missing hostname, userid or password.
        """
        return Connection(pika.BlockingConnection(self.connection_parameters()))

    def close_connection(self, connection: Any) -> None:
        """Close a connection opened by :meth:`establish_connection`."""
        connection.close()

    @property
    def _conn(self) -> Connection:
        return self._established()

    # -- channel -----------------------------------------------------------

    @property
    def channel(self) -> Any:
        """The raw pika channel, opened on first use (and after a close by the broker)."""
        channel = self._channel
        if channel is None or not channel.is_open:
            if channel is not None:
                self._forget_channel(channel)
            channel = self._channel = self._conn.channel()
            channel.add_on_return_callback(self._on_return)
            channel.add_on_cancel_callback(self._on_cancel)
        return channel

    def _forget_channel(self, channel: Any) -> None:
        conn = self.connection.connection
        if conn is not None:
            conn._unwatch(channel)
            # Deliveries still queued died with the channel (the broker
            # requeues the unacked ones).
            conn._take(channel)
        self._consumers.clear()
        self._paused = None

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        logger.warning(
            "message returned by the broker: %s %s (exchange=%r routing_key=%r)",
            method.reply_code,
            method.reply_text,
            method.exchange,
            method.routing_key,
        )
        self.returned_messages.append(
            (
                method.reply_code,
                method.reply_text,
                method.exchange,
                method.routing_key,
                RawMessage(channel, method, properties, body),
            )
        )

    def _on_cancel(self, method_frame: Any) -> None:
        # The broker cancelled a consumer (its queue was deleted, say). As
        # with py-amqp, the next drain_events/consume raises ConsumerCancelled
        # (after the deliveries that came before the cancel).
        tag = method_frame.method.consumer_tag
        logger.warning("consumer %r cancelled by the broker", tag)
        self._consumers.pop(tag, None)
        if self._paused is not None:
            self._paused.pop(tag, None)

        def raise_cancelled(raw_message: Any) -> None:
            raise pika_exceptions.ConsumerCancelled(f"the broker cancelled consumer {tag!r}")

        self._conn._ready.append(
            (raise_cancelled, RawMessage(self._channel, method_frame.method, None, b""))
        )

    def close(self) -> None:
        """Close the channel (the connection stays open)."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        # Its consumers end with it; flow(True) must not restart them elsewhere.
        self._forget_channel(channel)
        if channel.is_open:
            try:
                channel.close()
            except (*self.connection_errors, *self.channel_errors):
                pass

    # -- declarations ------------------------------------------------------

    def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` exists.

        Uses a throwaway channel, so the broker closing it with 404 disturbs
        neither this backend's channel nor its consumers.
        """
        channel = self._conn.channel()
        try:
            channel.queue_declare(queue=queue, passive=True)
        except pika_exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        else:
            return True
        finally:
            if channel.is_open:
                channel.close()

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> int:
        """Delete ``queue``; return the number of messages it held."""
        frame = self.channel.queue_delete(queue=queue, if_unused=if_unused, if_empty=if_empty)
        return frame.method.message_count

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        """Discard every ready message in ``queue``; return how many."""
        return self.channel.queue_purge(queue=queue).method.message_count or 0

    def queue_declare(
        self,
        queue: str,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        warn_if_exists: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> DeclareOk:
        """Declare a queue.

        :keyword warn_if_exists: warn with
            :class:`~carrot.backends.pyamqplib.QueueAlreadyExistsWarning` when
            the queue is already there.
        """
        if warn_if_exists and self.queue_exists(queue):
            warnings.warn(
                QueueAlreadyExistsWarning(f"{QueueAlreadyExistsWarning.__doc__} (queue {queue!r})"),
                stacklevel=2,
            )
        ok = self.channel.queue_declare(
            queue=queue,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            arguments=arguments,
        ).method
        return DeclareOk(ok.queue, ok.message_count, ok.consumer_count)

    def exchange_declare(self, exchange: str, type: str, durable: bool, auto_delete: bool) -> Any:  # noqa: A002 -- compat: carrot's parameter name
        """Declare an exchange."""
        return self.channel.exchange_declare(
            exchange=exchange, exchange_type=type, durable=durable, auto_delete=auto_delete
        )

    def queue_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: dict[str, Any] | None = None
    ) -> Any:
        """Bind ``queue`` to ``exchange``."""
        return self.channel.queue_bind(
            queue=queue, exchange=exchange, routing_key=routing_key, arguments=arguments
        )

    # -- receiving ---------------------------------------------------------

    def message_to_python(self, raw_message: Any) -> Message:
        """Wrap a :class:`RawMessage` in :attr:`Message`."""
        return self.Message(self, raw_message)

    def get(self, queue: str, no_ack: bool = False) -> Message | None:
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
        self._consumers[consumer_tag] = (queue, no_ack, callback)
        conn._watch(channel)
        return channel.basic_consume(
            queue=queue,
            on_message_callback=conn._deliver_later(callback),
            auto_ack=no_ack,
            consumer_tag=consumer_tag,
        )

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
        consumer = self._consumers.pop(consumer_tag, None)
        if self._paused is not None and self._paused.pop(consumer_tag, None) is not None:
            return  # flow(False) cancelled it at the broker; flow(True) must not restart it
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        conn = self._conn
        pending = conn._take(channel, consumer_tag)
        no_ack = consumer is not None and consumer[1]
        if no_ack:
            callback = consumer[2]
            conn._ready.extend((callback, raw) for raw in pending)
        else:
            for raw in pending:
                delivery_tag = getattr(raw.method, "delivery_tag", None)
                if delivery_tag is not None:  # not the broker's Basic.Cancel
                    channel.basic_reject(delivery_tag, requeue=True)
        left = channel.basic_cancel(consumer_tag)
        if no_ack and left:
            conn._ready.extend(
                (callback, RawMessage(channel, *message_tuple)) for message_tuple in left
            )
        if not self._consumers:
            conn._unwatch(channel)

    def ack(self, delivery_tag: Any) -> None:
        """Acknowledge a delivery."""
        self.channel.basic_ack(delivery_tag)

    def reject(self, delivery_tag: Any) -> None:
        """Reject a delivery; the broker drops (or dead-letters) it."""
        self.channel.basic_reject(delivery_tag, requeue=False)

    def requeue(self, delivery_tag: Any) -> None:
        """Reject a delivery and put it back on its queue."""
        self.channel.basic_reject(delivery_tag, requeue=True)

    # -- sending -----------------------------------------------------------

    def prepare_message(
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

    def publish(
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
        :keyword immediate: RabbitMQ 3.0+ refuses the AMQP ``immediate``
            flag, so it is emulated: the message is sent ``mandatory`` with a
            per-message TTL of 0, which RabbitMQ documents as the replacement.
        :keyword headers: the message's headers table.
        """
        # Hot path: runs once per published message.
        body, properties = message
        if headers:
            properties.headers = headers
        if immediate:
            properties.expiration = "0"
            mandatory = True
        self.channel.basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            properties=properties,
            mandatory=bool(mandatory),
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
