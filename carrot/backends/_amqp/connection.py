"""The py-amqp connection carrot uses, with the fast publish, deliver and ack paths.

py-amqp spends most of its per-message CPU in generic code: a
``drain_events(timeout=0)`` check before every ``basic_publish``, generic
property and argument serialization, one small ``recv`` per frame part and
one ``basic.ack`` frame per message. :class:`Connection` *is* an
:class:`amqp.Connection` and replaces only those hot paths:

* **publish** (:meth:`Channel.fast_publish <.channel.Channel.fast_publish>`):
  frames built by :class:`~.framing.PublishFramer` go out in one socket
  write. Instead of asking the socket before every publish whether the
  broker sent ``connection.blocked``, the connection tracks it from the
  frames it reads and looks for incoming frames every :data:`CHECK_EVERY`
  publishes; while blocked it does not write.
* **deliver** (:meth:`Connection.drain_events`): a :class:`~.reader.FrameReader`
  reads large chunks; ``basic.deliver`` and its header and body frames are
  assembled here. Every other frame (heartbeats, ``channel.close``,
  ``basic.cancel``, ``basic.return``, ``basic.get-ok``, confirms) goes to
  py-amqp's own frame handler, so correctness never depends on this module
  knowing a method.
* **ack**: consecutive acks are combined (:mod:`.acks`).

:class:`~.plain.PlainConnection` is the same without the fast paths: the
base of :class:`Connection`, and what the backend uses when :mod:`.seam`
finds a py-amqp it was not tested with.

Threads. Like py-amqp, a connection is meant for one thread at a time;
still, these locks keep a second thread from corrupting it:

=====================  ===================================================
lock                   guards
=====================  ===================================================
``_read_lock`` (RLock)  the socket's read side: ``reader`` (buffer,
                       positions, poller), ``_partial``, ``_properties``;
                       written under it, read by waiting threads without
                       it (single values): ``_dispatched``,
                       ``is_blocked``, ``blocked_reason``
``write_lock``         every socket write, and ``held_acks`` (the same
                       lock: ``held_acks.lock``) with each channel's held
                       acks; the heartbeat thread (:mod:`.heartbeat`)
                       writes its frames under it, taking it only when
                       free
(none)                 ``bytes_recv``/``bytes_sent``: counters bumped by
                       the reading/writing thread, sampled by the
                       heartbeat thread (a stale value delays it a tick);
                       ``heartbeat_lost`` and ``transport.connected``:
                       set once by the heartbeat thread when it gives a
                       silent peer up, before it shuts the socket down
=====================  ===================================================

Lock order: ``_read_lock`` before ``write_lock`` (the reading thread writes
held acks); never the other way. The heartbeat thread takes no lock but
``write_lock``, and that without waiting. ``_since_check`` is a counter of publishes
read and written without a lock: a lost update only moves one look at the
socket. Anything unexpected (a channel in confirm mode, a non-bytes body)
takes py-amqp's own code path.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from threading import get_ident
from typing import Any

from amqp import spec
from amqp.exceptions import FrameError, UnexpectedFrame

from carrot.backends._amqp import seam
from carrot.backends._amqp.acks import HeldAcks
from carrot.backends._amqp.channel import Channel
from carrot.backends._amqp.framing import (
    BLOCKED_SIG,
    CONFIRM_ACK_SIG,
    CONFIRM_NACK_SIG,
    DELIVER_SIG,
    LONGLONG,
    PartialDelivery,
    PropertiesCache,
    PublishFramer,
    frame_error,
    parse_blocked_reason,
    parse_deliver,
    whole_event_buffered,
)
from carrot.backends._amqp.plain import PlainConnection
from carrot.backends._amqp.reader import FrameReader

__all__ = ["CHECK_EVERY", "Connection"]

#: Publishes between two looks at the socket for frames the broker sent
#: (``connection.blocked``, ``channel.close``, ``basic.return``).
CHECK_EVERY = 64

_DELIVER = spec.Basic.Deliver
_delivered_message = seam.delivered_message


#: The channel class, for annotations inside :class:`Connection` (whose
#: ``Channel`` attribute shadows the name there).
_Channel = Channel


class Connection(seam.SeamConnection, PlainConnection):
    """A py-amqp connection with buffered reads, fast deliveries and flow tracking.

    Keywords as :class:`PlainConnection`.
    """

    Channel = Channel
    fast_path = True

    #: Called with the channel id of each delivery the fast path dispatches
    #: (py-amqp's own dispatches go through ``on_inbound_method``).
    delivery_observer: Callable[[int], None] | None = None
    #: Methods dispatched so far (another thread waiting to read watches it).
    _dispatched = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.held_acks = HeldAcks()
        self.delivery_observer = None
        self.write_lock = self.held_acks.lock
        kwargs.setdefault("frame_writer", self._guarded_frame_writer)
        #: Held by the thread reading the socket (in drain_events).
        self._read_lock = threading.RLock()
        self._since_check = 0
        self.reader = FrameReader(self._on_frame, self._before_wait, self._current_transport)
        self._partial: dict[int, PartialDelivery] = {}
        self._properties = PropertiesCache()
        self.framer = PublishFramer(131072)
        super().__init__(*args, **kwargs)
        self.reader.frame_limit = max(self.frame_max, 131072) - 8

    def _guarded_frame_writer(self, connection: Any, transport: Any) -> Any:
        # py-amqp's writer, after the held-back acks and under the write lock.
        return seam.guarded_frame_writer(connection, transport, self.write_lock, self._flush_locked)

    def _current_transport(self) -> Any:
        return self.transport

    def connect(self, callback: Any = None) -> Any:
        if not self.connected:
            # A new socket: nothing read from (or held back for) the old one
            # carries over, such as a frame it was cut off in the middle of.
            self.reader.reset()
            self._partial.clear()
            self.held_acks.reset()
        return super().connect(callback)

    def tuned(self) -> None:
        self.framer = PublishFramer(self.frame_max)
        # frame_max counts the 7 header octets and the end octet.
        self.reader.frame_limit = (self.frame_max or 2**32) - 8

    # -- flow control -------------------------------------------------------------

    def _check_inbound(self) -> None:
        """Handle whatever frames the broker has sent, without waiting."""
        self._since_check = 0
        if not self._read_lock.acquire(blocking=False):
            # Another thread is reading (in drain_events): the socket and
            # the read buffer are its; it handles what the broker sends.
            return
        try:
            if self.reader.readable():
                with contextlib.suppress(TimeoutError):
                    while True:
                        self.drain_events(timeout=0)
        finally:
            self._read_lock.release()

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
        held_acks = self.held_acks
        with self.write_lock:
            if held_acks.pending and (
                not held_acks.dispatching or held_acks.dispatch_thread == get_ident()
            ):
                # (Held-back acks belong to the dispatching thread; another
                # thread's publish leaves them to it.)
                self._flush_locked()
            self.transport.write(data)
        self.bytes_sent += 1

    # -- acks ---------------------------------------------------------------------

    def flush_acks(self) -> None:
        """Write every held-back ack now."""
        if self.held_acks.pending:
            with self.write_lock:
                self._flush_locked()

    def _flush_locked(self) -> None:
        # Called with write_lock held.
        if self.held_acks.pending:
            data = self.held_acks.take_frames()
            if data:
                self.transport.write(data)
                self.bytes_sent += 1

    def _before_wait(self) -> None:
        # About to wait on the socket: held-back acks must be out first.
        if self.held_acks.pending:
            self.flush_acks()

    def _before_close(self, deadline: float) -> None:
        # The held-back acks go out before connection.close, within the
        # close's time limit (a write to a silent peer may block).
        if self.held_acks.pending and self.connected:
            with contextlib.suppress(OSError):
                if not self.write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    return
                try:
                    with seam.having_timeout(
                        self.transport, max(0.001, deadline - time.monotonic())
                    ):
                        self._flush_locked()
                finally:
                    self.write_lock.release()

    # -- reading ------------------------------------------------------------------

    def blocking_read(self, timeout: float | None = None) -> Any:
        """Read and handle one frame; true once a method was dispatched."""
        return self.reader.next_frame(timeout)

    def drain_events(self, allowed_methods: Any = None, timeout: float | None = None) -> None:
        """Wait for one method (or delivery) on any channel and dispatch it.

        :keyword allowed_methods: accepted for compatibility and ignored:
            py-amqp must dispatch every frame in the order it arrives.
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
        next_frame = self.reader.next_frame
        held_acks = self.held_acks
        if not held_acks.dispatching:
            held_acks.dispatch_thread = get_ident()
        held_acks.dispatching += 1
        try:
            while not next_frame(timeout):
                pass
        except BaseException as exc:
            held_acks.dispatching -= 1
            if held_acks.pending and self.connected:
                # A callback raised (or the read failed): the application may
                # not come back, so the acks made so far go out now.
                with contextlib.suppress(OSError):
                    self.flush_acks()
            if isinstance(exc, FrameError):
                # The stream can no longer be cut into frames: the connection
                # is done (the broker requeues what was unacknowledged).
                self.reader.reset()
                self._partial.clear()
                self.collect()
            lost = self._lost(exc)
            if lost is not None:
                raise lost from exc
            raise
        held_acks.dispatching -= 1
        self._dispatched += 1
        if held_acks.pending and not self._event_buffered():
            # What was read holds no further whole event (the next one needs
            # another read, which may be long in coming: the application may
            # not even wait again): send the acks the handled ones produced.
            self.flush_acks()

    def _event_buffered(self) -> bool:
        """Whether the read buffer holds a whole method (and its content) not handled yet."""
        # Hot path (per delivery while acks are held).
        content: dict[int, int | None] = {
            ch: None if partial.properties is None else partial.body_size - partial.received
            for ch, partial in self._partial.items()
        }
        reader = self.reader
        return whole_event_buffered(reader.buf, reader.start, reader.end, content)

    def _on_frame(
        self, ftype: int, channel_id: int, buf: bytearray, offset: int, size: int
    ) -> bool:
        # Hot path: once per frame.
        partial = self._partial.get(channel_id)
        if partial is not None:
            return self._on_content(partial, ftype, channel_id, buf, offset, size)
        if ftype == 1 and size >= 4:
            sig = buf[offset : offset + 4]
            if sig == DELIVER_SIG:
                channel = self.channels.get(channel_id)
                if (
                    channel is not None
                    and channel.__class__ is Channel
                    and not channel.is_closing
                    and _DELIVER not in channel.awaited_replies
                ):
                    return self._on_deliver(channel, channel_id, buf, offset, size)
            elif sig in (CONFIRM_ACK_SIG, CONFIRM_NACK_SIG) and size >= 13:
                # Publisher confirms, parsed in place for the channel's window
                # (py-amqp would build a method and call its event handlers).
                channel = self.channels.get(channel_id)
                window = getattr(channel, "confirm_window", None)
                if window is not None and not channel.is_closing:
                    (tag,) = LONGLONG.unpack_from(buf, offset + 4)
                    multiple = bool(buf[offset + 12] & 1)
                    self.bytes_recv += 1
                    if sig == CONFIRM_ACK_SIG:
                        window.acked(tag, multiple)
                    else:
                        window.nacked(tag, multiple)
                    return True
            elif sig == BLOCKED_SIG and not channel_id:
                # py-amqp drops connection.blocked's reason argument: keep it.
                self._wire_blocked_reason = parse_blocked_reason(buf[offset : offset + size])
        elif ftype == 2 and size >= 12:
            # Content py-amqp assembles (basic.get-ok, basic.return): the same limit.
            (body_size,) = LONGLONG.unpack_from(buf, offset + 4)
            if body_size > self.max_body_size:
                raise self._body_too_large(channel_id, body_size)
        # Everything else is py-amqp's (no-any-return: py-amqp is untyped).
        return self.on_inbound_frame(  # type: ignore[no-any-return]
            (ftype, channel_id, self.reader.payload(offset, size))
        )

    def _on_deliver(
        self, channel: _Channel, channel_id: int, buf: bytearray, offset: int, size: int
    ) -> bool:
        """A ``basic.deliver``: dispatch it with its content, or wait for the content."""
        # Hot path: once per delivery. The header and body frames usually
        # arrived with it: take them from the buffer at once.
        info = parse_deliver(buf, offset + 4, offset + size)
        content = self.reader.take_content(channel_id)
        if content is None:
            self.bytes_recv += 1
            self._partial[channel_id] = PartialDelivery(channel, info)
            return False
        offset, size, body_size, body_offset, body_frame = content
        if body_size > self.max_body_size:
            raise self._body_too_large(channel_id, body_size)
        view = self.reader.view
        body: bytes | str
        raw = bytes(view[offset + 12 : offset + size])
        cached = self._properties.get(raw)
        props = self._properties.decode(raw) if cached is None else dict(cached)
        if body_size:
            self.bytes_recv += 3
            body = bytes(view[body_offset : body_offset + body_frame])
        else:
            self.bytes_recv += 2
            body = ""  # as py-amqp: a message without a body has body ""
        self._deliver(channel, info, props, body)
        if self.delivery_observer is not None:
            self.delivery_observer(channel_id)
        return True

    def _header(self, buf: bytearray, offset: int, size: int) -> tuple[dict[str, Any], int]:
        """The properties and body size of a content header frame."""
        # Hot path: once per delivery.
        if size < 14 or buf[offset : offset + 2] != b"\x00\x3c":
            # Not class, weight, body size and property flags of basic (60).
            raise UnexpectedFrame(f"Received a malformed content header of {size} bytes")
        (body_size,) = LONGLONG.unpack_from(buf, offset + 4)
        if body_size > self.max_body_size:
            raise self._body_too_large(None, body_size)
        raw = bytes(self.reader.view[offset + 12 : offset + size])
        cached = self._properties.get(raw)
        props = self._properties.decode(raw) if cached is None else dict(cached)
        return props, body_size

    def _body_too_large(self, channel_id: int | None, body_size: int) -> FrameError:
        where = "" if channel_id is None else f" on channel {channel_id}"
        return frame_error(
            f"Received a content header{where} announcing a body of {body_size} bytes, "
            f"over max_body_size ({self.max_body_size})"
        )

    def _on_content(
        self,
        partial: PartialDelivery,
        ftype: int,
        channel_id: int,
        buf: bytearray,
        offset: int,
        size: int,
    ) -> bool:
        # The header and body frames of a delivery that came in pieces.
        body: bytes | str
        self.bytes_recv += 1
        if ftype == 2:
            if partial.properties is not None:
                raise UnexpectedFrame("Received a second content header while expecting a body")
            partial.properties, partial.body_size = self._header(buf, offset, size)
            if partial.body_size:
                return False
            body = ""  # as py-amqp: a message without a body has body ""
        elif ftype == 3:
            if partial.properties is None:
                raise UnexpectedFrame("Received a content body while expecting a header")
            chunk = bytes(self.reader.view[offset : offset + size])
            received = partial.received + size
            chunks = partial.chunks
            if received < partial.body_size:
                if chunks is None:
                    partial.chunks = [chunk]
                else:
                    chunks.append(chunk)
                partial.received = received
                return False
            body = b"".join((*chunks, chunk)) if chunks else chunk
        elif ftype == 8:
            return False
        else:
            raise UnexpectedFrame(f"Received frame {ftype} while expecting content")
        del self._partial[channel_id]
        self._deliver(partial.channel, partial.delivery_info, partial.properties, body)
        if self.delivery_observer is not None:
            self.delivery_observer(channel_id)
        return True

    def _deliver(self, channel: _Channel, info: dict[str, Any], props: Any, body: Any) -> None:
        # Hot path: hands one assembled delivery to its consumer's callback.
        size = len(body)
        if channel.auto_decode and body and "content_encoding" in props:
            try:  # noqa: SIM105 -- hot path: try/except costs less than suppress()
                body = body.decode(props["content_encoding"])
            except Exception:
                pass
        consumer_tag = info["consumer_tag"]
        callback = channel.callbacks.get(consumer_tag)
        if callback is None:
            # py-amqp logs and requeues deliveries for unknown consumers.
            channel.deliver_unclaimed(info, _delivered_message(body, size, props, None, None))
            return
        if consumer_tag not in channel.no_ack_consumers:
            acks = channel.acks
            tag = info["delivery_tag"]
            acks.live.add(tag)
            acks.order.append(tag)
        callback(_delivered_message(body, size, props, channel, info))
