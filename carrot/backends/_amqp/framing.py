"""AMQP 0-9-1 frames as bytes: building publishes and acks, parsing deliveries.

Pure functions and small caches: no sockets, no locks, no py-amqp objects
beyond its public serialization helpers. Every frame built here is byte for
byte what py-amqp's own ``frame_writer`` writes (the unit tests compare).

A frame is ``type (octet) | channel (short) | size (long) | payload | 0xCE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct
from struct import error as struct_error
from typing import Any

from amqp.exceptions import FrameError as AMQPFrameError
from amqp.serialization import decode_properties_basic, dumps

from carrot.backends._amqp.seam import serialize_properties

__all__ = [
    "CONFIRM_ACK_SIG",
    "CONFIRM_NACK_SIG",
    "FRAME_HEADER",
    "LONGLONG",
    "PROPERTY_CACHE_SIZE",
    "PartialDelivery",
    "PropertiesCache",
    "PublishFramer",
    "ack_frames",
    "bounded_set",
    "frame_error",
    "parse_blocked_reason",
    "parse_deliver",
    "whole_event_buffered",
]

#: Distinct property headers remembered, per connection (publish and deliver).
PROPERTY_CACHE_SIZE = 256

#: type, channel, payload size.
FRAME_HEADER = Struct(">BHI")
#: A header frame's start: type, channel, size, class id, weight.
_HEADER_START = Struct(">BHIHH")
#: A body frame's start: type, channel (the size follows).
_BODY_START = Struct(">BH")
#: An unsigned 64-bit integer: a header frame's body size.
LONGLONG = Struct(">Q")
#: An unsigned 32-bit integer: a frame size.
_LONG = Struct(">I")
#: A complete basic.ack frame.
_ACK = Struct(">BHIHHQBB")
#: basic.deliver's delivery tag and redelivered flag.
_TAG_FLAG = Struct(">QB")
FRAME_END = b"\xce"
#: Method payloads start with class id and method id.
DELIVER_SIG = b"\x00\x3c\x00\x3c"  # basic.deliver
BLOCKED_SIG = b"\x00\x0a\x00\x3c"  # connection.blocked (RabbitMQ)
CONFIRM_ACK_SIG = b"\x00\x3c\x00\x50"  # basic.ack from the broker: a publisher confirm
CONFIRM_NACK_SIG = b"\x00\x3c\x00\x78"  # basic.nack from the broker
#: Methods followed by content frames: basic.deliver, basic.get-ok, basic.return.
CONTENT_SIGS = (DELIVER_SIG, b"\x00\x3c\x00\x47", b"\x00\x3c\x00\x32")


def frame_error(text: str) -> AMQPFrameError:
    """An :exc:`amqp.exceptions.FrameError` (AMQP error 501): the stream is unusable."""
    return AMQPFrameError(text, reply_code=501)


def bounded_set(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """``cache[key] = value``, emptying ``cache`` first when it is full."""
    if len(cache) >= PROPERTY_CACHE_SIZE:
        cache.clear()
    cache[key] = value


# -- publishing ---------------------------------------------------------------------


class PublishFramer:
    """Builds the frames of ``basic.publish`` byte for byte as py-amqp does.

    :param frame_max: the connection's negotiated maximum frame size.
    """

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        # (channel_id, exchange, routing_key, mandatory, immediate) -> method frame.
        self._methods: dict[tuple[Any, ...], bytes] = {}
        # tuple(properties.items()) -> serialized property flags and list.
        self._properties: dict[tuple[Any, ...], bytes] = {}
        # (channel, exchange, routing key, flags, *properties) ->
        # (method frame + header frame start, properties, properties + body frame start).
        self._heads: dict[tuple[Any, ...], tuple[bytes, bytes, bytes]] = {}

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
            frame = FRAME_HEADER.pack(1, channel_id, len(payload)) + payload + FRAME_END
            bounded_set(self._methods, key, frame)
        return frame

    def properties(self, message: Any) -> bytes:
        """The serialized properties of ``message``, cached per distinct set of values."""
        props = message.properties
        try:
            key = tuple(props.items())
            encoded = self._properties.get(key)
        except TypeError:  # an unhashable value, such as a headers table
            return serialize_properties(message)
        if encoded is None:
            encoded = serialize_properties(message)
            bounded_set(self._properties, key, encoded)
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
        key: tuple[Any, ...] | None  # None: a property value is unhashable
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
                props + FRAME_END + _BODY_START.pack(3, channel_id),
            )
            if key is not None:
                bounded_set(self._heads, key, cached)
        head, props, middle = cached
        size = len(body)
        chunk = self.frame_max - 8
        if 0 < size <= chunk:
            # The common case: method, header and body frame in one piece.
            return b"".join((head, LONGLONG.pack(size), middle, _LONG.pack(size), body, FRAME_END))
        parts: list[bytes | memoryview] = [head, LONGLONG.pack(size), props, FRAME_END]
        view = memoryview(body)
        for offset in range(0, size, chunk):
            piece = view[offset : offset + chunk]
            parts += (FRAME_HEADER.pack(3, channel_id, len(piece)), piece, FRAME_END)
        return b"".join(parts)


def ack_frames(channel_id: int, singles: list[int], multiple: int) -> bytes:
    """The ``basic.ack`` frames for held-back acks, singles first."""
    frames = [_ACK.pack(1, channel_id, 13, 60, 80, tag, 0, 0xCE) for tag in singles]
    if multiple:
        frames.append(_ACK.pack(1, channel_id, 13, 60, 80, multiple, 1, 0xCE))
    return b"".join(frames)


# -- receiving --------------------------------------------------------------------


@dataclass(slots=True)
class PartialDelivery:
    """A ``basic.deliver`` whose header and body frames are still arriving."""

    #: The channel object the delivery is for.
    channel: Any
    #: consumer_tag, delivery_tag, redelivered, exchange, routing_key (py-amqp's
    #: ``Message.delivery_info``).
    delivery_info: dict[str, Any]
    #: Decoded from the header frame (``None`` until it arrives).
    properties: dict[str, Any] | None = None
    #: The body size the header frame announced.
    body_size: int = 0
    #: Body frames received so far, when the body spans several.
    chunks: list[bytes] | None = None
    #: Body bytes received so far.
    received: int = 0


def parse_deliver(buf: bytearray, offset: int, end: int) -> dict[str, Any]:
    """``basic.deliver``'s arguments (``buf[offset:end]``) as py-amqp's ``delivery_info``.

    :raises amqp.exceptions.FrameError: the arguments do not fit in the frame.
    """
    # Hot path: once per delivery. Short strings decode as py-amqp decodes
    # them ("surrogatepass": what a py-amqp publisher can send).
    # Where each field lies first (a field past the frame is an error, not
    # bytes of the next frame); then the strings, as py-amqp decodes them.
    try:
        tag = offset + 1
        offset = tag + buf[offset]
        delivery_tag, redelivered = _TAG_FLAG.unpack_from(buf, offset)
        exchange = offset + 10
        offset = exchange + buf[offset + 9]
        routing_key = offset + 1
        offset = routing_key + buf[offset]
    except (IndexError, struct_error) as exc:
        raise frame_error("basic.deliver's arguments run past the end of its frame") from exc
    if offset > end:
        raise frame_error("basic.deliver's arguments run past the end of its frame")
    try:
        return {
            "consumer_tag": buf[tag : exchange - 10].decode("utf-8", "surrogatepass"),
            "delivery_tag": delivery_tag,
            "redelivered": bool(redelivered & 1),
            "exchange": buf[exchange : routing_key - 1].decode("utf-8", "surrogatepass"),
            "routing_key": buf[routing_key:offset].decode("utf-8", "surrogatepass"),
        }
    except UnicodeDecodeError as exc:
        # (py-amqp raises it only once the content arrived; the stream is
        # broken either way.)
        raise frame_error(f"basic.deliver's arguments are not UTF-8: {exc}") from exc


class PropertiesCache(dict[bytes, dict[str, Any]]):
    """Decoded content-header properties by their raw bytes (flags and list).

    The hot path looks up ``raw`` itself and copies a hit; :meth:`decode`
    handles a miss.
    """

    __slots__ = ()

    def decode(self, raw: bytes) -> dict[str, Any]:
        """A new dict of the properties encoded in ``raw``, remembered for next time."""
        props: dict[str, Any]  # py-amqp is untyped
        props, _ = decode_properties_basic(raw, 0)
        if "application_headers" in props:
            return props  # a table of any size: not worth keeping
        bounded_set(self, raw, props)
        return dict(props)


def parse_blocked_reason(payload: bytes | bytearray) -> str | None:
    """The reason in a ``connection.blocked`` method payload (``None`` if absent)."""
    if len(payload) < 5:
        return None
    n = payload[4]
    return bytes(payload[5 : 5 + n]).decode("utf-8", "surrogatepass")


def whole_event_buffered(
    buf: bytearray, pos: int, end: int, content: dict[int, int | None]
) -> bool:
    """Whether ``buf[pos:end]`` holds a whole method (and its content) to dispatch.

    :param content: channel -> body bytes still expected for a delivery in
        progress (``None``: its header has not arrived); updated in place.

    Only ``True`` when the next read surely dispatches without waiting for
    the socket.
    """
    # Hot path (per delivery while acks are held): usually three frames.
    while end - pos >= 8:
        ftype, channel_id, size = FRAME_HEADER.unpack_from(buf, pos)
        if pos + 8 + size > end:
            return False
        if ftype == 1:
            if buf[pos + 7 : pos + 11] not in CONTENT_SIGS:
                return True
            content[channel_id] = None
        elif ftype == 2:
            (body_size,) = LONGLONG.unpack_from(buf, pos + 11)
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
