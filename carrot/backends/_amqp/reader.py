"""The read side of a connection: one reusable buffer, large reads, frames cut in place.

py-amqp reads each frame with two or three small ``recv`` calls and copies
every part; :class:`FrameReader` asks the socket for up to
:data:`READ_SIZE` bytes at a time (``recv_into`` a reusable buffer) and
hands each whole frame to a callback as a position in that buffer.

Errors are those of py-amqp's ``transport.read_frame``, case by case:

* a read that times out raises :exc:`socket.timeout` and keeps what was
  read (TLS's "timed out" :exc:`ssl.SSLError` too, as py-amqp maps it);
* ``EAGAIN``/``EINTR`` (and ``ENOENT`` on TLS) from the socket, as
  ``SO_RCVTIMEO`` (the ``read_timeout`` setting) produces, raise
  :exc:`socket.timeout` while no byte of the next frame has arrived, and
  are retried in the middle of a frame;
* any other socket error marks the transport disconnected; so does the
  peer closing the socket (``OSError("Server unexpectedly closed
  connection")``);
* a frame whose end octet is not ``0xCE`` raises :exc:`UnexpectedFrame`.

Beyond py-amqp: a frame header announcing a payload larger than
:attr:`FrameReader.frame_limit` (the negotiated ``frame_max`` less the 8
octets of header and end) raises :exc:`amqp.exceptions.FrameError` (AMQP
error 501) as soon as its 7 header octets are read: the buffer never grows
for data that has not arrived, nor beyond one frame_max.
"""

from __future__ import annotations

import errno
import select
import ssl
from collections.abc import Callable
from typing import Any

from amqp.exceptions import UnexpectedFrame

from carrot.backends._amqp import seam
from carrot.backends._amqp.framing import FRAME_HEADER, LONGLONG, frame_error

__all__ = ["READ_SIZE", "FrameReader"]

#: Bytes asked for per ``recv_into`` (the buffer grows when a frame is larger).
READ_SIZE = 256 * 1024
#: Errors that do not mean the connection is gone (py-amqp's ``_UNAVAIL``).
_UNAVAILABLE = frozenset({errno.EAGAIN, errno.EINTR, errno.ENOENT, errno.EWOULDBLOCK})
#: Errors a read retries (py-amqp's transports' ``_read``); TLS adds ENOENT.
_RETRY = frozenset({errno.EAGAIN, errno.EINTR})
_RETRY_TLS = frozenset({errno.EAGAIN, errno.EINTR, errno.ENOENT})


class FrameReader:
    """Bytes read from one socket, cut into frames.

    :param on_frame: called as ``on_frame(type, channel, buffer, offset,
        size)`` for each whole frame (the payload is ``buffer[offset:offset +
        size]``, valid until the next read); :meth:`next_frame` returns what
        it returns.
    :param before_wait: called before each read from the socket.
    :param get_transport: returns the py-amqp transport to read from.

    Not thread-safe: the connection lets one thread read at a time.
    """

    __slots__ = (
        "before_wait",
        "buf",
        "end",
        "frame_limit",
        "get_transport",
        "on_frame",
        "poller",
        "start",
        "view",
    )

    def __init__(
        self,
        on_frame: Callable[..., Any],
        before_wait: Callable[[], None],
        get_transport: Callable[[], Any],
    ) -> None:
        self.on_frame = on_frame
        self.before_wait = before_wait
        self.get_transport = get_transport
        self.buf = bytearray(READ_SIZE)
        self.view = memoryview(self.buf)
        #: Where the next frame starts, and where the bytes read end.
        self.start = 0
        self.end = 0
        self.poller: Any = None
        #: The largest frame payload accepted (``frame_max - 8``).
        self.frame_limit = 131072 - 8

    def reset(self) -> None:
        """Forget what was read (a new socket: a frame cut off on the old one is lost)."""
        self.start = self.end = 0
        self.poller = None

    def next_frame(self, timeout: float | None) -> Any:
        """Hand the next frame to ``on_frame``, reading when the buffer holds none."""
        # Hot path: parses one frame from the buffer (reading when it has none).
        while True:
            start = self.start
            if self.end - start >= 7:
                buf = self.buf
                ftype, channel_id, size = FRAME_HEADER.unpack_from(buf, start)
                if size > self.frame_limit:
                    raise frame_error(
                        f"Received a frame of {size} bytes on channel {channel_id}, "
                        f"over the {self.frame_limit + 8} bytes of frame_max"
                    )
                end = start + 7 + size
                if end < self.end:
                    if buf[end] != 0xCE:
                        raise UnexpectedFrame(
                            f"Received frame_end {buf[end]:#04x} while expecting 0xce"
                        )
                    self.start = end + 1
                    return self.on_frame(ftype, channel_id, buf, start + 7, size)
            self.fill(timeout)

    def take_content(self, channel_id: int) -> tuple[int, int, int, int, int] | None:
        """Consume a content header frame and its body frame, if both are whole here.

        Returns ``(header offset, header size, body size, body offset, body
        frame size)`` (the body ones 0 when the header announces no body) for
        a well-formed header on ``channel_id`` followed by one body frame that
        holds the whole body; ``None`` leaves the buffer as it was
        (:meth:`next_frame` then handles, or rejects, those frames).
        """
        # Hot path: the content of a delivery, usually read with it.
        start, end = self.start, self.end
        if end - start < 20:
            return None
        buf = self.buf
        ftype, channel, size = FRAME_HEADER.unpack_from(buf, start)
        stop = start + 7 + size
        if (
            ftype != 2
            or channel != channel_id
            or size < 14
            or stop >= end
            or buf[stop] != 0xCE
            or buf[start + 7 : start + 9] != b"\x00\x3c"  # class basic
        ):
            return None
        (body_size,) = LONGLONG.unpack_from(buf, start + 11)
        if not body_size:
            self.start = stop + 1
            return start + 7, size, 0, 0, 0
        body = stop + 1
        if end - body < 8:
            return None
        ftype, channel, body_frame = FRAME_HEADER.unpack_from(buf, body)
        stop = body + 7 + body_frame
        if (
            ftype != 3
            or channel != channel_id
            or body_frame < body_size
            or stop >= end
            or buf[stop] != 0xCE
        ):
            return None
        self.start = stop + 1
        return start + 7, size, body_size, body + 7, body_frame

    def payload(self, offset: int, size: int) -> bytes:
        """A copy of ``size`` bytes of the buffer at ``offset``."""
        return bytes(self.view[offset : offset + size])

    def fill(self, timeout: float | None) -> None:
        """Read more bytes into the buffer, waiting up to ``timeout`` seconds."""
        self.before_wait()
        start, end = self.start, self.end
        buf = self.buf
        if start:
            # Move the partial frame to the front.
            buf[: end - start] = buf[start:end]
            end -= start
            self.start = 0
            self.end = end
        if end >= len(buf) - 64:
            # A frame larger than the buffer: grow it (a bytearray cannot be
            # resized while a memoryview of it exists).
            self.view.release()
            buf.extend(bytes(len(buf)))
            self.view = memoryview(buf)
        self.end = end + self._recv_into(self.view[end:], initial=not end, timeout=timeout)

    def _recv_into(self, view: memoryview, initial: bool, timeout: float | None) -> int:
        transport = self.get_transport()
        sock = seam.transport_socket(transport)
        retry = _RETRY_TLS if isinstance(sock, ssl.SSLSocket) else _RETRY
        while True:
            try:
                with seam.having_timeout(transport, timeout):
                    n: int = sock.recv_into(view)  # the socket is Any: py-amqp is untyped
            except TimeoutError:
                raise
            except ssl.SSLError as exc:
                if "timed out" in str(exc):
                    raise TimeoutError("timed out") from exc  # socket.timeout
                transport.connected = False
                raise
            except OSError as exc:
                if exc.errno in retry:
                    if initial and getattr(transport, "raise_on_initial_eintr", True):
                        raise TimeoutError("timed out") from exc
                    continue
                if exc.errno not in _UNAVAILABLE:
                    transport.connected = False
                raise
            if not n:
                transport.connected = False
                raise OSError("Server unexpectedly closed connection")
            return n

    def readable(self) -> bool:
        """Whether a read would find bytes now (buffered, decrypted or on the socket)."""
        if self.end - self.start >= 8:
            return True
        sock = seam.transport_socket(self.get_transport())
        pending = getattr(sock, "pending", None)  # TLS: decrypted bytes
        if pending is not None and pending():
            return True
        poller = self.poller
        if poller is None:
            poller = self.poller = select.poll()
            poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
