"""Deliveries and confirms assembled in place from the frames in the read buffer.

:class:`InboundFrames` is the read side of
:class:`~carrot.backends._amqp.connection.Connection`: the
:class:`~.reader.FrameReader` hands it each frame as a slice of its buffer
(``_on_frame``), and it

* assembles ``basic.deliver`` with its header and body frames, usually from
  one read (the content arrived with the method), otherwise across reads
  in a :class:`~.framing.PartialDelivery` per channel;
* decodes each distinct properties table once (:class:`~.framing.PropertiesCache`);
* parses publisher confirms (``basic.ack``/``basic.nack``) for the
  channel's :class:`~carrot.confirms.ConfirmWindow`;
* keeps the reason of ``connection.blocked`` (py-amqp drops it);
* refuses a content header announcing a body over ``max_body_size``;

and hands every other frame to py-amqp's own handler. Its fields are
guarded as the connection's docstring says (``_read_lock``): it runs only
in the thread holding it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amqp import spec
from amqp.exceptions import FrameError, UnexpectedFrame

from carrot.backends._amqp import seam
from carrot.backends._amqp.channel import Channel
from carrot.backends._amqp.framing import (
    BLOCKED_SIG,
    CONFIRM_ACK_SIG,
    CONFIRM_NACK_SIG,
    DELIVER_SIG,
    LONGLONG,
    PartialDelivery,
    PropertiesCache,
    frame_error,
    parse_blocked_reason,
    parse_deliver,
    whole_event_buffered,
)
from carrot.backends._amqp.reader import FrameReader

__all__ = ["InboundFrames"]

_DELIVER = spec.Basic.Deliver
_delivered_message = seam.delivered_message


class InboundFrames:
    """The frame handler of the fast connection (a mixin of its class).

    Expects of the class it is mixed into: py-amqp's ``channels``,
    ``bytes_recv``, ``max_body_size`` and ``on_inbound_frame``, and the
    fields below, set in its ``__init__``.
    """

    #: The socket's read buffer and frame loop (it calls :meth:`_on_frame`).
    reader: FrameReader
    #: Channel id -> the delivery whose content is still coming.
    _partial: dict[int, PartialDelivery]
    #: Properties tables decoded so far, by their bytes.
    _properties: PropertiesCache
    #: Called with the channel id of each delivery dispatched here.
    delivery_observer: Callable[[int], None] | None
    # py-amqp's (untyped) connection attributes; channels maps id -> channel.
    channels: Any
    bytes_recv: int
    max_body_size: int
    on_inbound_frame: Callable[[Any], Any]
    _wire_blocked_reason: str | None

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
        self, channel: Channel, channel_id: int, buf: bytearray, offset: int, size: int
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

    def _deliver(self, channel: Channel, info: dict[str, Any], props: Any, body: Any) -> None:
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
