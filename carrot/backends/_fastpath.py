"""The py-amqp backend's fast path: publishing, delivering and acking.

py-amqp spends most of its per-message CPU in generic code: a
``drain_events(timeout=0)`` check before every ``basic_publish``, generic
property and argument serialization, one small ``recv`` per frame part and
one ``basic.ack`` frame per message. The classes here keep py-amqp's objects
(a :class:`FastConnection` *is* an :class:`amqp.Connection`, a
:class:`FastChannel` *is* an :class:`amqp.Channel`) and replace only those
hot paths:

* **publish** (:meth:`FastChannel.fast_publish`): the method frame is
  cached per (exchange, routing key, mandatory), the properties per set of
  values, and the three frames go out in one socket write. Instead of
  asking the socket before every publish whether the broker sent
  ``connection.blocked``, the connection tracks it from the frames it reads
  and looks for incoming frames every :data:`CHECK_EVERY` publishes; while
  blocked it does not write.
* **deliver** (:meth:`FastConnection.drain_events`): reads are large
  (``recv_into`` a reusable buffer) and parsed in place; ``basic.deliver``
  and its header and body frames are assembled here, with the properties
  decoded once per distinct header and cached. Every other frame
  (heartbeats, ``channel.close``, ``basic.cancel``, ``basic.return``,
  ``basic.get-ok``, ``connection.blocked``, confirms) goes to py-amqp's own
  frame handler, so correctness never depends on this module knowing a
  method.
* **ack** (:meth:`FastChannel.basic_ack`): consecutive acks are combined
  into one ``basic.ack(multiple=True)``; see :class:`AckTracker` for the
  rule. Only acks made while deliveries are being dispatched (inside
  ``drain_events``, i.e. from a consumer callback, in the thread running
  it) are held back; they are written before any other frame on the
  connection, before the client waits on the socket, when
  ``drain_events`` returns and the buffer holds no further whole event,
  when a callback raises, when ``Backend.consume`` stops, and when
  :data:`ACK_FLUSH_AT` of them are pending. An ack made anywhere else (after
  ``fetch()``, from application code between two waits, from another
  thread while one waits in ``drain_events``) is written at once, so an
  idle application never sits on an unsent ack.

Anything unexpected (a channel in confirm mode, a non-bytes body, a
connection another library built) takes py-amqp's own code path.
Like py-amqp, a connection is meant for one thread at a time; still, writes
are made under one lock, so a fast-path write never interleaves with another
thread's frame, and reads under another: while one thread waits in
``drain_events``, a publishing thread leaves the socket to it, and acks
made in other threads are written at once.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import select
import socket
import threading
import time
from struct import Struct
from threading import get_ident
from typing import Any

import amqp
from amqp import spec
from amqp.exceptions import UnexpectedFrame
from amqp.method_framing import frame_writer as amqp_frame_writer
from amqp.serialization import decode_properties_basic, dumps

__all__ = [
    "ACK_FLUSH_AT",
    "CHECK_EVERY",
    "AckTracker",
    "FastChannel",
    "FastConnection",
    "PublishFramer",
    "new_message",
    "publish_frames",
]

#: Publishes between two looks at the socket for frames the broker sent
#: (``connection.blocked``, ``channel.close``, ``basic.return``).
CHECK_EVERY = 64
#: Pending combined acks written out once this many have accumulated.
ACK_FLUSH_AT = 256
#: Bytes asked for per ``recv_into`` (grown when a frame is larger).
READ_SIZE = 256 * 1024
#: Distinct property headers remembered, per connection (publish and deliver).
PROPERTY_CACHE_SIZE = 256

_FRAME_HEADER = Struct(">BHI")
_HEADER_START = Struct(">BHIHH")
_BODY_START = Struct(">BH")
_SIZE = Struct(">Q")
_FRAME_SIZE = Struct(">I")
_ACK = Struct(">BHIHHQBB")
_DELIVER_SIG = b"\x00\x3c\x00\x3c"  # basic.deliver: class 60, method 60
#: The broker's publisher confirms: basic.ack and basic.nack.
_CONFIRM_METHODS = frozenset({spec.Basic.Ack, spec.Basic.Nack})
#: Methods followed by content frames: basic.deliver, basic.get-ok, basic.return.
_CONTENT_SIGS = (_DELIVER_SIG, b"\x00\x3c\x00\x47", b"\x00\x3c\x00\x32")
_FRAME_END = b"\xce"
_UNAVAILABLE = {errno.EAGAIN, errno.EINTR, errno.ENOENT, errno.EWOULDBLOCK}
_DELIVER = spec.Basic.Deliver


def _bounded_set(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= PROPERTY_CACHE_SIZE:
        cache.clear()
    cache[key] = value


# -- publishing ---------------------------------------------------------------------


def new_message(body: Any, properties: dict[str, Any]) -> amqp.Message:
    """An :class:`amqp.Message` equal to ``amqp.Message(body, **properties)``, built faster."""
    # Hot path: once per published message; sets what Message.__init__ sets.
    message = _new_message(amqp.Message)
    message.frame_method = None
    message.frame_args = None
    message.properties = properties
    message._pending_chunks = []
    message.body_received = 0
    message.body_size = 0
    message.ready = False
    message.delivery_info = None
    message.body = body
    message.channel = None
    return message


class PublishFramer:
    """Builds the frames of ``basic.publish`` byte for byte as py-amqp does.

    :param frame_max: the connection's negotiated maximum frame size.
    """

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        # (channel_id, exchange, routing_key, mandatory, immediate) -> method frame.
        self._methods: dict[tuple, bytes] = {}
        # tuple(properties.items()) -> serialized property flags and list.
        self._properties: dict[tuple, bytes] = {}
        # (channel, exchange, routing key, flags, *properties) ->
        # (method frame + header frame start, properties, properties + body frame start).
        self._heads: dict[tuple, tuple[bytes, bytes, bytes]] = {}

    def method_frame(
        self, channel_id: int, exchange: str, routing_key: str, mandatory: bool, immediate: bool
    ) -> bytes:
        """The complete ``basic.publish`` method frame, cached."""
        key = (channel_id, exchange, routing_key, mandatory, immediate)
        frame = self._methods.get(key)
        if frame is None:
            payload = b"\x00\x3c\x00\x28" + dumps(
                "Bssbb", (0, exchange, routing_key, mandatory, immediate)
            )
            frame = _FRAME_HEADER.pack(1, channel_id, len(payload)) + payload + _FRAME_END
            _bounded_set(self._methods, key, frame)
        return frame

    def properties(self, message: Any) -> bytes:
        """The serialized properties of ``message``, cached per distinct set of values."""
        props = message.properties
        try:
            key = tuple(props.items())
            encoded = self._properties.get(key)
        except TypeError:  # an unhashable value, such as a headers table
            return message._serialize_properties()
        if encoded is None:
            encoded = message._serialize_properties()
            _bounded_set(self._properties, key, encoded)
        return encoded

    def frames(
        self,
        channel_id: int,
        message: Any,
        exchange: str,
        routing_key: str,
        mandatory: bool = False,
        immediate: bool = False,
    ) -> bytes:
        """Every frame of one publish, joined, ready for one socket write.

        A ``str`` body is encoded with the message's ``content_encoding``
        (set to ``"utf-8"`` when missing), as py-amqp does.
        """
        # Hot path: runs once per published message.
        body = message.body
        if body.__class__ is str:
            body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
        try:
            key = (
                channel_id,
                exchange,
                routing_key,
                mandatory,
                immediate,
                *message.properties.items(),
            )
            cached = self._heads.get(key)
        except TypeError:  # an unhashable property value, such as a headers table
            key = cached = None
        if cached is None:
            props = self.properties(message)
            cached = (
                self.method_frame(channel_id, exchange, routing_key, mandatory, immediate)
                + _HEADER_START.pack(2, channel_id, 12 + len(props), 60, 0),
                props,
                props + _FRAME_END + _BODY_START.pack(3, channel_id),
            )
            if key is not None:
                _bounded_set(self._heads, key, cached)
        head, props, middle = cached
        size = len(body)
        chunk = self.frame_max - 8
        if 0 < size <= chunk:
            # The common case: method, header and body frame in one piece.
            return b"".join(
                (head, _SIZE.pack(size), middle, _FRAME_SIZE.pack(size), body, _FRAME_END)
            )
        parts = [head, _SIZE.pack(size), props, _FRAME_END]
        view = memoryview(body)
        for offset in range(0, size, chunk):
            piece = view[offset : offset + chunk]
            parts += (_FRAME_HEADER.pack(3, channel_id, len(piece)), piece, _FRAME_END)
        return b"".join(parts)


def publish_frames(
    channel_id: int,
    frame_max: int,
    message: Any,
    exchange: str,
    routing_key: str,
    mandatory: bool = False,
    immediate: bool = False,
) -> bytes:
    """The bytes of one ``basic.publish`` (uncached; for tests and tools)."""
    return PublishFramer(frame_max).frames(
        channel_id, message, exchange, routing_key, mandatory, immediate
    )


# -- acknowledgements ----------------------------------------------------------


class AckTracker:
    """Which deliveries on one channel await settlement, and which acks are pending.

    The rule: an ack is held back (pending) only while it can be combined
    correctly. ``basic.ack(tag, multiple=True)`` acknowledges *every*
    unacknowledged delivery up to ``tag`` on the channel, so a held-back ack
    of tag *t* becomes part of the combined ack only when *t* is the oldest
    delivery the caller has not settled yet (every earlier one was acked,
    rejected or requeued). An ack of any other outstanding tag is held as a
    single ack. When written, single acks go first, then the one combined
    ack, so no tag is ever acknowledged twice. Rejects and requeues, and
    acks of tags this tracker never saw, are written at once, after the
    pending acks.
    """

    __slots__ = ("live", "multiple", "order", "pending", "singles")

    def __init__(self) -> None:
        #: Tags delivered and not yet settled by the caller.
        self.live: set[int] = set()
        #: The same tags in delivery order (settled ones removed lazily).
        self.order: collections.deque[int] = collections.deque()
        #: Highest tag to acknowledge with ``multiple=True`` (0: none).
        self.multiple = 0
        #: Tags to acknowledge one by one, before :attr:`multiple`.
        self.singles: list[int] = []
        #: How many acks are held back.
        self.pending = 0

    def delivered(self, tag: int) -> None:
        """Record a delivery that needs settling."""
        self.live.add(tag)
        self.order.append(tag)

    def ack(self, tag: int) -> bool:
        """Hold back an ack of ``tag``; ``False`` when it must be sent now instead."""
        # Hot path: once per acked message.
        live = self.live
        if tag not in live:
            return False
        live.remove(tag)
        order = self.order
        while order and order[0] not in live and order[0] != tag:
            order.popleft()
        if order and order[0] == tag:
            order.popleft()
            self.multiple = tag
        else:
            self.singles.append(tag)
            if len(order) > 2 * len(live) + 64:
                # An old delivery stays unsettled: drop the settled tags
                # queued behind it (amortized; keeps memory bounded).
                self.order = collections.deque(t for t in order if t in live)
        self.pending += 1
        return True

    def settled(self, tag: int) -> None:
        """Forget ``tag`` (rejected, requeued, or acked outside the tracker)."""
        self.live.discard(tag)

    def settled_upto(self, tag: int) -> None:
        """Forget every tag up to ``tag`` (an explicit ``multiple=True`` ack)."""
        self.live = {t for t in self.live if t > tag}

    def take(self) -> tuple[list[int], int]:
        """Return and clear the pending ``(singles, multiple)``."""
        singles, multiple = self.singles, self.multiple
        self.singles, self.multiple, self.pending = [], 0, 0
        return singles, multiple

    def reset(self) -> None:
        """Forget everything (the channel was (re)opened: tags start again at 1)."""
        self.live.clear()
        self.order.clear()
        self.singles, self.multiple, self.pending = [], 0, 0


def ack_frames(channel_id: int, singles: list[int], multiple: int) -> bytes:
    """The ``basic.ack`` frames for held-back acks, singles first."""
    frames = [_ACK.pack(1, channel_id, 13, 60, 80, tag, 0, 0xCE) for tag in singles]
    if multiple:
        frames.append(_ACK.pack(1, channel_id, 13, 60, 80, multiple, 1, 0xCE))
    return b"".join(frames)


class FastChannel(amqp.Channel):
    """A py-amqp channel with a fast ``publish`` and combined acks.

    It is a plain :class:`amqp.Channel` for everything else; the methods it
    overrides keep their py-amqp signatures and effects.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Deliveries awaiting settlement and the acks held back.
        self.acks = AckTracker()
        super().__init__(*args, **kwargs)

    def _on_open_ok(self) -> None:
        # Delivery tags start again at 1 on a (re)opened channel.
        self.acks.reset()
        super()._on_open_ok()

    def collect(self) -> None:
        self.acks.reset()
        super().collect()

    # -- publish ---------------------------------------------------------------

    def fast_publish(
        self,
        message: Any,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
    ) -> None:
        """``basic_publish`` without its per-message overhead (same frames, same effect).

        Falls back to :meth:`basic_publish` for confirm mode and for bodies
        that are neither ``bytes`` nor ``str``.
        """
        # Hot path: runs once per published message.
        conn = self.connection
        if (
            conn is None
            or not self.is_open
            or self._confirm_selected
            or conn.confirm_publish
            or not isinstance(conn, FastConnection)
            or not isinstance(message.body, (bytes, str))
        ):
            return self.basic_publish(
                message,
                exchange=exchange,
                routing_key=routing_key,
                mandatory=mandatory,
                immediate=immediate,
            )
        data = conn.framer.frames(
            self.channel_id, message, exchange, routing_key, mandatory, immediate
        )
        conn.write_publish(data)

    # -- acks ------------------------------------------------------------------

    # -- confirms ----------------------------------------------------------------

    def dispatch_method(self, method_sig: Any, payload: Any, content: Any) -> Any:
        """As py-amqp's, but confirms reaching a closing confirm-mode channel are dropped quietly.

        Closing a channel with messages still unconfirmed (carrot's recovery
        replaces a channel a quorum queue without a leader nacked, and
        re-sends what it left) makes the broker answer each of them before
        ``close-ok``; py-amqp ignores them anyway, but logs a WARNING for
        every one, hundreds per failover.
        """
        # The broker sends basic.ack/basic.nack only to a channel in confirm mode.
        if self.is_closing and method_sig in _CONFIRM_METHODS:
            return None
        return super().dispatch_method(method_sig, payload, content)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False, argsig: str = "Lb") -> Any:
        """Acknowledge; consecutive single acks are combined (see :class:`AckTracker`)."""
        # Hot path: once per acked message.
        conn = self.connection
        if (
            not multiple
            and conn is not None
            and conn._dispatching
            and conn._dispatch_thread != get_ident()
        ):
            # Another thread is inside drain_events (maybe blocked reading a
            # socket that stays quiet until the broker sees this ack): write
            # it now, alone, leaving that thread's held-back acks to it (no
            # combined ack of its covers this tag: it is still live), and
            # only then forget the tag.
            with conn.write_lock:
                conn.transport.write(ack_frames(self.channel_id, [delivery_tag], 0))
            conn.bytes_sent += 1
            self.acks.settled(delivery_tag)
            return None
        if not multiple and conn is not None:
            # The tracker changes under the write lock: another thread's frame
            # write (a reject, a close) takes held-back acks under it too.
            with conn.write_lock:
                held = self.acks.ack(delivery_tag)
                flush = held and conn._hold_ack(self)
            if held:
                if flush:
                    conn.flush_acks()
                return None
        if multiple:
            self.acks.settled_upto(delivery_tag)
        return super().basic_ack(delivery_tag, multiple, argsig)

    def basic_reject(self, delivery_tag: Any, requeue: bool, argsig: str = "Lb") -> Any:
        self.acks.settled(delivery_tag)
        return super().basic_reject(delivery_tag, requeue, argsig)

    def basic_nack(
        self, delivery_tag: Any, multiple: bool = False, requeue: bool = True, argsig: str = "Lbb"
    ) -> Any:
        """Reject one delivery, or every one up to ``delivery_tag`` (RabbitMQ's ``basic.nack``).

        py-amqp's channel has no ``basic_nack``; this sends the frame itself.
        """
        if multiple:
            self.acks.settled_upto(delivery_tag)
        else:
            self.acks.settled(delivery_tag)
        return self.send_method(spec.Basic.Nack, argsig, (delivery_tag, multiple, requeue))

    def basic_get(self, queue: str = "", no_ack: bool = False, argsig: str = "Bsb") -> Any:
        message = super().basic_get(queue, no_ack, argsig)
        if message is not None and not no_ack:
            self.acks.delivered(message.delivery_info["delivery_tag"])
        return message

    def _on_basic_deliver(
        self,
        consumer_tag: str,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        msg: Any,
    ) -> None:
        # Deliveries py-amqp assembled (the fast path handed them over).
        if consumer_tag not in self.no_ack_consumers:
            self.acks.delivered(delivery_tag)
        super()._on_basic_deliver(
            consumer_tag, delivery_tag, redelivered, exchange, routing_key, msg
        )


# -- the connection ------------------------------------------------------------


class FastConnection(amqp.Connection):
    """A py-amqp connection with buffered reads, fast deliveries and flow tracking.

    :keyword socket_settings: as py-amqp's; ``TCP_USER_TIMEOUT`` defaults
        to 0 (the system's) instead of py-amqp's 1 second, which kills a
        publisher whose writes the broker throttles.
    """

    Channel = FastChannel

    #: True between the broker's ``connection.blocked`` and ``connection.unblocked``.
    is_blocked = False
    #: The reason the broker gave for blocking.
    blocked_reason: str | None = None
    #: The channel of the last method dispatched.
    _last_channel_id: int | None = None
    #: The thread inside the outermost running drain_events.
    _dispatch_thread: int | None = None
    #: Methods dispatched so far (another thread waiting to read watches it).
    _dispatched = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = dict(kwargs.get("socket_settings") or {})
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            settings.setdefault(socket.TCP_USER_TIMEOUT, 0)
        kwargs["socket_settings"] = settings
        kwargs.setdefault("frame_writer", _locked_frame_writer)
        self.write_lock = threading.Lock()
        #: Held by the thread reading the socket (in drain_events).
        self._read_lock = threading.RLock()
        self._ack_channels: list[FastChannel] = []
        self._acks_pending = 0
        # How deep we are in drain_events (callbacks may wait again inside).
        self._dispatching = 0
        self._since_check = 0
        self._poller: Any = None
        self._rbuf = bytearray(READ_SIZE)
        self._rview = memoryview(self._rbuf)
        self._rstart = 0
        self._rend = 0
        self._partial: dict[int, list] = {}
        self._props_cache: dict[bytes, dict] = {}
        self.framer = PublishFramer(131072)
        super().__init__(*args, **kwargs)

    def connect(self, callback: Any = None) -> Any:
        if not self.connected:
            # A new socket: nothing read from (or held back for) the old one
            # carries over, such as a frame it was cut off in the middle of.
            self._rstart = self._rend = 0
            self._partial.clear()
            self._poller = None
            self._ack_channels = []
            self._acks_pending = 0
            self.is_blocked = False
            self.blocked_reason = None
        return super().connect(callback)

    def _on_tune(self, *args: Any, **kwargs: Any) -> Any:
        result = super()._on_tune(*args, **kwargs)
        self.framer = PublishFramer(self.frame_max)
        return result

    # -- flow control -------------------------------------------------------------

    def _on_blocked(self, reason: str | None = None, *args: Any) -> Any:
        self.is_blocked = True
        self.blocked_reason = reason
        return super()._on_blocked()

    def _on_unblocked(self) -> Any:
        self.is_blocked = False
        self.blocked_reason = None
        return super()._on_unblocked()

    def _check_inbound(self) -> None:
        """Handle whatever frames the broker has sent, without waiting."""
        self._since_check = 0
        if not self._read_lock.acquire(blocking=False):
            # Another thread is reading (in drain_events): the socket and
            # the read buffer are its; it handles what the broker sends.
            return
        try:
            self._check_inbound_locked()
        finally:
            self._read_lock.release()

    def _check_inbound_locked(self) -> None:
        if self._rend - self._rstart < 8:
            poller = self._poller
            if poller is None:
                poller = self._poller = select.poll()
                poller.register(self.transport.sock, select.POLLIN)
            pending = getattr(self.transport.sock, "pending", None)  # TLS: decrypted bytes
            if not poller.poll(0) and not (pending and pending()):
                return
        try:
            while True:
                self.drain_events(timeout=0)
        except TimeoutError:
            pass

    def write_publish(self, data: bytes) -> None:
        """Write one publish's frames; first honour ``connection.blocked``."""
        # Hot path: once per published message.
        self._since_check += 1
        if self._since_check >= CHECK_EVERY:
            self._check_inbound()
        while self.is_blocked:
            # The broker asked publishers to stop: wait for connection.unblocked.
            if self._read_lock.acquire(blocking=False):
                try:
                    self.drain_events(timeout=None)
                finally:
                    self._read_lock.release()
            else:
                time.sleep(0.01)  # the thread in drain_events reads it
        with self.write_lock:
            if self._acks_pending and (
                not self._dispatching or self._dispatch_thread == get_ident()
            ):
                # (Held-back acks belong to the dispatching thread; another
                # thread's publish leaves them to it.)
                self._flush_acks()
            self.transport.write(data)
        self.bytes_sent += 1

    # -- acks ---------------------------------------------------------------------

    def _hold_ack(self, channel: FastChannel) -> bool:
        """Count an ack held back on ``channel`` (write lock held); true: flush now."""
        if channel not in self._ack_channels:
            self._ack_channels.append(channel)
        self._acks_pending += 1
        # Outside a dispatch nothing would flush it soon: write it now.
        return self._acks_pending >= ACK_FLUSH_AT or not self._dispatching

    def flush_acks(self) -> None:
        """Write every held-back ack now."""
        if self._acks_pending:
            with self.write_lock:
                self._flush_acks()

    def _flush_acks(self) -> None:
        # Called with write_lock held.
        channels, self._ack_channels = self._ack_channels, []
        self._acks_pending = 0
        data = b"".join(
            ack_frames(ch.channel_id, *ch.acks.take())
            for ch in channels
            if ch.channel_id is not None and ch.connection is not None
        )
        if data:
            self.transport.write(data)
            self.bytes_sent += 1

    def close(self, *args: Any, **kwargs: Any) -> Any:
        if self._acks_pending and self.connected:
            with contextlib.suppress(OSError):
                self.flush_acks()
        return super().close(*args, **kwargs)

    # -- reading ------------------------------------------------------------------

    def _fill(self, timeout: float | None) -> None:
        """Read more bytes into the buffer, waiting up to ``timeout``."""
        if self._acks_pending:
            # About to wait on the socket: held-back acks must be out first.
            self.flush_acks()
        start, end = self._rstart, self._rend
        buf = self._rbuf
        if start:
            # Move the partial frame to the front.
            buf[: end - start] = buf[start:end]
            end -= start
            self._rstart = 0
            self._rend = end
        if end >= len(buf) - 64:
            # A frame larger than the buffer: grow it (a bytearray cannot be
            # resized while a memoryview of it exists).
            self._rview.release()
            buf.extend(bytes(len(buf)))
            self._rview = memoryview(buf)
        transport = self.transport
        try:
            with transport.having_timeout(timeout):
                n = transport.sock.recv_into(self._rview[end:])
        except TimeoutError:
            raise
        except OSError as exc:
            if exc.errno not in _UNAVAILABLE:
                transport.connected = False
            raise
        if not n:
            transport.connected = False
            raise OSError("Server unexpectedly closed connection")
        self._rend = end + n

    def blocking_read(self, timeout: float | None = None) -> Any:
        """Read and handle one frame; true once a method was dispatched."""
        return self._next_frame(timeout)

    def drain_events(self, timeout: float | None = None) -> None:
        """Wait for one method (or delivery) and dispatch it.

        :keyword timeout: seconds to wait for each read; :exc:`socket.timeout`
            when it passes.
        """
        # Hot path: runs once per delivered message.
        # One thread reads at a time (a publishing thread looks for inbound
        # frames too); the lock is reentrant for waits inside callbacks.
        lock = self._read_lock
        if not lock.acquire(blocking=False) and not self._wait_for_reader(timeout):
            return
        try:
            self._drain_events(timeout)
        finally:
            lock.release()

    def _wait_for_reader(self, timeout: float | None) -> bool:
        """Another thread is reading: wait for the read lock, or for it to dispatch.

        ``True`` with the lock held; ``False`` once the other thread has
        dispatched a method (maybe the one this thread waits for, as in
        ``close()`` or ``queue_declare()`` from a second thread): the
        caller's wait loop then looks again, as after any event.
        """
        seen = self._dispatched
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._read_lock.acquire(timeout=0.05):
            if self._dispatched != seen:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")
        if self._dispatched != seen:
            self._read_lock.release()
            return False
        return True

    def _drain_events(self, timeout: float | None) -> None:
        next_frame = self._next_frame
        if not self._dispatching:
            self._dispatch_thread = get_ident()
        self._dispatching += 1
        try:
            while not next_frame(timeout):
                pass
        except BaseException:
            self._dispatching -= 1
            if self._acks_pending and self.connected:
                # A callback raised (or the read failed): the application may
                # not come back, so the acks made so far go out now.
                with contextlib.suppress(OSError):
                    self.flush_acks()
            raise
        self._dispatching -= 1
        self._dispatched += 1
        if self._acks_pending and not self._event_buffered():
            # What was read holds no further whole event (the next one needs
            # another read, which may be long in coming: the application may
            # not even wait again): send the acks the handled ones produced.
            self.flush_acks()

    def _event_buffered(self) -> bool:
        """Whether the read buffer holds a whole method (and its content) not handled yet.

        Only ``True`` when the next :meth:`drain_events` surely dispatches
        without reading; held-back acks stay held only then.
        """
        # Hot path (per delivery while acks are held): usually three frames.
        buf, pos, end = self._rbuf, self._rstart, self._rend
        # channel -> body bytes still expected (None: waiting for the header).
        content: dict[int, int | None] = {
            ch: None if partial[6] is None else partial[7] - partial[9]
            for ch, partial in self._partial.items()
        }
        while end - pos >= 8:
            ftype, channel_id, size = _FRAME_HEADER.unpack_from(buf, pos)
            if pos + 8 + size > end:
                return False
            if ftype == 1:
                if buf[pos + 7 : pos + 11] not in _CONTENT_SIGS:
                    return True
                content[channel_id] = None
            elif ftype == 2:
                (body_size,) = _BODY_SIZE.unpack_from(buf, pos + 11)
                if not body_size:
                    return True
                content[channel_id] = body_size
            elif ftype == 3:
                left = content.get(channel_id)
                if left is None:
                    return False  # py-amqp's own partial content: do not guess
                if left <= size:
                    return True
                content[channel_id] = left - size
            pos += 8 + size
        return False

    def _next_frame(self, timeout: float | None) -> bool:
        # Hot path: parses one frame from the buffer (reading when it has none).
        while True:
            start = self._rstart
            if self._rend - start >= 7:
                buf = self._rbuf
                ftype, channel_id, size = _FRAME_HEADER.unpack_from(buf, start)
                end = start + 7 + size
                if end < self._rend:
                    if buf[end] != 0xCE:
                        raise UnexpectedFrame(
                            f"Received frame_end {buf[end]:#04x} while expecting 0xce"
                        )
                    self._rstart = end + 1
                    return self._on_frame(ftype, channel_id, buf, start + 7, size)
            self._fill(timeout)

    def _on_frame(
        self, ftype: int, channel_id: int, buf: bytearray, offset: int, size: int
    ) -> bool:
        # Hot path: once per frame.
        partial = self._partial.get(channel_id)
        if partial is not None:
            return self._on_content(partial, ftype, channel_id, buf, offset, size)
        if ftype == 1 and buf[offset : offset + 4] == _DELIVER_SIG:
            channel = self.channels.get(channel_id)
            if (
                channel is not None
                and channel.__class__ is FastChannel
                and not channel.is_closing
                and _DELIVER not in channel._pending
            ):
                self.bytes_recv += 1
                self._partial[channel_id] = _parse_deliver(channel, buf, offset + 4)
                return False
        # Everything else is py-amqp's.
        return self.on_inbound_frame(
            (ftype, channel_id, bytes(self._rview[offset : offset + size]))
        )

    def _on_content(
        self, partial: list, ftype: int, channel_id: int, buf: bytearray, offset: int, size: int
    ) -> bool:
        # Hot path: the header and body frames of a delivery.
        # partial: [channel, consumer_tag, delivery_tag, redelivered, exchange,
        #           routing_key, properties, body_size, chunks, received]
        self.bytes_recv += 1
        if ftype == 2:
            if partial[6] is not None:
                raise UnexpectedFrame("Received a second content header while expecting a body")
            (body_size,) = _BODY_SIZE.unpack_from(buf, offset + 4)
            key = bytes(self._rview[offset + 12 : offset + size])
            cached = self._props_cache.get(key)
            if cached is None:
                props, _ = decode_properties_basic(key, 0)
                if "application_headers" not in props:
                    _bounded_set(self._props_cache, key, props)
                    props = dict(props)
            else:
                props = dict(cached)
            partial[6] = props
            partial[7] = body_size
            if body_size:
                return False
            body = ""  # as py-amqp: a message without a body has body ""
        elif ftype == 3:
            if partial[6] is None:
                raise UnexpectedFrame("Received a content body while expecting a header")
            chunk = bytes(self._rview[offset : offset + size])
            received = partial[9] + size
            if received < partial[7]:
                partial[8].append(chunk)
                partial[9] = received
                return False
            if partial[8]:
                partial[8].append(chunk)
                body = b"".join(partial[8])
            else:
                body = chunk
        elif ftype == 8:
            return False
        else:
            raise UnexpectedFrame(f"Received frame {ftype} while expecting content")
        del self._partial[channel_id]
        # As py-amqp's on_inbound_method would see it (wait_multi reads it).
        self._last_channel_id = channel_id
        self._deliver(partial, body)
        return True

    def _deliver(self, partial: list, body: bytes) -> None:
        # Hot path: hands one assembled delivery to its consumer's callback.
        channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key, props = partial[:7]
        msg = _new_message(amqp.Message)
        msg.frame_method = _DELIVER
        msg.frame_args = None
        msg.properties = props
        msg._pending_chunks = []
        msg.body_received = msg.body_size = len(body)
        msg.ready = True
        if channel.auto_decode and body and "content_encoding" in props:
            try:  # noqa: SIM105 -- hot path: try/except costs less than suppress()
                body = body.decode(props["content_encoding"])
            except Exception:
                pass
        msg.body = body
        callback = channel.callbacks.get(consumer_tag)
        if callback is None:
            # py-amqp logs and requeues deliveries for unknown consumers.
            msg.delivery_info = None
            msg.channel = None
            channel._on_basic_deliver(
                consumer_tag, delivery_tag, redelivered, exchange, routing_key, msg
            )
            return
        if consumer_tag not in channel.no_ack_consumers:
            acks = channel.acks
            acks.live.add(delivery_tag)
            acks.order.append(delivery_tag)
        msg.channel = channel
        msg.delivery_info = {
            "consumer_tag": consumer_tag,
            "delivery_tag": delivery_tag,
            "redelivered": redelivered,
            "exchange": exchange,
            "routing_key": routing_key,
        }
        callback(msg)


_BODY_SIZE = Struct(">Q")
_TAG_FLAG = Struct(">QB")
_new_message = object.__new__


def _parse_deliver(channel: FastChannel, buf: bytearray, offset: int) -> list:
    """Parse ``basic.deliver``'s arguments into a partial delivery."""
    # Hot path: once per delivery. Short strings decode as py-amqp decodes
    # them ("surrogatepass": what a py-amqp publisher can send).
    n = buf[offset]
    consumer_tag = buf[offset + 1 : offset + 1 + n].decode("utf-8", "surrogatepass")
    offset += 1 + n
    delivery_tag, redelivered = _TAG_FLAG.unpack_from(buf, offset)
    offset += 9
    n = buf[offset]
    exchange = buf[offset + 1 : offset + 1 + n].decode("utf-8", "surrogatepass")
    offset += 1 + n
    n = buf[offset]
    routing_key = buf[offset + 1 : offset + 1 + n].decode("utf-8", "surrogatepass")
    return [
        channel,
        consumer_tag,
        delivery_tag,
        bool(redelivered & 1),
        exchange,
        routing_key,
        None,
        0,
        [],
        0,
    ]


def _locked_frame_writer(connection: Any, transport: Any) -> Any:
    """py-amqp's frame writer, under the connection's write lock, after held-back acks."""
    write = amqp_frame_writer(connection, transport)
    lock = connection.write_lock

    def write_frame(type_: int, channel: int, method_sig: Any, args: Any, content: Any) -> Any:
        with lock:
            if connection._acks_pending:
                connection._flush_acks()
            return write(type_, channel, method_sig, args, content)

    return write_frame
