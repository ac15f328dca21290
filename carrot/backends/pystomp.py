"""STOMP backend on stomp.py, mapping carrot's AMQP model onto RabbitMQ's STOMP destinations.

Named ``"stomp"`` or ``"stompy"``::

    BrokerConnection(hostname="127.0.0.1", userid="guest", password="guest",
                     backend_cls="stomp")

The port defaults to 61613; the virtual host travels in the STOMP ``host``
header (RabbitMQ reads its virtual host from there). It needs ``stomp.py``
(8.x or 9.x): ``pip install stomp.py``. Importing this module does not;
creating a :class:`Backend` without it raises
:exc:`~carrot.exceptions.ClientNotInstalled`.

How carrot's names become STOMP destinations (RabbitMQ's STOMP plugin):

* publish to exchange ``E`` with routing key ``K``: ``/exchange/E/K``,
  routed by the exchange as AMQP would;
* publish with no exchange, routing key ``K``: ``/amq/queue/K``, the default
  exchange as AMQP has it (no queue is declared; if there is no ``K`` the
  message is dropped);
* consume or ``get`` a queue ``Q`` this backend declared or bound:
  ``/amq/queue/Q`` (it exists, so nothing is declared);
* consume or ``get`` any other queue: ``/queue/Q``, which RabbitMQ declares
  on demand (durable, unless :meth:`Backend.queue_declare` said otherwise);
* a queue, exchange or routing key starting with ``/`` is a destination
  already and is used as it is (carrot 0.10 on stompy took names so).

A ``/`` inside an exchange, queue or routing key is sent as ``%2F``.

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

import contextlib
import itertools
import queue as queue_module
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from carrot.backends.base import BaseBackend, BaseMessage, FlowByCancelMixin
from carrot.exceptions import CarrotError, ClientNotInstalled, MissingConnectionSetting

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

#: RabbitMQ's STOMP port.
DEFAULT_PORT = 61613

#: Headers of a MESSAGE frame that are STOMP's or map to message fields,
#: not application headers.
_TRANSPORT_HEADERS = frozenset(
    [
        "destination",
        "message-id",
        "subscription",
        "ack",
        "content-type",
        "content-encoding",
        "content-length",
        "redelivered",
        "persistent",
        "priority",
    ]
)


class StompError(CarrotError):
    """The broker answered with a STOMP ERROR frame.

    :param message: the frame's ``message`` header.
    :param details: the frame's body.
    """

    def __init__(self, message: str, details: str = "") -> None:
        self.message = message
        self.details = details
        super().__init__(message, details)

    def __str__(self) -> str:
        return f"STOMP error: {self.message}" + (f" ({self.details})" if self.details else "")


class StompConnectionError(CarrotError, ConnectionError):
    """The STOMP connection could not be made, or was lost."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "the STOMP connection was lost"


def _import_stomp() -> Any:
    try:
        import stomp
    except ImportError as exc:
        raise ClientNotInstalled("stomp", "stomp.py") from exc
    return stomp


class _ErrorClasses:
    """A class attribute listing our errors and, when installed, stomp.py's.

    Resolved on access, so this module imports without stomp.py.
    """

    def __init__(self, ours: tuple[type[BaseException], ...], theirs: tuple[str, ...]) -> None:
        self.ours = ours
        self.theirs = theirs

    def __get__(self, instance: Any, owner: Any) -> tuple[type[BaseException], ...]:
        try:
            from stomp import exception
        except ImportError:
            return self.ours
        return self.ours + tuple(getattr(exception, name) for name in self.theirs)


# -- destinations -----------------------------------------------------------


def _quote(name: str) -> str:
    # RabbitMQ decodes %XX in destination names; "/" separates their parts.
    return name.replace("%", "%25").replace("/", "%2F")


def _unquote(name: str) -> str:
    return name.replace("%2F", "/").replace("%2f", "/").replace("%25", "%")


def publish_destination(exchange: str | None, routing_key: Any) -> str:
    """The destination a message published to ``exchange`` with ``routing_key`` is sent to.

    >>> publish_destination("tasks", "task.add")
    '/exchange/tasks/task.add'
    >>> publish_destination("", "celery")
    '/amq/queue/celery'
    >>> publish_destination("/topic/news", "ignored")
    '/topic/news'
    """
    # compat: carrot 0.10 (stompy) sent to the exchange as a destination.
    if exchange and exchange.startswith("/"):
        return exchange
    key = routing_key if isinstance(routing_key, str) else ""
    if exchange:
        return (
            f"/exchange/{_quote(exchange)}/{_quote(key)}"
            if key
            else f"/exchange/{_quote(exchange)}"
        )
    if key.startswith("/"):
        return key
    # /amq/queue/ is the default exchange as AMQP has it: it declares
    # nothing (/queue/ would declare a durable queue, and the broker refuses
    # that for a queue declared otherwise), and a missing queue drops it.
    return f"/amq/queue/{_quote(key)}"


def consume_destination(queue: str, exists: bool = False) -> str:
    """The destination a consumer (or ``get``) of ``queue`` subscribes to.

    :param exists: the queue is known to exist (declared or bound by this
        backend, or over AMQP): subscribe to it without declaring it.

    >>> consume_destination("celery")
    '/queue/celery'
    >>> consume_destination("celery", exists=True)
    '/amq/queue/celery'
    """
    if queue.startswith("/"):
        return queue  # compat: a STOMP destination, as carrot 0.10 took it
    return f"/amq/queue/{_quote(queue)}" if exists else f"/queue/{_quote(queue)}"


def destination_info(destination: str | None) -> tuple[str, str]:
    """``(exchange, routing_key)`` of a MESSAGE frame's ``destination`` header.

    >>> destination_info("/exchange/tasks/task.add")
    ('tasks', 'task.add')
    >>> destination_info("/queue/celery")
    ('', 'celery')
    >>> destination_info("/topic/news.uk")
    ('amq.topic', 'news.uk')
    """
    if not destination:
        return "", ""
    parts = destination.split("/")
    if len(parts) >= 3 and parts[1] == "exchange":
        return _unquote(parts[2]), _unquote("/".join(parts[3:]))
    if len(parts) >= 3 and parts[1] == "topic":
        return "amq.topic", _unquote("/".join(parts[2:]))
    if len(parts) >= 4 and parts[1] == "amq" and parts[2] == "queue":
        return "", _unquote("/".join(parts[3:]))
    if len(parts) >= 3 and parts[1] == "queue":
        return "", _unquote("/".join(parts[2:]))
    return "", destination


def _bool_header(value: bool) -> str:
    return "true" if value else "false"


def _queue_headers(props: dict[str, Any]) -> dict[str, str]:
    """SUBSCRIBE headers that declare a queue with carrot's properties."""
    exclusive = bool(props.get("exclusive"))
    headers = {
        "durable": _bool_header(props.get("durable", True)),
        "auto-delete": _bool_header(props.get("auto_delete", False) or exclusive),
        # Always sent: RabbitMQ makes a non-durable queue exclusive unless told not to.
        "exclusive": _bool_header(exclusive),
    }
    for key, value in (props.get("arguments") or {}).items():
        if key.startswith("x-"):  # RabbitMQ takes only x- arguments as headers
            headers[key] = str(value)
    return headers


# -- messages ---------------------------------------------------------------


class Message(BaseMessage):
    """A message received over STOMP.

    :param backend: the :class:`Backend` that received it.
    :param frame: stomp.py's MESSAGE frame (``body``, ``headers``).
    :keyword consumer_tag: the consumer it was delivered to, if any.
    """

    def __init__(self, backend: Any, frame: Any, **kwargs: Any) -> None:
        #: The stomp.py frame this was made from.
        self._frame = frame
        headers = frame.headers
        exchange, routing_key = destination_info(headers.get("destination"))
        delivery_tag = headers.get("ack") or headers.get("message-id")
        body = frame.body
        kwargs.setdefault("body", body if body is not None else b"")
        kwargs.setdefault("delivery_tag", delivery_tag)
        kwargs.setdefault("content_type", headers.get("content-type"))
        kwargs.setdefault("content_encoding", headers.get("content-encoding"))
        info = {
            "exchange": exchange,
            "routing_key": routing_key,
            "redelivered": headers.get("redelivered") == "true",
            "delivery_tag": delivery_tag,
        }
        consumer_tag = kwargs.pop("consumer_tag", None)
        if consumer_tag is not None:
            info["consumer_tag"] = consumer_tag
        kwargs.setdefault("delivery_info", info)
        super().__init__(backend, **kwargs)
        priority = headers.get("priority")
        #: delivery_mode (2 when the ``persistent`` header is ``true``) and priority.
        self.properties: dict[str, Any] = {
            "delivery_mode": 2 if headers.get("persistent") == "true" else 1,
        }
        if priority is not None and priority.isdigit():
            self.properties["priority"] = int(priority)
        #: The application headers (the frame's headers, STOMP's own removed).
        self.headers: dict[str, str] = {
            key: value for key, value in headers.items() if key not in _TRANSPORT_HEADERS
        }


# -- the connection -----------------------------------------------------------


class _Subscription:
    """One SUBSCRIBE on a :class:`Connection`."""

    def __init__(
        self,
        sub_id: str,
        destination: str,
        ack: str,
        callback: Callable[[Any], Any] | None = None,
        consumer_tag: str | None = None,
        buffered: bool = False,
    ) -> None:
        self.id = sub_id
        self.destination = destination
        self.ack = ack
        self.callback = callback
        self.consumer_tag = consumer_tag
        #: Frames for this subscription alone (get/purge/declare), else the inbox.
        self.buffer: queue_module.Queue[Any] | None = queue_module.Queue() if buffered else None
        #: Delivered, not yet acked/nacked.
        self.outstanding = 0
        self.cancelled = False
        self.unsubscribed = False


class _Listener:
    """stomp.py's listener; runs on its receiver thread and only hands frames over."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def on_connected(self, frame: Any) -> None:
        self.connection._on_connected(frame)

    def on_message(self, frame: Any) -> None:
        self.connection._on_message(frame)

    def on_receipt(self, frame: Any) -> None:
        self.connection._on_receipt(frame)

    def on_error(self, frame: Any) -> None:
        self.connection._on_error(frame)

    def on_disconnected(self) -> None:
        self.connection._on_disconnected()


#: Put on a connection's inbox when it is lost, to wake drain_events.
_LOST = object()

#: Subscription ids, unique in the process (a get's connection and the shared
#: one must not both have a "carrot-sub-1").
_sub_ids = itertools.count(1)


class Connection:
    """One STOMP connection (what ``BrokerConnection.connection`` is for this backend).

    STOMP has no channels: every backend made from one
    :class:`~carrot.connection.BrokerConnection` subscribes on this one
    connection, and :meth:`drain_events` dispatches to all their consumers.

    :param host: the broker's host name.
    :param port: its STOMP port.
    :param userid: the login.
    :param password: the passcode (never shown in reprs or logs).
    :param virtual_host: sent as the ``host`` header.
    :param connect_timeout: seconds for the TCP connect and for the broker's
        CONNECTED (or a receipt) to come.
    :param heartbeats: STOMP heart-beats ``(send_ms, receive_ms)``.
    :param ssl: ``True``, or a dict of options for stomp.py's ``set_ssl``
        (``key_file``, ``cert_file``, ``ca_certs``, ...; ``ssl.wrap_socket``'s
        ``keyfile``/``certfile`` are accepted too).
    :raises TypeError: ``ssl`` is an :class:`ssl.SSLContext`, which stomp.py
        cannot take.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        userid: str | None = None,
        password: str | None = None,
        virtual_host: str | None = "/",
        connect_timeout: float | None = 5,
        heartbeats: tuple[int, int] = (0, 0),
        ssl: Any = False,
    ) -> None:
        self.host = host
        self.port = port
        self.userid = userid
        self._password = password
        self.virtual_host = virtual_host
        self.connect_timeout = connect_timeout
        self.heartbeats = heartbeats
        self.ssl = ssl
        #: MESSAGE frames of consumers, and errors, waiting for drain_events.
        self.inbox: queue_module.Queue[Any] = queue_module.Queue()
        #: False until CONNECTED, and again once closed or lost.
        self.connected = False
        #: product, version (from the CONNECTED frame's ``server`` header) and
        #: platform (the STOMP version), as ``carrot ping`` prints them.
        self.server_properties: dict[str, str] = {}
        #: The BrokerConnection this belongs to (set by the backend), for :meth:`channel`.
        self.client: Any = None
        self._stomp: Any = None
        self._event = threading.Event()
        self._gone = threading.Event()
        self._lock = threading.Lock()
        self._subscriptions: dict[str, _Subscription] = {}
        self._unsettled: dict[str, _Subscription] = {}
        self._receipts: dict[str, threading.Event] = {}
        self._error: Any = None
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        state = "open" if self.connected else "closed"
        return (
            f"<{type(self).__name__} stomp://{self.userid or ''}@{self.host}:{self.port}"
            f"{self.virtual_host or ''} {state}>"
        )

    # -- opening and closing ----------------------------------------------

    def connect(self) -> Connection:
        """Connect and wait for CONNECTED.

        :raises StompError: the broker refused (bad login, unknown vhost).
        :raises StompConnectionError: no answer within ``connect_timeout``.
        :raises stomp.exception.ConnectFailedException: the TCP connect failed.
        """
        stomp = _import_stomp()
        conn = stomp.Connection12(
            [(self.host, self.port)],
            auto_decode=False,  # keep bodies as bytes
            vhost=self.virtual_host,
            timeout=self.connect_timeout,
            heartbeats=self.heartbeats,
            reconnect_attempts_max=1,
        )
        if self.ssl:
            conn.set_ssl(for_hosts=[(self.host, self.port)], **_ssl_options(self.ssl))
        conn.set_listener("carrot", _Listener(self))
        self._stomp = conn
        self._event.clear()
        conn.connect(self.userid, self._password, wait=False)
        if not self._event.wait(self.connect_timeout):
            self._abort()
            raise StompConnectionError(
                f"no CONNECTED from {self.host}:{self.port} within {self.connect_timeout} s"
            )
        error = self._error
        if error is not None or not conn.is_connected():
            self._abort()
            if error is not None:
                raise _stomp_error(error)
            raise StompConnectionError(f"the STOMP connection to {self.host}:{self.port} closed")
        self.connected = True
        return self

    def _abort(self) -> None:
        self.connected = False
        conn = self._stomp
        sock = getattr(getattr(conn, "transport", None), "socket", None)
        if sock is not None and sock.fileno() != -1:  # not already closed under us
            with contextlib.suppress(OSError):
                conn.transport.disconnect_socket()

    def close(self) -> None:
        """Disconnect; unacknowledged deliveries go back to their queues."""
        was_connected, self.connected = self.connected, False
        conn = self._stomp
        if conn is None:
            return
        try:
            if was_connected and conn.is_connected():
                # stomp.py asks for a receipt and drops the socket when it comes.
                conn.disconnect()
                self._gone.wait(self.connect_timeout or 5)
        except Exception:  # closing: the socket may already be gone
            pass
        finally:
            self._abort()
            self.inbox.put(_LOST)

    def channel(self) -> Any:
        """A new backend on this connection (what a channel is here)."""
        return self.client.create_backend()

    # -- receiver thread (stomp.py's) --------------------------------------

    def _on_connected(self, frame: Any) -> None:
        server = frame.headers.get("server", "")
        product, _, version = server.partition("/")
        self.server_properties = {
            "product": product or "STOMP server",
            "version": version or "?",
            "platform": f"STOMP {frame.headers.get('version', '1.0')}",
        }
        self._event.set()

    def _on_message(self, frame: Any) -> None:
        sub = self._subscriptions.get(frame.headers.get("subscription", ""))
        if sub is not None and sub.buffer is not None:
            sub.buffer.put(frame)
        else:
            self.inbox.put(frame)

    def _on_receipt(self, frame: Any) -> None:
        event = self._receipts.pop(frame.headers.get("receipt-id", ""), None)
        if event is not None:
            event.set()

    def _on_error(self, frame: Any) -> None:
        self._error = frame
        self._event.set()
        for event in list(self._receipts.values()):
            event.set()
        if frame.headers.get("receipt-id") not in self._receipts:
            # Not the answer to a request someone waits for: drain_events raises it.
            self.inbox.put(frame)

    def _on_disconnected(self) -> None:
        self.connected = False
        self._gone.set()
        self._event.set()
        for event in list(self._receipts.values()):
            event.set()
        self.inbox.put(_LOST)

    # -- requests ------------------------------------------------------------

    def _receipt_id(self) -> str:
        return f"carrot-{next(self._ids)}"

    def _expect(self, receipt: str) -> threading.Event:
        event = threading.Event()
        self._receipts[receipt] = event
        return event

    def _await(self, receipt: str, event: threading.Event) -> None:
        """Wait for ``receipt``; raise the broker's ERROR or a lost connection instead."""
        if not event.wait(self.connect_timeout or 5):
            self._receipts.pop(receipt, None)
            raise StompConnectionError(f"no receipt from the STOMP broker for {receipt}")
        if self._error is not None:
            raise _stomp_error(self._error)
        if not self.connected:
            raise StompConnectionError()

    def _require(self) -> Any:
        if not self.connected or self._stomp is None:
            raise StompConnectionError("the STOMP connection is closed")
        return self._stomp

    def subscribe(
        self,
        destination: str,
        ack: str = "client-individual",
        headers: dict[str, str] | None = None,
        callback: Callable[[Any], Any] | None = None,
        consumer_tag: str | None = None,
        buffered: bool = False,
    ) -> _Subscription:
        """SUBSCRIBE and wait for the broker's receipt.

        :param callback: called with each MESSAGE frame by :meth:`drain_events`.
        :param buffered: keep this subscription's frames apart
            (``subscription.buffer``) instead of the inbox.
        :raises StompError: the broker refused (missing queue or exchange,
            mismatched queue properties).
        """
        conn = self._require()
        sub = _Subscription(
            f"carrot-sub-{next(_sub_ids)}", destination, ack, callback, consumer_tag, buffered
        )
        self._subscriptions[sub.id] = sub
        self._error = None  # an earlier ERROR (already raised, or not fatal) is not this one's
        receipt = self._receipt_id()
        event = self._expect(receipt)
        conn.subscribe(
            destination, sub.id, ack=ack, headers={**(headers or {}), "receipt": receipt}
        )
        try:
            self._await(receipt, event)
        except BaseException:
            self._subscriptions.pop(sub.id, None)
            raise
        return sub

    def unsubscribe(self, sub: _Subscription) -> None:
        """UNSUBSCRIBE now (deliveries of it can no longer be acked)."""
        if sub.unsubscribed:
            return
        sub.unsubscribed = True
        self._subscriptions.pop(sub.id, None)
        if self.connected:
            self._stomp.unsubscribe(sub.id)

    def cancel(self, sub: _Subscription) -> None:
        """Stop ``sub``; UNSUBSCRIBE once its unsettled deliveries are settled."""
        sub.cancelled = True
        if sub.outstanding == 0:
            self.unsubscribe(sub)

    def send(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        """SEND a message."""
        # Hot path (every publish): one frame write.
        self._require().send(destination, body, headers=headers)

    def settle(self, delivery_tag: str, requeue: bool | None = None) -> None:
        """ACK (``requeue=None``) or NACK a delivery.

        :param requeue: ``True`` puts it back, ``False`` drops it.
        """
        # Hot path (every ack).
        conn = self._require()
        if requeue is None:
            conn.ack(delivery_tag)
        else:
            conn.nack(delivery_tag, requeue=_bool_header(requeue))
        with self._lock:
            sub = self._unsettled.pop(delivery_tag, None)
            if sub is None:
                return
            sub.outstanding -= 1
            finished = sub.cancelled and sub.outstanding <= 0
        if finished:
            self.unsubscribe(sub)

    def _track(self, sub: _Subscription, frame: Any) -> None:
        if sub.ack == "auto":
            return
        tag = frame.headers.get("ack") or frame.headers.get("message-id")
        with self._lock:
            self._unsettled[tag] = sub
            sub.outstanding += 1

    def drain_events(self, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver one message to its consumer's callback, in this thread.

        :keyword timeout: seconds to wait; ``None`` waits for ever.
        :raises socket.timeout: nothing was delivered within ``timeout``.
        :raises StompError: the broker sent an ERROR frame.
        :raises StompConnectionError: the connection was lost or closed.
        """
        # Hot path (every delivery): one queue get and a dict lookup.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                frame = self.inbox.get(timeout=remaining)
            except queue_module.Empty:
                # socket.timeout is TimeoutError (Python 3.10+), what carrot callers catch.
                raise TimeoutError("timed out") from None
            if frame is _LOST:
                self.inbox.put(_LOST)  # every later wait fails too
                raise StompConnectionError()
            if frame.cmd == "ERROR":
                raise _stomp_error(frame)
            sub = self._subscriptions.get(frame.headers.get("subscription", ""))
            if sub is None or sub.cancelled or sub.callback is None:
                # Its consumer was cancelled: give the message back while we can.
                if sub is not None and sub.ack != "auto" and not sub.unsubscribed:
                    tag = frame.headers.get("ack") or frame.headers.get("message-id")
                    self._stomp.nack(tag, requeue="true")
                continue
            self._track(sub, frame)
            sub.callback(frame)
            return


#: ssl.wrap_socket-style option names -> stomp.py's set_ssl names.
_SSL_OPTION_NAMES = {"keyfile": "key_file", "certfile": "cert_file"}


def _ssl_options(ssl: Any) -> dict[str, Any]:
    """stomp.py ``set_ssl`` keywords for a BrokerConnection's ``ssl`` setting."""
    if ssl is True:
        return {}
    if isinstance(ssl, dict):
        return {_SSL_OPTION_NAMES.get(key, key): value for key, value in ssl.items()}
    raise TypeError(
        f"the stomp backend takes ssl=True or a dict of stomp.py set_ssl options "
        f"(key_file, cert_file, ca_certs, ...), not {type(ssl).__name__}"
    )


def _stomp_error(frame: Any) -> StompError:
    body = frame.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return StompError(frame.headers.get("message", "ERROR"), (body or "").strip())


# -- the backend --------------------------------------------------------------


class Backend(FlowByCancelMixin, BaseBackend):
    """carrot's backend for RabbitMQ's STOMP plugin, on stomp.py.

    :param connection: the :class:`~carrot.connection.BrokerConnection`
        (hostname, userid, password, virtual_host, port, connect_timeout,
        ssl).
    :raises carrot.exceptions.ClientNotInstalled: stomp.py is not installed.
    """

    Message = Message
    default_port = DEFAULT_PORT
    #: Lost or failed connections: ours and stomp.py's.
    connection_errors = _ErrorClasses(
        (StompConnectionError, OSError),
        ("ConnectFailedException", "NotConnectedException", "ConnectionClosedException"),
    )
    #: An ERROR frame from the broker.
    channel_errors = _ErrorClasses((StompError,), ())

    #: Seconds :meth:`get` waits for a message before returning ``None``.
    get_timeout: float = 0.5
    #: Seconds without a message after which :meth:`queue_purge` stops.
    purge_quiet_time: float = 0.2
    #: Most seconds :meth:`queue_purge` spends draining.
    purge_max_time: float = 30.0
    #: STOMP heart-beats ``(send_ms, receive_ms)``; off.
    heartbeats: tuple[int, int] = (0, 0)

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        _import_stomp()
        super().__init__(connection, **kwargs)
        #: consumer_tag -> (queue, no_ack, callback), for flow() (FlowByCancelMixin).
        self._consumers: dict[str, tuple[str, bool, Callable[[Any], Any]]] = {}
        #: consumer_tag -> its subscription.
        self._subscriptions: dict[str, _Subscription] = {}
        #: Set by flow(False): the consumers to start again on flow(True).
        self._paused: dict[str, tuple[str, bool, Callable[[Any], Any]]] | None = None
        #: queue -> properties from queue_declare.
        self._queues: dict[str, dict[str, Any]] = {}
        #: Queues known to exist on the broker (consumed as /amq/queue/...).
        self._existing: set[str] = set()
        #: queue -> (exchange, routing_key) to subscribe to when consumed.
        self._pending_bindings: dict[str, tuple[str, str]] = {}
        #: delivery_tag -> (destination, connection, subscription) of a
        #: get() message not yet settled.
        self._getters: dict[str, tuple[str, Connection, _Subscription]] = {}
        #: destination -> (connection, subscription) kept for the next get().
        self._idle_getters: dict[str, tuple[Connection, _Subscription]] = {}
        #: Set by :meth:`qos`: ``prefetch-count`` of later subscriptions.
        self.prefetch_count = 0

    # -- connections ---------------------------------------------------------

    def _new_connection(self) -> Connection:
        conninfo = self.connection
        if not conninfo.hostname:
            raise MissingConnectionSetting("hostname", "STOMP")
        conn = Connection(
            conninfo.hostname,
            int(conninfo.port or self.default_port),
            conninfo.userid,
            conninfo.password,
            conninfo.virtual_host,
            conninfo.connect_timeout,
            self.heartbeats,
            getattr(conninfo, "ssl", False),
        )
        conn.client = conninfo
        return conn.connect()

    def establish_connection(self) -> Connection:
        """Connect to the broker; every backend of the BrokerConnection shares it.

        :raises carrot.exceptions.MissingConnectionSetting: no hostname.
        """
        return self._new_connection()

    def close_connection(self, connection: Any) -> None:
        """Close a connection from :meth:`establish_connection`."""
        connection.close()

    @property
    def channel(self) -> Connection:
        """The shared :class:`Connection` (STOMP has no channels).

        :raises carrot.exceptions.ConnectionClosedError: the
            :class:`~carrot.connection.BrokerConnection` was closed.
        """
        return self._established()

    def close(self) -> None:
        """Cancel this backend's consumers and return unsettled ``get`` messages."""
        self._paused = None  # a later flow(True) has nothing to resume
        for tag in list(self._subscriptions):
            self.cancel(tag)
        getters, self._getters = self._getters, {}
        idle, self._idle_getters = self._idle_getters, {}
        for conn in {entry[1] for entry in getters.values()} | {
            entry[0] for entry in idle.values()
        }:
            conn.close()

    # -- declarations -----------------------------------------------------------

    def _short_subscription(self, destination: str, headers: dict[str, str]) -> None:
        """Subscribe on a connection of its own, then close it.

        Subscribing is how RabbitMQ's STOMP declares and binds; a message it
        delivers meanwhile goes back to the queue when the connection closes.
        """
        conn = self._new_connection()
        try:
            conn.subscribe(destination, headers={"prefetch-count": "1", **headers}, buffered=True)
        finally:
            conn.close()

    def queue_declare(
        self,
        queue: str,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        warn_if_exists: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Remember ``queue``'s properties; create it now unless exclusive or auto-delete.

        :raises StompError: it exists with other properties.
        """
        props = {
            "durable": durable,
            "exclusive": exclusive,
            "auto_delete": auto_delete,
            "arguments": arguments,
        }
        self._queues[queue] = props
        if queue.startswith("/") or exclusive or auto_delete or queue in self._existing:
            return
        self._short_subscription(consume_destination(queue), _queue_headers(props))
        self._existing.add(queue)

    def exchange_declare(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing: STOMP cannot declare exchanges (see the module's limits)."""

    def queue_bind(
        self, queue: str, exchange: str, routing_key: Any, arguments: dict[str, Any] | None = None
    ) -> None:
        """Bind ``queue`` to ``exchange`` with ``routing_key``.

        Done by a short subscription to ``/exchange/<exchange>/<routing_key>``
        with ``x-queue-name: <queue>``. ``arguments`` cannot be sent. An
        exclusive or auto-delete queue is bound when it is first consumed.
        """
        if not exchange or queue.startswith("/") or exchange.startswith("/"):
            return
        key = routing_key if isinstance(routing_key, str) else ""
        props = self._queues.get(queue, {})
        if props.get("exclusive") or props.get("auto_delete"):
            self._pending_bindings.setdefault(queue, (exchange, key))
            return
        headers = {**_queue_headers(props), "x-queue-name": queue}
        self._short_subscription(publish_destination(exchange, key), headers)
        self._existing.add(queue)

    def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` is known to exist (STOMP cannot ask the broker)."""
        return queue in self._existing

    def _destination(self, queue: str) -> tuple[str, dict[str, str]]:
        """Where to subscribe to consume ``queue``, and the headers for it."""
        binding = self._pending_bindings.get(queue)
        props = self._queues.get(queue)
        if binding is not None:
            headers = {**_queue_headers(props or {}), "x-queue-name": queue}
            return publish_destination(*binding), headers
        if queue in self._existing:
            return consume_destination(queue, exists=True), {}
        return consume_destination(queue), _queue_headers(props) if props else {}

    # -- consuming ---------------------------------------------------------------

    def get(self, queue: str, no_ack: bool = False) -> Message | None:
        """Take one message from ``queue``, or ``None`` after :attr:`get_timeout` seconds.

        Emulated with a subscription (``prefetch-count: 1``) on a connection
        of its own, kept open until the message is settled. After that, the
        subscription stays for the next ``get`` of the queue: the broker may
        already have sent it the next message, which stays there (unseen by
        other consumers) until that ``get``, or goes back to the queue when
        the backend closes. An empty queue closes it.
        """
        destination, headers = self._destination(queue)
        getter = self._idle_getters.pop(destination, None)
        if getter is None or not getter[0].connected:
            conn = self._new_connection()
            try:
                sub = conn.subscribe(
                    destination, headers={**headers, "prefetch-count": "1"}, buffered=True
                )
            except BaseException:
                conn.close()
                raise
            getter = (conn, sub)
        conn, sub = getter
        try:
            frame = sub.buffer.get(timeout=self.get_timeout)
        except queue_module.Empty:
            conn.close()
            return None
        message = self.Message(self, frame)
        self._getters[message.delivery_tag] = (destination, conn, sub)
        if no_ack:
            self._settle(message.delivery_tag, None)
        return message

    def declare_consumer(
        self,
        queue: str,
        no_ack: bool,
        callback: Callable[[Any], Any],
        consumer_tag: str,
        nowait: bool = False,
    ) -> str:
        """Subscribe to ``queue``; ``callback(frame)`` per delivery, from :meth:`consume`."""
        destination, headers = self._destination(queue)
        idle = self._idle_getters.pop(destination, None)
        if idle is not None:
            idle[0].close()  # a message it holds goes back, to this consumer
        if self.prefetch_count and not no_ack:
            headers["prefetch-count"] = str(self.prefetch_count)
        self._subscriptions[consumer_tag] = self.channel.subscribe(
            destination,
            ack="auto" if no_ack else "client-individual",
            headers=headers,
            callback=callback,
            consumer_tag=consumer_tag,
        )
        self._consumers[consumer_tag] = (queue, no_ack, callback)
        return consumer_tag

    def consume(self, limit: int | None = None) -> Iterator[bool]:
        """Dispatch deliveries to the consumers' callbacks, yielding after each.

        Stops after ``limit`` deliveries, or once this backend has no
        consumers or the connection is closed.
        """
        for total in itertools.count():
            if limit and total >= limit:
                return
            conn = self.connection.connection
            if not self._subscriptions or conn is None or not conn.connected:
                return
            conn.drain_events()
            yield True

    def drain_events(self, timeout: float | None = None) -> None:
        """Deliver one message to a consumer of any backend of this connection."""
        self.channel.drain_events(timeout=timeout)

    def cancel(self, consumer_tag: str) -> None:
        """Stop the consumer ``consumer_tag``."""
        self._consumers.pop(consumer_tag, None)
        if self._paused is not None and self._paused.pop(consumer_tag, None) is not None:
            return  # flow(False) unsubscribed it; flow(True) must not start it again
        sub = self._subscriptions.pop(consumer_tag, None)
        conn = self.connection.connection
        if sub is not None and conn is not None and conn.connected:
            conn.cancel(sub)

    def message_to_python(self, raw_message: Any) -> Message:
        """Wrap a stomp.py MESSAGE frame in a :class:`Message`."""
        # Hot path (every delivery).
        conn = self.connection.connection
        sub = None
        if conn is not None:
            sub = conn._subscriptions.get(raw_message.headers.get("subscription", ""))
        tag = sub.consumer_tag if sub is not None else None
        return self.Message(self, raw_message, consumer_tag=tag)

    def _settle(self, delivery_tag: Any, requeue: bool | None) -> None:
        # Hot path (every ack): one dict lookup for consumer deliveries.
        getter = self._getters.pop(delivery_tag, None)
        if getter is None:
            self.channel.settle(delivery_tag, requeue)
            return
        destination, conn, sub = getter
        try:
            conn.settle(delivery_tag, requeue)
        except BaseException:
            conn.close()
            raise
        if destination in self._idle_getters:
            conn.close()
        else:
            self._idle_getters[destination] = (conn, sub)

    def ack(self, delivery_tag: Any) -> None:
        """Acknowledge a delivery (ACK)."""
        self._settle(delivery_tag, None)

    def reject(self, delivery_tag: Any) -> None:
        """Reject a delivery; the broker drops or dead-letters it (NACK, ``requeue: false``)."""
        self._settle(delivery_tag, False)

    def requeue(self, delivery_tag: Any) -> None:
        """Put a delivery back on its queue (NACK, ``requeue: true``)."""
        self._settle(delivery_tag, True)

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        """Drain ``queue`` (``ack: auto``); return how many messages were removed."""
        destination, headers = self._destination(queue)
        conn = self._new_connection()
        removed = 0
        try:
            sub = conn.subscribe(destination, ack="auto", headers=headers, buffered=True)
            deadline = time.monotonic() + self.purge_max_time
            while time.monotonic() < deadline:
                try:
                    sub.buffer.get(timeout=self.purge_quiet_time)
                except queue_module.Empty:
                    break
                removed += 1
        finally:
            conn.close()
        return removed

    def qos(self, prefetch_size: int, prefetch_count: int, apply_global: bool = False) -> None:
        """Send ``prefetch-count`` on subscriptions made from now on."""
        self.prefetch_count = prefetch_count

    # -- publishing --------------------------------------------------------------

    def prepare_message(
        self,
        message_data: Any,
        delivery_mode: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> dict[str, Any]:
        """Build the message: ``body`` (bytes) and its STOMP headers.

        ``persistent`` is ``"true"`` for delivery mode 2; ``priority`` is
        sent when given.
        """
        body = message_data
        if isinstance(body, str):
            try:
                body = body.encode(content_encoding or "utf-8")
            except LookupError:
                body = body.encode("utf-8")
        message: dict[str, Any] = {
            "body": body if body is not None else b"",
            "persistent": _bool_header(delivery_mode == 2),
        }
        if content_type is not None:
            message["content-type"] = content_type
        if content_encoding is not None:
            message["content-encoding"] = content_encoding
        if priority is not None:
            message["priority"] = str(priority)
        return message

    def publish(
        self,
        message: dict[str, Any],
        exchange: str,
        routing_key: Any,
        mandatory: Any = None,
        immediate: Any = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Send a prepared message to the destination for ``exchange`` and ``routing_key``.

        A dict ``routing_key`` (headers exchanges) is sent as headers.
        """
        # Hot path (every publish).
        frame_headers = {key: value for key, value in message.items() if key != "body"}
        if isinstance(routing_key, dict):
            frame_headers.update((str(k), str(v)) for k, v in routing_key.items())
        if headers:
            frame_headers.update((str(k), str(v)) for k, v in headers.items())
        self.channel.send(
            publish_destination(exchange, routing_key), message["body"], frame_headers
        )
