"""The default backend: AMQP 0-9-1 through py-amqp.

Features:

* every exchange type (direct, topic, fanout, headers), durable and
  auto-delete exchanges and queues, queue arguments;
* consumers with callbacks, ``basic_get``, ack / reject / requeue, qos;
* ``mandatory`` publishing; returned messages are logged and kept on
  :attr:`Backend.returned_messages` instead of raising later;
* TLS through ``ssl=True``, a dict of options or an :class:`ssl.SSLContext`,
  verifying the broker's certificate and host name (``carrot._tls``);
  port 5671 when TLS is on and no port is given;
* heartbeats (``BrokerConnection(heartbeat=N)``): sent by a background
  thread even while the application is busy, and a silent broker is
  detected within ``2 * N + 1`` seconds (``carrot/backends/_amqp/heartbeat.py``);
* ``close()`` returns within ``connect_timeout`` on a dead or silent broker.

``Backend.channel`` is the raw :class:`amqp.Channel`, as tools written for
carrot (camqadm) call methods such as ``exchange_delete`` on it directly.
"""

from __future__ import annotations

import contextlib
import logging
import ssl as ssl_module
from itertools import count
from typing import Any

import amqp
from amqp.exceptions import ChannelError
from amqp.exceptions import ConnectionError as AMQPConnectionError

from carrot._tls import DEFAULT_TLS_PORT, tls_error, tls_settings
from carrot.backends._amqp import connection as _amqp_connection
from carrot.backends._amqp import seam
from carrot.backends._amqp.backend_channel import ChannelOwner
from carrot.backends._amqp.message import Message
from carrot.backends._amqp.plain import (
    CLOSE_TIMEOUT,
    OutgoingMessage,
    PlainConnection,
    WaitMulti,
    bounded_waits,
)
from carrot.backends.base import (
    IMMEDIATE_EXPIRATION,
    BaseBackend,
    ChannelDeclareMixin,
    ChannelSettleMixin,
    FlowByCancelMixin,
    QueueAlreadyExistsWarning,
)

__all__ = [
    "DEFAULT_PORT",
    "AMQPChannelException",
    "AMQPConnectionException",
    "Backend",
    "Connection",
    "Message",
    "QueueAlreadyExistsWarning",
]

# Defined in carrot.backends._amqp.message; documented, shown in tracebacks
# and pickled under this module, its public home.
Message.__module__ = __name__

logger = logging.getLogger(__name__)

#: The AMQP port.
DEFAULT_PORT = 5672

#: compat: amqplib's names, which carrot code imported from here.
AMQPConnectionException = AMQPConnectionError
#: compat: amqplib's name for a channel error.
AMQPChannelException = ChannelError


#: The fast path when the seam trusts the installed py-amqp, plain py-amqp otherwise.
#: (Any: both are :class:`amqp.Connection` subclasses, and py-amqp is untyped.)
_Base: Any = _amqp_connection.Connection if seam.AVAILABLE else PlainConnection


# misc: _Base is Any (chosen at import; py-amqp is untyped).
class Connection(WaitMulti, _Base):  # type: ignore[misc]
    """A py-amqp connection with the waiting calls carrot 0.10 offered.

    It is an :class:`amqp.Connection` whose hot paths (publish, deliver,
    ack) are replaced by :mod:`carrot.backends._amqp` (plain py-amqp when the
    installed amqp is not one that layer was tested with).

    :keyword read_timeout: seconds a socket read may wait for a frame
        (``None``: no limit); :exc:`socket.timeout` when it passes.
    """


def _limits(conninfo: Any) -> dict[str, Any]:
    # BrokerConnection(max_body_size=...) where it has the keyword.
    max_body_size = getattr(conninfo, "max_body_size", None)
    return {} if max_body_size is None else {"max_body_size": max_body_size}


def _plain_new_message(cls: type, body: Any, properties: dict[str, Any]) -> Any:
    return cls(body, **properties)


#: Builds a message to publish (without ``__init__`` when the seam allows).
_new_outgoing = seam.new_message if seam.AVAILABLE else _plain_new_message


#: The message class, for annotations inside :class:`Backend` (whose
#: ``Message`` attribute shadows the name there).
_Message = Message


class Backend(
    ChannelDeclareMixin, ChannelOwner, FlowByCancelMixin, ChannelSettleMixin, BaseBackend
):
    """AMQP through py-amqp.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    """

    default_port = DEFAULT_PORT
    #: Port used with TLS when the connection names none.
    default_tls_port = DEFAULT_TLS_PORT
    Message = Message

    #: Errors meaning the connection is gone.
    connection_errors = amqp.Connection.connection_errors
    #: Errors meaning a channel operation failed (the connection may live on).
    channel_errors = amqp.Connection.channel_errors
    #: Connection errors worth retrying (not a refused login or vhost).
    recoverable_connection_errors = amqp.Connection.recoverable_connection_errors

    _prefetch_count: int | None = None

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.default_port = kwargs.get("default_port", self.default_port)
        self._channel: Any = None

    # -- connection --------------------------------------------------------

    def establish_connection(self) -> Connection:
        """Open a py-amqp connection with the settings of :attr:`connection`.

        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            naming the missing hostname, userid or password.
        """
        self.check_settings("hostname", "userid", "password")
        conninfo = self.connection
        tls = tls_settings(conninfo.ssl, conninfo.hostname)
        port = conninfo.port or (self.default_tls_port if tls else self.default_port)
        host = f"{conninfo.hostname}:{port}"
        conn = Connection(
            host=host,
            userid=conninfo.userid,
            password=conninfo.password,
            virtual_host=conninfo.virtual_host,
            ssl=tls or False,
            connect_timeout=conninfo.connect_timeout,
            heartbeat=getattr(conninfo, "heartbeat", 0),
            **_limits(conninfo),
        )
        try:
            conn.connect()
        except ssl_module.SSLError as exc:
            conn.collect()
            # arg-type: an SSLError comes only from a TLS connection, so tls is set.
            raise tls_error(exc, host, tls) from exc  # type: ignore[arg-type]
        return conn

    def close_connection(self, connection: Any) -> None:
        """Close a connection opened by :meth:`establish_connection`.

        When the close handshake fails (the broker sent ``basic.cancel`` for a
        deleted queue, or the socket broke), the error is raised but the
        socket is closed all the same: it never leaks.
        """
        try:
            connection.close()
        except BaseException:
            connection.collect()  # closes the socket; safe when already collected
            raise

    # -- channel (opened, watched and put in confirm mode by ChannelOwner) --

    def close(self) -> None:
        """Close the channel (the connection stays open).

        Waits at most ``connect_timeout`` seconds for each read of the
        broker's ``close-ok``; a silent broker's is given up quietly.

        .. versionchanged:: 0.11
           Bounded; carrot 0.10 waited for ever on a silent broker.
        """
        channel, self._channel = self._channel, None
        # Its consumers end with it; flow(True) must not restart them elsewhere.
        self.forget_consumers()
        if channel is not None and channel.is_open and channel.connection is not None:
            try:
                # Bounded like the connection's close: a silent broker
                # must not hang Consumer.close() / Publisher.close().
                with bounded_waits(channel.connection, self._teardown_timeout()):
                    channel.close()
            except (*self.connection_errors, *self.channel_errors):
                pass

    # -- declarations ------------------------------------------------------

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> Any:
        """Delete ``queue``; return the number of messages it held."""
        return self.channel.queue_delete(queue, if_unused, if_empty)

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        """Discard every ready message in ``queue``; return how many."""
        return self.channel.queue_purge(queue=queue) or 0

    def exchange_declare(self, exchange: str, type: str, durable: bool, auto_delete: bool) -> Any:  # noqa: A002 -- compat: carrot's parameter name
        """Declare an exchange."""
        return self.channel.exchange_declare(
            exchange=exchange, type=type, durable=durable, auto_delete=auto_delete
        )

    def queue_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: dict[str, Any] | None = None
    ) -> Any:
        """Bind ``queue`` to ``exchange``."""
        return self.channel.queue_bind(
            queue=queue, exchange=exchange, routing_key=routing_key, arguments=arguments
        )

    # -- receiving ---------------------------------------------------------

    def message_to_python(self, raw_message: Any) -> _Message:
        """Wrap an :class:`amqp.Message` in :attr:`Message`."""
        return self.Message(self, raw_message)

    def get(self, queue: str, no_ack: bool = False) -> _Message | None:
        """Fetch one message from ``queue``, or ``None`` if it is empty."""
        raw_message = self.channel.basic_get(queue, no_ack=no_ack)
        if raw_message is None:
            return None
        return self.message_to_python(raw_message)

    def declare_consumer(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, nowait: bool = False
    ) -> str:
        """Start consuming ``queue``; ``callback(raw_message)`` per delivery."""
        self.remember_consumer(consumer_tag, queue, no_ack, callback)
        tag: str = self.channel.basic_consume(  # py-amqp is untyped
            queue=queue,
            no_ack=no_ack,
            callback=callback,
            consumer_tag=consumer_tag,
            nowait=nowait,
        )
        return tag

    def consume(self, limit: int | None = None) -> Any:
        """Dispatch deliveries to the consumers' callbacks, yielding after each event.

        Stops after ``limit`` events, or when the channel has been closed.
        Acks the callbacks made and the fast path still holds back (more
        deliveries were already read) are written when it stops.
        """
        try:
            for total in count():
                if limit and total >= limit:
                    return
                channel = self._channel
                if channel is None or not channel.is_open:
                    return
                self._established().drain_events()
                yield True
        finally:
            conn = self.connection.connection
            flush_acks = getattr(conn, "flush_acks", None)
            if flush_acks is not None and conn.connected:
                # If the connection died, the broker requeues them anyway.
                with contextlib.suppress(OSError):
                    flush_acks()

    def cancel(self, consumer_tag: str) -> None:
        """Stop the consumer ``consumer_tag``.

        Waits at most ``connect_timeout`` seconds for each read of the
        broker's ``cancel-ok`` (:exc:`socket.timeout` after).

        .. versionchanged:: 0.11
           Bounded; carrot 0.10 waited for ever on a silent broker.
        """
        if self.forget_consumer(consumer_tag):
            return  # flow(False) cancelled it at the broker; flow(True) must not restart it
        channel = self._channel
        if channel is None or channel.connection is None or not channel.is_open:
            return
        # A silent broker must not hang Consumer.cancel()/close(): the wait
        # for cancel-ok is bounded like the connection's close.
        with bounded_waits(channel.connection, self._teardown_timeout()):
            channel.basic_cancel(consumer_tag)

    def _teardown_timeout(self) -> float:
        return getattr(self.connection, "connect_timeout", None) or CLOSE_TIMEOUT

    # -- sending -----------------------------------------------------------

    def prepare_message(  # type: ignore[override]
        # override: carrot 0.10's base takes **kwargs; Publisher passes only these.
        self,
        message_data: Any,
        delivery_mode: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> amqp.Message:
        """Build the :class:`amqp.Message` to publish."""
        # Hot path: equal to amqp.Message(message_data, delivery_mode=..., ...).
        properties = {
            "delivery_mode": delivery_mode,
            "priority": priority,
            "content_type": content_type,
            "content_encoding": content_encoding,
        }
        return _new_outgoing(OutgoingMessage, message_data, properties)

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
        """Publish a prepared message.

        :keyword mandatory: have the broker return it if no queue is bound;
            returns land in :attr:`returned_messages`.
        :keyword immediate: RabbitMQ 3.0+ refuses the AMQP ``immediate``
            flag (closing the connection), so it is emulated: the message is
            sent ``mandatory`` with a per-message TTL of 0, which RabbitMQ
            documents as the replacement.
        :keyword headers: the message's headers table.

        .. versionchanged:: 0.11
           The channel is no longer closed after a ``mandatory`` or
           ``immediate`` publish.
        """
        if headers:
            message.properties["application_headers"] = headers
        if immediate:
            # Hot path: base.publish_flags() inlined (RabbitMQ's replacement for immediate).
            message.properties["expiration"] = IMMEDIATE_EXPIRATION
            mandatory = True
        channel = self.channel
        # Hot path: the fast publish of carrot.backends._amqp when this
        # backend opened the connection, py-amqp's basic_publish otherwise.
        fast_publish = getattr(channel, "fast_publish", None)
        if fast_publish is not None:
            fast_publish(message, exchange, routing_key, bool(mandatory))
        else:
            channel.basic_publish(
                message, exchange=exchange, routing_key=routing_key, mandatory=bool(mandatory)
            )

    # -- flow control ------------------------------------------------------

    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> None:
        """Limit unacknowledged deliveries on this channel."""
        self._prefetch_count = prefetch_count
        self.channel.basic_qos(
            prefetch_size=prefetch_size, prefetch_count=prefetch_count, a_global=apply_global
        )
