"""Fakes shared by the fast-path unit tests: a socket, a transport, a wired connection."""

from __future__ import annotations

import contextlib
import random
from typing import Any

from amqp.method_framing import frame_handler, frame_writer

from carrot.backends._amqp.channel import Channel as FastChannel
from carrot.backends._amqp.connection import Connection as FastConnection
from carrot.backends._amqp.framing import PublishFramer


class FakeSocket:
    """Hands out queued chunks of a byte stream to ``recv_into``; times out when empty."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def feed(self, data: bytes, cuts: Any = None) -> None:
        """Queue ``data``, cut at the offsets ``cuts``, or at random ones for a ``Random``."""
        if not data:
            return
        if isinstance(cuts, random.Random):
            rng = cuts
            cuts = (
                rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 6)))
                if len(data) > 1
                else []
            )
        if not cuts:
            self.chunks.append(data)
            return
        last = 0
        for cut in [*sorted(cuts), len(data)]:
            if cut > last:
                self.chunks.append(data[last:cut])
                last = cut

    def recv_into(self, view: memoryview) -> int:
        if not self.chunks:
            raise TimeoutError("timed out")
        chunk = self.chunks.pop(0)
        if len(chunk) > len(view):
            self.chunks.insert(0, chunk[len(view) :])
            chunk = chunk[: len(view)]
        view[: len(chunk)] = chunk
        return len(chunk)


class FakeTransport:
    """Records writes; reads come from a :class:`FakeSocket`."""

    connected = True

    def __init__(self) -> None:
        self.sock = FakeSocket()
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.connected = False

    @contextlib.contextmanager
    def having_timeout(self, timeout: float | None) -> Any:
        yield self.sock

    def take(self) -> bytes:
        data, self.written = b"".join(self.written), []
        return data


class FakeWriterConnection:
    """What py-amqp's frame_writer needs of a connection."""

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self.bytes_sent = 0


def amqp_bytes(frame_max: int, *frames: tuple) -> bytes:
    """The bytes py-amqp's own frame_writer writes for ``frames``."""
    transport = FakeTransport()
    write = frame_writer(FakeWriterConnection(frame_max), transport)
    for frame in frames:
        write(*frame)
    return transport.take()


def make_connection(frame_max: int = 131072) -> tuple[FastConnection, FakeTransport]:
    """A FastConnection wired to a fake transport, handshake skipped."""
    conn = FastConnection(host="fake:5672", frame_max=frame_max)
    transport = FakeTransport()
    conn._transport = transport
    conn.on_inbound_frame = frame_handler(conn, conn.on_inbound_method)
    conn.frame_writer = conn._guarded_frame_writer(conn, transport)
    conn.framer = PublishFramer(frame_max)
    return conn, transport


def open_channel(conn: FastConnection, channel_id: int = 1) -> FastChannel:
    """An open FastChannel on ``conn``, without the channel.open round trip."""
    channel = FastChannel(conn, channel_id)
    channel.is_open = True
    return channel
