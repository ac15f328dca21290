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

import json
import warnings
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import kombu
from amqp.exceptions import ChannelError, NotFound
from kombu.transport import memory as kombu_memory
from kombu.transport import virtual
from kombu.transport.virtual.exchange import STANDARD_EXCHANGE_TYPES, ExchangeType
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps

from carrot.backends.base import _NOT_DECODED, BaseBackend, BaseMessage, FlowByCancelMixin
from carrot.backends.pyamqplib import QueueAlreadyExistsWarning
from carrot.exceptions import CarrotError, ClientNotInstalled, MissingConnectionSetting

try:
    import redis  # noqa: F401 -- imported only to learn whether the client is installed
except ImportError:
    # kombu's Redis module cannot even be imported without the client.
    kombu_redis: Any = None
else:
    from kombu.transport import redis as kombu_redis

__all__ = [
    "REDIS_DEFAULT_PORT",
    "Backend",
    "Message",
    "RedisBackend",
    "UnsupportedExchangeTypeError",
]

#: The Redis port.
REDIS_DEFAULT_PORT = 6379

# Key in a stored message naming the queue that copy belongs to, so requeue
# and restore put it back there instead of routing it again.
_QUEUE_KEY = "carrot_queue"


class UnsupportedExchangeTypeError(CarrotError, NotImplementedError):
    """The kombu transport cannot route this exchange type.

    For example a headers exchange on a kombu transport other than memory or
    Redis, or a RabbitMQ plugin's type such as ``x-delayed-message``.
    """

    def __init__(self, exchange: str, type: str, supported: list[str]) -> None:  # noqa: A002 -- carrot's parameter name
        self.exchange = exchange
        self.type = type
        self.supported = supported
        super().__init__(exchange, type, supported)

    def __str__(self) -> str:
        return (
            f"exchange {self.exchange!r}: the kombu transport has no {self.type!r} exchange "
            f"(supported: {', '.join(self.supported)})"
        )


# -- carrot's fixes to kombu's memory and Redis transports --------------------


class _HeadersExchange(ExchangeType):
    # AMQP's headers exchange, which kombu's virtual transports lack. The
    # binding's arguments are kept, as JSON, where other types keep a pattern.

    type = "headers"

    def prepare_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: dict[str, Any] | None
    ) -> tuple[str, str, str]:
        return routing_key, json.dumps(arguments or {}, sort_keys=True), queue

    def lookup(self, table: Any, exchange: str, routing_key: str, default: Any) -> set[str]:
        # Routing needs the message's headers: see deliver().
        return set()

    def deliver(
        self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any
    ) -> None:
        headers = message.get("headers") or {}
        for queue in {
            q for _, args, q in self.channel.get_table(exchange) if _match(args, headers)
        }:
            self.channel._put(queue, message, **kwargs)


def _match(binding_json: str, headers: dict[str, Any]) -> bool:
    # RabbitMQ's rules: x-match "all" (default) or "any"; keys starting with
    # "x-" are not matched; a binding value of None asks only for the key.
    arguments = json.loads(binding_json) if binding_json else {}
    wanted = [(k, v) for k, v in arguments.items() if not k.startswith("x-")]
    found = (k in headers and (v is None or headers[k] == v) for k, v in wanted)
    if arguments.get("x-match") == "any":
        return any(found)
    return all(found)


_EXCHANGE_TYPES = {**STANDARD_EXCHANGE_TYPES, "headers": _HeadersExchange}


def _redelivered_copy(message: Any, queue: str) -> dict[str, Any]:
    # A stored copy of a received kombu message, marked redelivered.
    payload = message.serializable()
    props = payload["properties"]
    payload["properties"] = {
        **props,
        "delivery_info": {**(props.get("delivery_info") or {}), "redelivered": True},
    }
    payload[_QUEUE_KEY] = queue
    return payload


class _MemoryChannel(kombu_memory.Channel):
    # kombu's memory channel drops unacknowledged messages on close; restoring
    # them is safe here because _restore puts them back where they came from.
    do_restore = True
    exchange_types = _EXCHANGE_TYPES

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        # kombu puts one dict into every matching queue: give each its own
        # copy and delivery tag, as a broker would.
        props = message["properties"]
        self._queue_for(queue).put(
            {
                **message,
                "properties": {
                    **props,
                    "delivery_tag": self._next_delivery_tag(),
                    "delivery_info": dict(props.get("delivery_info") or {}),
                },
                _QUEUE_KEY: queue,
            }
        )

    def _put_fanout(
        self, exchange: str, message: dict[str, Any], routing_key: Any = None, **kwargs: Any
    ) -> None:
        for queue in self._lookup(exchange, routing_key):
            self._put(queue, message)

    def _restore(self, message: Any) -> None:
        queue = message._raw.get(_QUEUE_KEY)
        if queue is None:
            return super()._restore(message)
        payload = _redelivered_copy(message, queue)
        payload["properties"]["delivery_tag"] = self._next_delivery_tag()
        fifo = self._queue_for(queue)
        # The front of the queue: Queue.get pops from the left.
        with fifo.mutex:
            fifo.queue.appendleft(payload)
            fifo.not_empty.notify()
        return None

    def _restore_at_beginning(self, message: Any) -> None:
        return self._restore(message)

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        if if_empty and self._size(queue):
            return
        # kombu leaves the bindings in the exchanges' routing tables (so the
        # next message routed there recreates the queue), and forgets the
        # queue only when it had bindings.
        for exchange, routing_key, arguments in list(self.state.queue_bindings(queue)):
            self.queue_unbind(queue, exchange, routing_key, arguments)
        super().queue_delete(queue, if_unused=if_unused, if_empty=if_empty, **kwargs)
        self.queues.pop(queue, None)


class _MemoryTransport(kombu_memory.Transport):
    Channel = _MemoryChannel
    # Seconds between polls of idle queues (kombu's default is a whole second).
    polling_interval = 0.01


# Without the client the Redis classes still exist (unusable: RedisBackend
# raises ClientNotInstalled first), so this module always imports.
_RedisChannelBase: Any = kombu_redis.Channel if kombu_redis is not None else virtual.Channel
_RedisTransportBase: Any = kombu_redis.Transport if kombu_redis is not None else virtual.Transport


class _RedisChannel(_RedisChannelBase):
    exchange_types = _EXCHANGE_TYPES

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        # Each queue's copy gets its own delivery tag: tags key the shared
        # "unacked" hash, where two copies under one tag would overwrite each
        # other (and an ack of one would forget the other).
        props = message["properties"]
        message = {
            **message,
            "properties": {**props, "delivery_tag": self._next_delivery_tag()},
            _QUEUE_KEY: queue,
        }
        super()._put(queue, message, **kwargs)

    def _deliver_fanout_message(self, message: dict[str, Any], exchange: str) -> Any:
        # Every subscriber receives the same tag: give this copy its own.
        message["properties"]["delivery_tag"] = self._next_delivery_tag()
        message[_QUEUE_KEY] = self._fanout_to_queue[exchange]
        return super()._deliver_fanout_message(message, exchange)

    def _do_restore_message(
        self,
        payload: dict[str, Any],
        exchange: str,
        routing_key: str,
        pipe: Any,
        leftmost: bool = False,
    ) -> None:
        queue = payload.get(_QUEUE_KEY)
        if queue is None:
            return super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
        props = payload.setdefault("properties", {})
        props["delivery_tag"] = self._next_delivery_tag()
        props.setdefault("delivery_info", {})["redelivered"] = True
        priority = self._get_message_priority(payload)
        # LPUSH publishes and RPOP consumes, so RPUSH is the front of the queue.
        pipe.rpush(self._q_for_pri(queue, priority), dumps(payload))
        return None

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        if if_empty and self._size(queue):
            return
        super().queue_delete(queue, if_unused=if_unused, if_empty=if_empty, **kwargs)
        # kombu removes only the bindings this connection made; those made by
        # other connections (or processes) live in Redis alone.
        table_prefix = self.keyprefix_queue % ""
        with self.conn_or_acquire() as client:
            for key in client.scan_iter(match=table_prefix + "*"):
                exchange = bytes_to_str(key)[len(table_prefix) :]
                for member in client.smembers(key):
                    if bytes_to_str(member).rsplit(self.sep, 1)[-1] == queue:
                        client.srem(key, member)
                        client.srem(self.keyprefix_binding_permanent % (exchange,), member)

    def close(self) -> None:
        cycle = getattr(self.connection, "cycle", None)
        if not self.closed and getattr(cycle, "_in_protected_read", False):
            # Closed from a message callback: kombu would wait for the reply
            # of a read it is still handling, for ever. Close once it is done.
            cycle.after_read.add(self.close)
            return
        super().close()


class _RedisTransport(_RedisTransportBase):
    Channel = _RedisChannel


#: URL scheme / transport name -> the transport class carrot uses for it.
_TRANSPORTS: dict[str, type] = {"memory": _MemoryTransport, "redis": _RedisTransport}


def _redis_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    if kombu_redis is None:
        # The client is missing; RedisBackend raises ClientNotInstalled when used.
        return (*virtual.Transport.connection_errors, OSError), tuple(
            virtual.Transport.channel_errors
        )
    conn_errors, chan_errors = kombu_redis.get_redis_error_classes()
    return tuple(conn_errors), tuple(chan_errors)


_REDIS_CONNECTION_ERRORS, _REDIS_CHANNEL_ERRORS = _redis_errors()


def _recoverable(errors: tuple[type[BaseException], ...]) -> tuple[type[BaseException], ...]:
    # Worth retrying: not the KeyError kombu lists for Redis (a stale socket,
    # but also any bug). A refused Redis login is retried all the same: its
    # error subclasses redis's ConnectionError.
    return tuple(dict.fromkeys(e for e in errors if e is not KeyError))


# -- carrot's message and backend ---------------------------------------------


class Message(BaseMessage):
    """A message received through a kombu transport.

    :param backend: the :class:`Backend` that received it.
    :param kombu_message: the transport's :class:`kombu.message.Message`.
    """

    def __init__(self, backend: Any, kombu_message: Any, **kwargs: Any) -> None:
        # Hot path (every delivery): attributes set directly.
        self.backend = backend
        self.kombu_message = kombu_message
        body = kwargs.get("body", kombu_message.body)
        # kombu hands an empty body back as "".
        self.body = body if body else b""
        self.delivery_tag = tag = kombu_message.delivery_tag
        self.content_type = kombu_message.content_type
        self.content_encoding = kombu_message.content_encoding
        info = dict(kombu_message.delivery_info or ())
        info["delivery_tag"] = tag
        info.setdefault("redelivered", False)
        self.delivery_info = info
        self._decoded_cache = _NOT_DECODED
        self._state = "RECEIVED"

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers (empty when it has none)."""
        return self.kombu_message.headers or {}

    @property
    def properties(self) -> dict[str, Any]:
        """The transport's message properties (delivery_mode, priority, ...)."""
        return self.kombu_message.properties


class Backend(FlowByCancelMixin, BaseBackend):
    """carrot's backend contract on a kombu virtual transport.

    :param connection: the :class:`~carrot.connection.BrokerConnection`; its
        host name may be a kombu URL (``"redis://host:6379/0"``).
    """

    #: The kombu transport used when the host name is not a URL.
    kombu_transport = "memory"
    #: kombu ``transport_options``; a ``transport_options`` attribute on the
    #: connection is merged over these.
    transport_options: dict[str, Any] = {}
    #: Port used when the connection names none (the memory transport needs none).
    default_port: int | None = None
    Message = Message

    #: Errors meaning the connection is gone (Redis's too, for a ``redis://`` URL).
    connection_errors = tuple(
        dict.fromkeys(
            (
                *virtual.Transport.connection_errors,
                OSError,
                *(exc for exc in _REDIS_CONNECTION_ERRORS if exc is not KeyError),
            )
        )
    )
    #: Connection errors worth retrying.
    recoverable_connection_errors = _recoverable(connection_errors)
    #: Errors meaning an operation on the channel failed.
    channel_errors = (
        *dict.fromkeys((*virtual.Transport.channel_errors, *_REDIS_CHANNEL_ERRORS)),
        virtual.NotEquivalentError,
        UnsupportedExchangeTypeError,
    )

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.default_port = kwargs.get("default_port", self.default_port)
        self._channel: Any = None
        # consumer_tag -> (queue, no_ack, callback) of this channel's consumers.
        self._consumers: dict[str, tuple[str, bool, Any]] = {}
        # The consumers flow(False) cancelled, to restart on flow(True).
        self._paused: dict[str, tuple[str, bool, Any]] | None = None

    # -- connection --------------------------------------------------------

    def establish_connection(self) -> kombu.Connection:
        """Open a kombu connection with the settings of :attr:`connection`.

        :raises carrot.exceptions.ClientNotInstalled: the transport's client
            library (e.g. ``redis``) is missing.
        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            a network transport and no host name.
        """
        conninfo = self.connection
        hostname = conninfo.hostname
        options = dict(self.transport_options)
        options.update(getattr(conninfo, "transport_options", None) or {})
        if hostname and "://" in hostname:
            name = urlsplit(hostname).scheme
        else:
            name = self.kombu_transport
            if not hostname and name != "memory":
                raise MissingConnectionSetting("hostname", name)
        if name in ("redis", "rediss"):
            if kombu_redis is None:
                raise ClientNotInstalled("redis", "redis")
            options.setdefault("socket_connect_timeout", conninfo.connect_timeout)
        connection = kombu.Connection(
            hostname=hostname,
            userid=conninfo.userid,
            password=conninfo.password,
            virtual_host=conninfo.virtual_host,
            port=conninfo.port or self.default_port,
            ssl=conninfo.ssl or False,
            transport=_TRANSPORTS.get(name, name),
            connect_timeout=conninfo.connect_timeout,
            transport_options=options,
        )
        # One attempt, raising the transport's own error (kombu's connect()
        # sleeps two seconds and tries again).
        connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
        return connection

    def close_connection(self, connection: Any) -> None:
        """Close a connection opened by :meth:`establish_connection`."""
        connection.close()

    # -- channel -----------------------------------------------------------

    @property
    def channel(self) -> Any:
        """The kombu channel, opened on first use (and after a close)."""
        channel = self._channel
        if channel is None or channel.closed or channel.connection is None:
            channel = self._channel = self._established().channel()
        return channel

    def close(self) -> None:
        """Close the channel; unacknowledged messages go back to their queues."""
        channel, self._channel = self._channel, None
        self._consumers.clear()
        self._paused = None
        if channel is not None and not channel.closed:
            try:
                channel.close()
            except (*self.connection_errors, *self.channel_errors):
                pass

    # -- declarations ------------------------------------------------------

    def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` exists (on Redis: holds messages)."""
        try:
            self.channel.queue_declare(queue=queue, passive=True)
        except ChannelError:
            return False
        return True

    def _message_count(self, queue: str) -> int:
        try:
            return self.channel.queue_declare(queue=queue, passive=True).message_count
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
            :class:`~carrot.backends.pyamqplib.QueueAlreadyExistsWarning` when
            the queue is already there.
        """
        if warn_if_exists and self.queue_exists(queue):
            warnings.warn(
                QueueAlreadyExistsWarning(f"{QueueAlreadyExistsWarning.__doc__} (queue {queue!r})"),
                stacklevel=2,
            )
        return self.channel.queue_declare(
            queue=queue,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            arguments=arguments,
        )

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

    def message_to_python(self, raw_message: Any) -> Message:
        """Wrap a kombu message in :attr:`Message`."""
        return self.Message(self, raw_message)

    def get(self, queue: str, no_ack: bool = False) -> Message | None:
        """Fetch one message from ``queue``, or ``None`` if it is empty."""
        channel = self.channel
        raw_message = channel.basic_get(queue, no_ack=no_ack)
        if raw_message is None:
            return None
        raw_message.delivery_info = dict(
            raw_message.delivery_info or (), message_count=channel._size(queue)
        )
        return self.message_to_python(raw_message)

    def declare_consumer(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, nowait: bool = False
    ) -> str:
        """Start consuming ``queue``; ``callback(raw_message)`` per delivery."""

        def on_delivery(raw_message: Any) -> Any:
            # Hot path: runs once per delivered message.
            raw_message.delivery_info = dict(
                raw_message.delivery_info or (), consumer_tag=consumer_tag
            )
            return callback(raw_message)

        self._consumers[consumer_tag] = (queue, no_ack, callback)
        self.channel.basic_consume(queue, no_ack, on_delivery, consumer_tag)
        return consumer_tag

    def consume(self, limit: int | None = None) -> Any:
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
        channel = self._channel
        if channel is None or channel.closed:
            return
        self._consumers.pop(consumer_tag, None)
        channel.basic_cancel(consumer_tag)

    def ack(self, delivery_tag: Any) -> None:
        """Acknowledge a delivery."""
        self.channel.basic_ack(delivery_tag)

    def reject(self, delivery_tag: Any) -> None:
        """Reject a delivery; it is dropped."""
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
    ) -> dict[str, Any]:
        """Build the kombu message (a dict) to publish."""
        return self.channel.prepare_message(
            message_data,
            priority=priority,
            content_type=content_type,
            content_encoding=content_encoding,
            properties={"delivery_mode": delivery_mode},
        )

    def publish(
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

    #: Errors meaning the connection is gone (kombu's list for Redis).
    connection_errors = _REDIS_CONNECTION_ERRORS
    #: Errors meaning a Redis command failed.
    channel_errors = (
        *_REDIS_CHANNEL_ERRORS,
        virtual.NotEquivalentError,
        UnsupportedExchangeTypeError,
    )
    #: Connection errors worth retrying.
    recoverable_connection_errors = _recoverable(_REDIS_CONNECTION_ERRORS)
