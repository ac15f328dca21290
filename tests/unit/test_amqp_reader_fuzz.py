"""The fast-path reader under fuzzing: random and mutated frame streams.

For each stream, py-amqp's own reader (its transport's ``read_frame`` and
``frame_handler``, on a plain :class:`amqp.Connection`) is the oracle. The
fast path must deliver exactly what py-amqp delivers, or stop earlier with a
connection error (an :class:`amqp.exceptions.AMQPError`); it never delivers
something py-amqp would not, never waits for data that is not coming (the
fake socket times out when empty: a hang is a test failure, not a stall),
never loops (a bounded number of calls), and never grows its buffer.
"""

from __future__ import annotations

from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_handler, frame_writer
from amqp.serialization import dumps
from amqp.transport import TCPTransport
from fastpath_fakes import amqp_bytes, make_connection, open_channel

from carrot.backends._amqp import reader

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 -- after the skip check
from hypothesis import strategies as st  # noqa: E402

FRAME_MAX = 4096
CHANNELS = (1, 2)
TAGS = ("c1", "c2")
#: Enough calls for any stream drawn here; more means a loop.
MAX_CALLS = 2000

# -- streams --------------------------------------------------------------------

_props = st.fixed_dictionaries(
    {},
    optional={
        "content_type": st.sampled_from(["application/json", "text/plain", "x/é"]),
        "content_encoding": st.sampled_from(["utf-8", "binary"]),
        "delivery_mode": st.sampled_from([1, 2]),
        "priority": st.integers(0, 9),
        "application_headers": st.dictionaries(st.text(max_size=5), st.integers(-5, 5), max_size=2),
    },
)
_delivery = st.tuples(
    st.sampled_from(CHANNELS),
    st.sampled_from(TAGS),
    st.integers(1, 2**64 - 1),
    st.booleans(),
    st.binary(max_size=3 * FRAME_MAX),
    _props,
)
_event = st.one_of(_delivery, st.just("heartbeat"))


def stream(events: list[Any]) -> bytes:
    """The bytes py-amqp's frame writer makes for ``events``."""
    frames = []
    for event in events:
        if event == "heartbeat":
            frames.append((8, 0, None, None, None))
            continue
        channel, tag, dtag, redelivered, body, props = event
        args = dumps("sLbss", (tag, dtag, redelivered, "ex", "rk"))
        frames.append((1, channel, spec.Basic.Deliver, args, amqp.Message(body, **props)))
    return amqp_bytes(FRAME_MAX, *frames)


_mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 12)),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    for mutation in mutations:
        at = int(mutation[1] * len(data))
        if mutation[0] == "truncate":
            data = data[:at]
        elif mutation[0] == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ mutation[2]]) + data[at + 1 :]
        elif mutation[0] == "insert":
            data = data[:at] + mutation[2] + data[at:]
        elif mutation[0] == "delete":
            data = data[:at] + data[at + mutation[2] :]
    return data


# -- the two readers -------------------------------------------------------------


def record(channel_id: int, seen: list) -> Any:
    def on_message(message: Any) -> None:
        info = message.delivery_info
        seen.append(
            (
                channel_id,
                info["consumer_tag"],
                info["delivery_tag"],
                info["redelivered"],
                info["exchange"],
                info["routing_key"],
                message.body,
                message.properties,
            )
        )

    return on_message


def run(drain: Any) -> BaseException | None:
    """Call ``drain`` until the stream runs dry (timeout) or fails; the failure."""
    for _ in range(MAX_CALLS):
        try:
            drain()
        except TimeoutError:
            return None
        except Exception as exc:
            return exc
    raise AssertionError(f"still dispatching after {MAX_CALLS} calls: a loop")


class ChunkSocket:
    """A socket handing out ``data`` in chunks, timing out when empty."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk = data, chunk

    def _take(self, n: int) -> bytes:
        if not self.data:
            raise TimeoutError("timed out")
        piece, self.data = self.data[: min(n, self.chunk)], self.data[min(n, self.chunk) :]
        return piece

    def recv(self, n: int) -> bytes:
        return self._take(n)

    def recv_into(self, view: memoryview) -> int:
        piece = self._take(len(view))
        view[: len(piece)] = piece
        return len(piece)

    def gettimeout(self) -> float | None:
        return None

    def settimeout(self, timeout: float | None) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        pass


def py_amqp_reads(data: bytes, chunk: int) -> tuple[list, BaseException | None]:
    """What a plain py-amqp connection delivers from ``data``, and how it stops."""
    conn = amqp.Connection(host="fake:5672", frame_max=FRAME_MAX)
    transport = object.__new__(TCPTransport)
    transport.sock = ChunkSocket(data, chunk)
    transport._quick_recv = transport.sock.recv
    transport._write = transport.sock.sendall
    transport._read_buffer = b""
    transport.raise_on_initial_eintr = True
    transport.connected = True
    conn._transport = transport
    conn.on_inbound_frame = frame_handler(conn, conn.on_inbound_method)
    conn.frame_writer = frame_writer(conn, transport)  # py-amqp rejects unknown consumers'
    seen: list = []
    for channel_id in CHANNELS:
        channel = amqp.Channel(conn, channel_id)
        channel.is_open = True
        for tag in TAGS:
            channel.callbacks[tag] = record(channel_id, seen)
    return seen, run(lambda: conn.drain_events(timeout=0))


def fast_path_reads(data: bytes, chunk: int) -> tuple[list, BaseException | None, Any]:
    conn, transport = make_connection(FRAME_MAX)
    conn.frame_max = FRAME_MAX
    conn.tuned()
    transport.sock.feed(data, list(range(chunk, len(data), chunk)))
    transport.close = lambda: None
    seen: list = []
    for channel_id in CHANNELS:
        channel = open_channel(conn, channel_id)
        for tag in TAGS:
            channel.callbacks[tag] = record(channel_id, seen)
    return seen, run(lambda: conn.drain_events(timeout=0)), conn


def check(data: bytes, chunk: int) -> None:
    expected, their_error = py_amqp_reads(data, chunk)
    got, our_error, conn = fast_path_reads(data, chunk)
    assert got == expected[: len(got)], "delivered what py-amqp would not"
    if len(got) < len(expected):
        # Stopped early: only with a connection error, never a silent stall.
        assert isinstance(our_error, amqp.exceptions.AMQPError), our_error
    elif our_error is not None and not isinstance(our_error, amqp.exceptions.AMQPError):
        # Anything else must be py-amqp's own reaction at the same point.
        assert type(our_error) is type(their_error), (our_error, their_error)
    assert len(conn.reader.buf) == reader.READ_SIZE


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@FUZZ
@given(st.lists(_event, max_size=6), st.integers(1, 9000))
def test_valid_streams_parse_exactly_as_py_amqp(events: list, chunk: int) -> None:
    data = stream(events)
    expected, their_error = py_amqp_reads(data, chunk)
    got, our_error, _ = fast_path_reads(data, chunk)
    assert their_error is None and our_error is None
    assert got == expected
    assert len(got) == sum(event != "heartbeat" for event in events)


@FUZZ
@given(
    st.lists(_event, min_size=1, max_size=5),
    st.lists(_mutation, min_size=1, max_size=3),
    st.integers(1, 9000),
)
def test_mutated_streams_parse_as_py_amqp_or_fail_with_a_connection_error(
    events: list, mutations: list, chunk: int
) -> None:
    check(mutate(stream(events), mutations), chunk)


@FUZZ
@given(st.binary(max_size=200), st.integers(1, 64))
def test_random_bytes_never_hang_or_loop(data: bytes, chunk: int) -> None:
    check(data, chunk)


@FUZZ
@given(
    st.lists(_delivery, min_size=1, max_size=3),
    st.sampled_from([2, 4, 5, 7, 9, 200]),
    st.integers(0, 2**32 - 1),
    st.floats(0, 1),
)
def test_wrong_sizes_and_unknown_frame_types(
    deliveries: list, ftype: int, size: int, where: float
) -> None:
    # A frame header with any type and size spliced in at a frame boundary.
    data = stream(deliveries)
    boundaries = [0]
    offset = 0
    while offset + 7 <= len(data):
        offset += 8 + int.from_bytes(data[offset + 3 : offset + 7], "big")
        boundaries.append(offset)
    at = boundaries[int(where * (len(boundaries) - 1))]
    header = bytes([ftype]) + (1).to_bytes(2, "big") + size.to_bytes(4, "big")
    check(data[:at] + header + data[at:], 4096)
