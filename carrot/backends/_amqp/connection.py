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
  assembled in place (:mod:`.inbound`). Every other frame (heartbeats, ``channel.close``,
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

from amqp.exceptions import FrameError

from carrot.backends._amqp import seam
from carrot.backends._amqp.acks import HeldAcks
from carrot.backends._amqp.channel import Channel
from carrot.backends._amqp.framing import PartialDelivery, PropertiesCache, PublishFramer
from carrot.backends._amqp.inbound import InboundFrames
from carrot.backends._amqp.plain import PlainConnection
from carrot.backends._amqp.reader import FrameReader

__all__ = ["CHECK_EVERY", "Connection"]

#: Publishes between two looks at the socket for frames the broker sent
#: (``connection.blocked``, ``channel.close``, ``basic.return``).
CHECK_EVERY = 64


class Connection(InboundFrames, seam.SeamConnection, PlainConnection):
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
