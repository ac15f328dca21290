"""The STOMP wire client under the stomp backend: one connection on stomp.py.

:class:`Connection` speaks STOMP 1.2 through stomp.py (which parses and
builds the frames and owns the socket and its receiver thread), waits for
receipts, and hands MESSAGE and ERROR frames to the thread calling
:meth:`Connection.drain_events`. It knows nothing of carrot's backend
contract; :mod:`carrot.backends.pystomp` builds the backend on it and
re-exports :class:`Connection`. Its bookkeeping, which does no I/O, lives
apart: subscriptions and their unsettled deliveries in
``_stomp_subscriptions``, awaited receipts in ``_stomp_receipts``.

Threads: stomp.py's receiver thread only puts frames on queues and sets
events (:class:`_Listener`); those two modules say what guards their state.
"""

from __future__ import annotations

import contextlib
import queue as queue_module
import threading
import time
from collections.abc import Callable
from typing import Any

from carrot.backends._stomp_errors import StompConnectionError, stomp_error
from carrot.backends._stomp_receipts import Receipts
from carrot.backends._stomp_subscriptions import Subscription, Subscriptions, delivery_tag

__all__ = ["DEFAULT_PORT", "Connection"]

#: RabbitMQ's STOMP port.
DEFAULT_PORT = 61613


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
    :param client_cls: stomp.py's connection class, ``stomp.Connection12``
        when None (imported when connecting).
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
        ssl: bool | dict[str, Any] = False,
        client_cls: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self.userid = userid
        self._password = password
        self.virtual_host = virtual_host
        self.connect_timeout = connect_timeout
        self.heartbeats = heartbeats
        self.ssl = ssl
        #: stomp.py's connection class (``stomp.Connection12`` when None).
        self.client_cls = client_cls
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
        self._subscriptions = Subscriptions()
        self._receipts = Receipts()
        #: Set (by the receiver thread) when a SEND's receipt or ERROR came.
        self.send_settled = self._receipts.send_settled
        self._error: Any = None

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
        client_cls = self.client_cls
        if client_cls is None:
            import stomp

            client_cls = stomp.Connection12
        conn = client_cls(
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
                raise stomp_error(error)
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
        sub = self._subscriptions.by_id.get(frame.headers.get("subscription", ""))
        if sub is not None and sub.buffer is not None:
            sub.buffer.put(frame)
        else:
            self.inbox.put(frame)

    def _on_receipt(self, frame: Any) -> None:
        self._receipts.received(frame.headers.get("receipt-id", ""))

    def _on_error(self, frame: Any) -> None:
        self._receipts.refused(frame.headers.get("receipt-id", ""))
        self._error = frame
        self._event.set()
        self._receipts.wake_waiters()
        if not self._receipts.waits_for(frame.headers.get("receipt-id")):
            # Not the answer to a request someone waits for: drain_events raises it.
            self.inbox.put(frame)

    def _on_disconnected(self) -> None:
        self.connected = False
        self._gone.set()
        self._event.set()
        self._receipts.lost()
        self.inbox.put(_LOST)

    # -- requests ------------------------------------------------------------

    def _await(self, receipt: str, event: threading.Event) -> None:
        """Wait for ``receipt``; raise the broker's ERROR or a lost connection instead."""
        self._receipts.wait(receipt, event, self.connect_timeout or 5)
        if self._error is not None:
            raise stomp_error(self._error)
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
    ) -> Subscription:
        """SUBSCRIBE and wait for the broker's receipt.

        :param callback: called with each MESSAGE frame by :meth:`drain_events`.
        :param buffered: keep this subscription's frames apart
            (``subscription.buffer``) instead of the inbox.
        :raises StompError: the broker refused (missing queue or exchange,
            mismatched queue properties).
        """
        conn = self._require()
        sub = self._subscriptions.add(destination, ack, callback, consumer_tag, buffered)
        self._error = None  # an earlier ERROR (already raised, or not fatal) is not this one's
        receipt, event = self._receipts.expect()
        conn.subscribe(
            destination, sub.id, ack=ack, headers={**(headers or {}), "receipt": receipt}
        )
        try:
            self._await(receipt, event)
        except BaseException:
            self._subscriptions.remove(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """UNSUBSCRIBE now (deliveries of it can no longer be acked)."""
        if sub.unsubscribed:
            return
        sub.unsubscribed = True
        self._subscriptions.remove(sub)
        if self.connected:
            self._stomp.unsubscribe(sub.id)

    def cancel(self, sub: Subscription) -> None:
        """Stop ``sub``; UNSUBSCRIBE once its unsettled deliveries are settled."""
        sub.cancelled = True
        if sub.outstanding == 0:
            self.unsubscribe(sub)

    def send(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        """SEND a message."""
        # Hot path (every publish): one frame write.
        self._require().send(destination, body, headers=headers)

    def send_confirmed(
        self,
        destination: str,
        body: bytes,
        headers: dict[str, str],
        callback: Callable[[bool], object],
    ) -> None:
        """SEND asking for a receipt; ``callback(True)`` on RECEIPT, ``callback(False)`` on ERROR.

        The callback runs on stomp.py's receiver thread.
        """
        conn = self._require()
        receipt = self._receipts.expect_send(callback)
        try:
            conn.send(destination, body, headers={**headers, "receipt": receipt})
        except BaseException:
            self._receipts.forget_send(receipt)
            raise

    def check_sends(self) -> None:
        """Raise why SENDs awaiting receipts will not get them: the broker's ERROR, or the loss.

        RabbitMQ's ERROR for a SEND (a missing exchange, say) carries no
        receipt id, and the connection closes after it.
        """
        if self.connected:
            return
        if self._error is not None:
            raise stomp_error(self._error)
        raise StompConnectionError("the STOMP connection was lost before the receipts came")

    def settle(self, delivery_tag: str, requeue: bool | None = None) -> None:
        """ACK (``requeue=None``) or NACK a delivery.

        :param requeue: ``True`` puts it back, ``False`` drops it.
        """
        # Hot path (every ack).
        conn = self._require()
        if requeue is None:
            conn.ack(delivery_tag)
        else:
            conn.nack(delivery_tag, requeue="true" if requeue else "false")
        finished = self._subscriptions.settled(delivery_tag)
        if finished is not None:
            self.unsubscribe(finished)

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
                raise stomp_error(frame)
            sub = self._subscriptions.by_id.get(frame.headers.get("subscription", ""))
            if sub is None or sub.cancelled or sub.callback is None:
                # Its consumer was cancelled: give the message back while we can.
                if sub is not None and sub.ack != "auto" and not sub.unsubscribed:
                    self._stomp.nack(delivery_tag(frame), requeue="true")
                continue
            self._subscriptions.track(sub, frame)
            sub.callback(frame)
            return


#: ssl.wrap_socket-style option names -> stomp.py's set_ssl names.
_SSL_OPTION_NAMES = {"keyfile": "key_file", "certfile": "cert_file"}


def _ssl_options(ssl: bool | dict[str, Any]) -> dict[str, Any]:
    """stomp.py ``set_ssl`` keywords for a BrokerConnection's ``ssl`` setting."""
    if ssl is True:
        return {}
    if isinstance(ssl, dict):
        return {_SSL_OPTION_NAMES.get(key, key): value for key, value in ssl.items()}
    raise TypeError(
        f"the stomp backend takes ssl=True or a dict of stomp.py set_ssl options "
        f"(key_file, cert_file, ca_certs, ...), not {type(ssl).__name__}"
    )
