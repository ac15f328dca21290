"""The py-amqp fast path without a socket: frames, delivery parsing, ack combining.

The frames it writes are compared byte for byte with what py-amqp's own
``frame_writer`` writes for the same message; the reader is fed byte streams
built with py-amqp's writer, cut at every kind of boundary.
"""

from __future__ import annotations

import errno
import itertools
import random
import socket
import threading
import time
from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_handler
from amqp.serialization import dumps
from fastpath_fakes import (
    amqp_bytes,
    make_connection,
    open_channel,
)

from carrot.backends._amqp import acks, connection, framing, reader, seam
from carrot.backends._amqp.acks import AckTracker
from carrot.backends._amqp.channel import Channel as FastChannel
from carrot.backends._amqp.connection import Connection as FastConnection
from carrot.backends._amqp.framing import PublishFramer, ack_frames
from carrot.exceptions import MessageNacked

# -- what the broker would send ---------------------------------------------------


def deliver_bytes(
    frame_max: int,
    channel_id: int,
    consumer_tag: str,
    delivery_tag: int,
    message: amqp.Message,
    exchange: str = "ex",
    routing_key: str = "rk",
    redelivered: bool = False,
) -> bytes:
    """A ``basic.deliver`` with its content, as the broker would send it."""
    args = dumps("sLbss", (consumer_tag, delivery_tag, redelivered, exchange, routing_key))
    return amqp_bytes(frame_max, (1, channel_id, spec.Basic.Deliver, args, message))


# -- publish frames ----------------------------------------------------------------

PROPERTY_SETS = [
    {},
    {"content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2},
    {"content_type": "text/plain", "delivery_mode": 1, "priority": 9},
    {"priority": 0, "delivery_mode": 2, "content_type": None, "content_encoding": None},
    {
        "application_headers": {"a": 1, "b": "two", "nested": {"x": [1, 2, 3]}, "f": 1.5},
        "correlation_id": "corr",
        "reply_to": "reply.q",
        "expiration": "60000",
        "message_id": "m-1",
        "timestamp": 1700000000,
        "type": "kind",
        "user_id": "guest",
        "app_id": "carrot",
        "cluster_id": "c",
    },
    {"application_headers": {}, "content_type": "application/x-python-serialize"},
    {"content_type": "application/json", "content_encoding": "latin-1"},
]
BODIES = [b"", b"x", b'{"task": "t", "args": [1, 2]}', bytes(range(256)) * 40, "h\u00e9llo \u2603"]


@pytest.mark.parametrize("frame_max", [4096, 131072])
@pytest.mark.parametrize("props", PROPERTY_SETS)
@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True)])
def test_publish_frames_are_byte_identical_to_py_amqp(frame_max, props, body, flags):
    mandatory, immediate = flags
    framer = PublishFramer(frame_max)
    for exchange, routing_key in [("", "q"), ("carrot.x", "a.b.c"), ("\u00e9x", "")]:
        try:
            expected = amqp_bytes(
                frame_max,
                (
                    1,
                    3,
                    spec.Basic.Publish,
                    dumps("Bssbb", (0, exchange, routing_key, mandatory, immediate)),
                    amqp.Message(body, **props),
                ),
            )
        except (TypeError, UnicodeError) as exc:
            # py-amqp cannot encode this str body; neither do we, the same way.
            with pytest.raises(type(exc)):
                framer.frames(3, amqp.Message(body, **props), exchange, routing_key)
            continue
        for _ in range(2):  # the second time from the caches
            ours = framer.frames(
                3, amqp.Message(body, **props), exchange, routing_key, mandatory, immediate
            )
            assert ours == expected


@pytest.mark.parametrize("size_offset", [-1, 0, 1])
@pytest.mark.parametrize("frame_max", [4096, 8192])
def test_publish_frames_at_the_frame_size_boundary(frame_max, size_offset):
    # Bodies just under, at and just over one frame, and over several.
    for body_size in (frame_max - 8 + size_offset, 3 * (frame_max - 8) + size_offset):
        body = bytes([size_offset % 256]) * body_size
        msg_args = {"content_type": "application/octet-stream", "delivery_mode": 2}
        expected = amqp_bytes(
            frame_max,
            (
                1,
                1,
                spec.Basic.Publish,
                dumps("Bssbb", (0, "x", "k", False, False)),
                amqp.Message(body, **msg_args),
            ),
        )
        ours = PublishFramer(frame_max).frames(1, amqp.Message(body, **msg_args), "x", "k")
        assert ours == expected


def test_str_body_gets_content_encoding_like_py_amqp():
    message = amqp.Message("caf\u00e9")
    PublishFramer(131072).frames(1, message, "", "q")
    assert message.properties["content_encoding"] == "utf-8"


def test_property_cache_is_bounded():
    framer = PublishFramer(131072)
    for i in range(framing.PROPERTY_CACHE_SIZE * 3):
        framer.frames(1, amqp.Message(b"x", message_id=str(i)), "", "q")
    assert len(framer._properties) <= framing.PROPERTY_CACHE_SIZE
    assert len(framer._heads) <= framing.PROPERTY_CACHE_SIZE


def test_new_message_equals_py_amqps_constructor():
    props = {"delivery_mode": 2, "priority": None, "content_type": "a/b", "content_encoding": "x"}
    ours = seam.new_message(amqp.Message, b"body", dict(props))
    theirs = amqp.Message(b"body", **props)
    assert type(ours) is amqp.Message
    for slot in (
        "frame_method",
        "frame_args",
        "properties",
        "_pending_chunks",
        "body_received",
        "body_size",
        "ready",
        "delivery_info",
        "body",
        "channel",
    ):
        assert getattr(ours, slot) == getattr(theirs, slot), slot
    assert ours.content_type == "a/b"  # properties readable as attributes, as py-amqp's


@pytest.mark.parametrize("tag", [1, 255, 2**40])
@pytest.mark.parametrize("multiple", [False, True])
def test_ack_frames_are_byte_identical_to_py_amqp(tag, multiple):
    expected = amqp_bytes(131072, (1, 7, spec.Basic.Ack, dumps("Lb", (tag, multiple)), None))
    if multiple:
        assert ack_frames(7, [], tag) == expected
    else:
        assert ack_frames(7, [tag], 0) == expected


def test_fast_publish_writes_one_write_per_message():
    conn, transport = make_connection()
    channel = open_channel(conn)
    channel.fast_publish(amqp.Message(b"body", delivery_mode=2), "x", "k")
    assert len(transport.written) == 1
    assert transport.written[0] == amqp_bytes(
        131072,
        (
            1,
            1,
            spec.Basic.Publish,
            dumps("Bssbb", (0, "x", "k", False, False)),
            amqp.Message(b"body", delivery_mode=2),
        ),
    )


def test_fast_publish_falls_back_in_confirm_mode(monkeypatch):
    conn, transport = make_connection()
    channel = open_channel(conn)
    conn.confirm_publish = True  # py-amqp waits for each publish's confirm
    calls = []
    monkeypatch.setattr(channel, "basic_publish", lambda *a, **kw: calls.append((a, kw)))
    channel.fast_publish(amqp.Message(b"b"), "x", "k")
    assert len(calls) == 1
    assert transport.written == []


def test_confirms_reaching_a_closing_channel_are_dropped_without_warnings(caplog):
    # Recovery closes a channel a leaderless quorum queue nacked, with
    # hundreds of messages unconfirmed: the broker nacks each before close-ok.
    conn, transport = make_connection()
    channel = open_channel(conn)
    channel.confirm_select(nowait=True)
    channel.is_closing = True
    stream = amqp_bytes(
        131072,
        *[(1, 1, spec.Basic.Nack, dumps("Lbb", (tag, False, False)), None) for tag in (1, 2)],
        (1, 1, spec.Basic.Ack, dumps("Lb", (3, False)), None),
    )
    transport.sock.feed(stream)
    with caplog.at_level("WARNING", logger="amqp"):
        drain_all(conn)
    assert not [r for r in caplog.records if "during closing channel" in r.getMessage()]
    # Anything else a closing channel gets is still ignored with py-amqp's warning.
    transport.sock.feed(
        amqp_bytes(131072, (1, 1, spec.Basic.Cancel, dumps("sb", ("c", False)), None))
    )
    with caplog.at_level("WARNING", logger="amqp"):
        drain_all(conn)
    assert [r for r in caplog.records if "during closing channel" in r.getMessage()]


# -- reading deliveries -----------------------------------------------------------


def py_amqp_parse(data: bytes, frame_max: int) -> list[tuple]:
    """What py-amqp's own reader makes of ``data``: (method, args payload, message)."""
    seen = []

    class Conn:
        bytes_recv = 0

    handler = frame_handler(Conn(), lambda ch, sig, payload, content: seen.append(content))
    offset = 0
    while offset < len(data):
        ftype = data[offset]
        channel = int.from_bytes(data[offset + 1 : offset + 3], "big")
        size = int.from_bytes(data[offset + 3 : offset + 7], "big")
        handler((ftype, channel, data[offset + 7 : offset + 7 + size]))
        offset += 8 + size
    return seen


def collect_deliveries(conn: FastConnection, channel: FastChannel, tag: str) -> list[Any]:
    got: list[Any] = []
    channel.callbacks[tag] = got.append
    return got


def drain_all(conn: FastConnection, limit: int = 1000) -> int:
    """Drain until the fake socket is empty; returns how many methods were dispatched."""
    for count in range(limit):
        try:
            conn.drain_events(timeout=0)
        except TimeoutError:
            return count
    raise AssertionError("drain did not stop")


@pytest.mark.parametrize("frame_max", [4096, 131072])
def test_deliveries_match_py_amqp_whatever_the_read_boundaries(frame_max):
    rng = random.Random(frame_max)
    messages = [
        amqp.Message(body, **props)
        for body, props in itertools.product(
            [b"", b"abc", bytes(range(256)) * 50], PROPERTY_SETS[:5]
        )
    ]
    stream = b"".join(
        deliver_bytes(frame_max, 1, "ctag", i + 1, m, redelivered=bool(i % 2))
        for i, m in enumerate(messages)
    )
    expected = py_amqp_parse(stream, frame_max)
    for attempt in range(5):
        conn, transport = make_connection(frame_max)
        channel = open_channel(conn)
        channel.auto_decode = False
        got = collect_deliveries(conn, channel, "ctag")
        cuts = [rng.randrange(len(stream)) for _ in range(attempt * 40)]
        transport.sock.feed(stream, cuts)
        assert drain_all(conn) == len(messages)
        assert len(got) == len(expected)
        for i, (ours, theirs) in enumerate(zip(got, expected, strict=True)):
            assert isinstance(ours, amqp.Message)
            assert ours.body == theirs.body
            assert ours.properties == theirs.properties
            assert ours.channel is channel
            assert ours.delivery_info == {
                "consumer_tag": "ctag",
                "delivery_tag": i + 1,
                "redelivered": bool(i % 2),
                "exchange": "ex",
                "routing_key": "rk",
            }
            assert ours.delivery_tag == i + 1


def test_frame_larger_than_the_read_buffer():
    frame_max = 4 * reader.READ_SIZE
    conn, transport = make_connection(frame_max)
    channel = open_channel(conn)
    got = collect_deliveries(conn, channel, "c")
    body = bytes(range(256)) * (3 * reader.READ_SIZE // 256)
    data = deliver_bytes(frame_max, 1, "c", 1, amqp.Message(body))
    transport.sock.feed(data, list(range(0, len(data), 64 * 1024)))
    drain_all(conn)
    assert [m.body for m in got] == [body]
    assert len(conn.reader.buf) > reader.READ_SIZE


def test_delivered_properties_are_not_shared_between_messages():
    conn, transport = make_connection()
    channel = open_channel(conn)
    got = collect_deliveries(conn, channel, "c")
    msg = amqp.Message(b"x", content_type="text/plain", delivery_mode=2)
    transport.sock.feed(
        deliver_bytes(131072, 1, "c", 1, msg) + deliver_bytes(131072, 1, "c", 2, msg)
    )
    drain_all(conn)
    got[0].properties["content_type"] = "changed"
    assert got[1].properties["content_type"] == "text/plain"


def test_auto_decode_like_py_amqp():
    conn, transport = make_connection()
    channel = open_channel(conn)
    got = collect_deliveries(conn, channel, "c")
    transport.sock.feed(
        deliver_bytes(131072, 1, "c", 1, amqp.Message("h\u00e9".encode(), content_encoding="utf-8"))
        + deliver_bytes(131072, 1, "c", 2, amqp.Message(b"\xff\xfe", content_encoding="utf-8"))
        + deliver_bytes(131072, 1, "c", 3, amqp.Message(b"raw"))
    )
    drain_all(conn)
    assert [m.body for m in got] == ["h\u00e9", b"\xff\xfe", b"raw"]


def test_heartbeats_between_content_frames_are_skipped():
    conn, transport = make_connection(4096)
    channel = open_channel(conn)
    got = collect_deliveries(conn, channel, "c")
    data = deliver_bytes(4096, 1, "c", 1, amqp.Message(b"y" * 10000, delivery_mode=2))
    heartbeat = b"\x08\x00\x00\x00\x00\x00\x00\xce"
    # Cut after each frame and put a heartbeat there.
    frames, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset + 3 : offset + 7], "big")
        frames.append(data[offset : offset + 8 + size])
        offset += 8 + size
    assert len(frames) == 5  # method, header, three body frames
    transport.sock.feed(heartbeat + heartbeat.join(frames) + heartbeat)
    before = conn.bytes_recv
    drain_all(conn)
    assert [m.body for m in got] == [b"y" * 10000]
    # Every frame counts for heartbeat accounting: 5 content frames, 6 heartbeats.
    assert conn.bytes_recv - before == 2 * len(frames) + 1


def test_other_methods_go_to_py_amqp():
    conn, transport = make_connection()
    channel = open_channel(conn)
    cancelled = []
    channel.callbacks["c"] = lambda m: None
    channel.cancel_callbacks["c"] = cancelled.append
    # basic.cancel from the broker, then connection.blocked / unblocked on channel 0.
    stream = amqp_bytes(
        131072,
        (1, 1, spec.Basic.Cancel, dumps("sb", ("c", False)), None),
        (1, 0, spec.Connection.Blocked, dumps("s", ("low on memory",)), None),
    )
    transport.sock.feed(stream)
    drain_all(conn)
    assert cancelled == ["c"]
    assert "c" not in channel.callbacks
    assert conn.is_blocked
    transport.sock.feed(amqp_bytes(131072, (1, 0, spec.Connection.Unblocked, b"", None)))
    drain_all(conn)
    assert not conn.is_blocked


def test_blocked_reason_is_the_one_the_broker_sent():
    # py-amqp declares connection.blocked without arguments and reports a
    # fixed text; the fast path reads the broker's reason from the frame.
    seen: list[str] = []
    conn, transport = make_connection()
    conn.on_blocked = seen.append  # the application's callback still runs
    transport.sock.feed(
        amqp_bytes(131072, (1, 0, spec.Connection.Blocked, dumps("s", ("low on memory",)), None))
    )
    drain_all(conn)
    assert conn.is_blocked and conn.blocked_reason == "low on memory"
    assert seen == ["low on memory"]
    transport.sock.feed(amqp_bytes(131072, (1, 0, spec.Connection.Unblocked, b"", None)))
    drain_all(conn)
    assert not conn.is_blocked and conn.blocked_reason is None


class ErrnoSocket:
    """recv_into raises the queued OSErrors, then hands out the queued bytes."""

    def __init__(self, *events: Any) -> None:
        self.events = list(events)

    def recv_into(self, view: memoryview) -> int:
        event = self.events.pop(0)
        if isinstance(event, BaseException):
            raise event
        view[: len(event)] = event
        return len(event)


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.EINTR])
def test_read_timeout_before_a_frame_raises_socket_timeout_and_keeps_the_connection(code):
    # SO_RCVTIMEO (read_timeout) makes recv fail with EAGAIN: py-amqp's
    # read_frame raises socket.timeout when no byte of a frame was read.
    conn, transport = make_connection()
    transport.sock = ErrnoSocket(OSError(code, "Resource temporarily unavailable"))
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=None)
    assert transport.connected


def test_read_timeout_inside_a_frame_is_retried_like_py_amqp():
    conn, transport = make_connection()
    channel = open_channel(conn)
    got: list[Any] = []
    channel.callbacks["c"] = got.append
    data = deliver_bytes(131072, 1, "c", 1, amqp.Message(b"body"))
    transport.sock = ErrnoSocket(data[:5], OSError(errno.EAGAIN, "again"), data[5:])
    conn.drain_events(timeout=None)
    assert [m.body for m in got] == [b"body"]


def test_other_socket_errors_mark_the_transport_disconnected():
    conn, transport = make_connection()
    transport.sock = ErrnoSocket(OSError(errno.ECONNRESET, "reset"))
    with pytest.raises(ConnectionResetError):
        conn.drain_events(timeout=None)
    assert not transport.connected


def test_tls_timed_out_error_is_a_socket_timeout():
    import ssl

    conn, transport = make_connection()
    transport.sock = ErrnoSocket(ssl.SSLError("The read operation timed out"))
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=1)
    assert transport.connected


def test_read_timeout_is_a_connection_attribute():
    from carrot.backends import pyamqplib

    assert pyamqplib.Connection.read_timeout is None  # carrot 0.10 had the name
    conn = pyamqplib.Connection(host="fake:5672", read_timeout=2.5)
    assert conn.read_timeout == 2.5
    made = conn.Transport("fake:5672", 1, read_timeout=conn.read_timeout)
    assert made.read_timeout == 2.5


def test_delivery_for_unknown_consumer_is_requeued_like_py_amqp():
    conn, transport = make_connection()
    open_channel(conn)
    transport.sock.feed(deliver_bytes(131072, 1, "nobody", 5, amqp.Message(b"x")))
    drain_all(conn)
    assert transport.take() == amqp_bytes(
        131072, (1, 1, spec.Basic.Reject, dumps("Lb", (5, True)), None)
    )


def test_bad_frame_end_raises():
    conn, transport = make_connection()
    open_channel(conn)
    data = bytearray(deliver_bytes(131072, 1, "c", 1, amqp.Message(b"x")))
    data[-1] = 0
    transport.sock.feed(bytes(data))
    with pytest.raises(amqp.exceptions.UnexpectedFrame):
        drain_all(conn)


def test_closed_socket_raises_and_marks_disconnected():
    conn, transport = make_connection()
    transport.sock.recv_into = lambda view: 0
    with pytest.raises(OSError):
        conn.drain_events(timeout=1)
    assert transport.connected is False


def test_publish_waits_while_blocked():
    conn, transport = make_connection()
    channel = open_channel(conn)
    conn.is_blocked = True
    transport.sock.feed(amqp_bytes(131072, (1, 0, spec.Connection.Unblocked, b"", None)))
    channel.fast_publish(amqp.Message(b"m"), "", "q")
    assert not conn.is_blocked
    assert len(transport.written) == 1


def test_publish_looks_for_inbound_frames_every_few_messages(monkeypatch):
    conn, _transport = make_connection()
    channel = open_channel(conn)
    checks = []
    monkeypatch.setattr(
        conn, "_check_inbound", lambda: (checks.append(1), setattr(conn, "_since_check", 0))
    )
    for _ in range(connection.CHECK_EVERY * 3):
        channel.fast_publish(amqp.Message(b"m"), "", "q")
    assert len(checks) == 3


# -- ack combining ----------------------------------------------------------------


def test_in_order_acks_combine_into_one_multiple_ack():
    tracker = AckTracker()
    for tag in range(1, 6):
        tracker.delivered(tag)
    for tag in range(1, 6):
        assert tracker.ack(tag)
    assert tracker.take() == ([], 5)


def test_out_of_order_ack_is_sent_alone():
    tracker = AckTracker()
    for tag in (1, 2, 3):
        tracker.delivered(tag)
    assert tracker.ack(2)  # 1 is not settled: 2 cannot be combined
    assert tracker.take() == ([2], 0)
    assert tracker.ack(1)
    assert tracker.ack(3)
    assert tracker.take() == ([], 3)


def test_unknown_or_repeated_tag_is_not_held_back():
    tracker = AckTracker()
    tracker.delivered(1)
    assert not tracker.ack(9)
    assert tracker.ack(1)
    assert not tracker.ack(1)


def test_rejected_tag_lets_later_acks_combine():
    tracker = AckTracker()
    for tag in (1, 2, 3):
        tracker.delivered(tag)
    tracker.settled(1)
    assert tracker.ack(2)
    assert tracker.ack(3)
    assert tracker.take() == ([], 3)


def simulate(tracker_ops: list[tuple[str, int]], tags: list[int], rng: random.Random) -> None:
    """Check the ack rule against a model broker for one sequence of operations."""
    tracker = AckTracker()
    broker_unacked: set[int] = set()
    caller_acked: set[int] = set()
    settled: set[int] = set()

    def apply(frames_singles: list[int], multiple: int) -> None:
        for tag in frames_singles:
            assert tag in broker_unacked, f"single ack of {tag} not outstanding"
            broker_unacked.remove(tag)
        if multiple:
            covered = {t for t in broker_unacked if t <= multiple}
            assert multiple in covered
            # A combined ack must cover only tags the caller acked.
            assert covered <= caller_acked, f"multiple={multiple} acks {covered - caller_acked}"
            broker_unacked.difference_update(covered)

    for tag in tags:
        tracker.delivered(tag)
        broker_unacked.add(tag)
    for op, tag in tracker_ops:
        if tag in settled:
            continue
        settled.add(tag)
        if op == "ack":
            caller_acked.add(tag)
            if not tracker.ack(tag):
                apply(*tracker.take())
                apply([tag], 0)
        else:  # reject / requeue: pending acks go first
            apply(*tracker.take())
            tracker.settled(tag)
            broker_unacked.remove(tag)
        if rng.random() < 0.2:
            apply(*tracker.take())
    apply(*tracker.take())
    assert broker_unacked == set(tags) - settled
    assert tracker.pending == 0


def test_ack_rule_against_a_model_broker():
    rng = random.Random(1234)
    for _ in range(300):
        tags = list(range(1, rng.randrange(1, 40)))
        ops = [(rng.choice(["ack", "ack", "ack", "reject"]), rng.choice(tags)) for _ in tags * 2]
        simulate(ops, tags, rng)


def test_channel_acks_are_written_before_other_frames_and_combined():
    conn, transport = make_connection()
    channel = open_channel(conn)
    got = collect_deliveries(conn, channel, "c")
    stream = b"".join(deliver_bytes(131072, 1, "c", t, amqp.Message(b"m")) for t in (1, 2, 3))
    transport.sock.feed(stream)
    # Acks made inside the callback are held until everything read was handled.
    channel.callbacks["c"] = lambda m: (got.append(m), channel.basic_ack(m.delivery_tag))
    drain_all(conn)
    assert len(got) == 3
    assert transport.take() == ack_frames(1, [], 3)


def test_pending_acks_go_out_before_a_reject():
    conn, transport = make_connection()
    channel = open_channel(conn)
    written_before_reject = []

    def callback(message):
        tag = message.delivery_tag
        if tag == 1:
            channel.basic_ack(1)
            written_before_reject.append(list(transport.written))
        elif tag == 3:
            channel.basic_reject(3, requeue=True)

    channel.callbacks["c"] = callback
    transport.sock.feed(
        b"".join(deliver_bytes(131072, 1, "c", t, amqp.Message(b"m")) for t in (1, 2, 3))
    )
    drain_all(conn)
    # The ack made in the callback was held back, then went out before the reject.
    assert written_before_reject == [[]]
    assert transport.take() == ack_frames(1, [], 1) + amqp_bytes(
        131072, (1, 1, spec.Basic.Reject, dumps("Lb", (3, True)), None)
    )


def test_ack_outside_a_dispatch_is_written_at_once():
    conn, transport = make_connection()
    channel = open_channel(conn)
    got = collect_deliveries(conn, channel, "c")
    transport.sock.feed(deliver_bytes(131072, 1, "c", 1, amqp.Message(b"m")))
    drain_all(conn)
    assert len(got) == 1
    # As after fetch(): the application acks between two waits, then may idle.
    channel.basic_ack(1)
    assert transport.take() == ack_frames(1, [], 1)


def test_pending_acks_flushed_before_waiting_on_the_socket():
    conn, transport = make_connection()
    channel = open_channel(conn)
    seen_pending = []

    def callback(message):
        channel.basic_ack(message.delivery_tag)
        seen_pending.append(conn.held_acks.pending)
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0)  # a wait inside the callback
        seen_pending.append(conn.held_acks.pending)

    channel.callbacks["c"] = callback
    transport.sock.feed(deliver_bytes(131072, 1, "c", 1, amqp.Message(b"m")))
    drain_all(conn)
    assert seen_pending == [1, 0]
    assert transport.take() == ack_frames(1, [], 1)


def test_acks_flush_at_threshold():
    conn, transport = make_connection()
    channel = open_channel(conn)
    for tag in range(1, acks.ACK_FLUSH_AT + 1):
        channel.acks.delivered(tag)
    conn.held_acks.dispatching = 1  # as inside a consumer callback: acks are held back
    conn.held_acks.dispatch_thread = threading.get_ident()  # ... in this thread
    for tag in range(1, acks.ACK_FLUSH_AT):
        channel.basic_ack(tag)
    assert transport.written == []
    channel.basic_ack(acks.ACK_FLUSH_AT)
    assert transport.take() == ack_frames(1, [], acks.ACK_FLUSH_AT)


def test_no_ack_deliveries_are_not_tracked():
    conn, transport = make_connection()
    channel = open_channel(conn)
    collect_deliveries(conn, channel, "c")
    channel.no_ack_consumers.add("c")
    transport.sock.feed(deliver_bytes(131072, 1, "c", 1, amqp.Message(b"m")))
    drain_all(conn)
    assert channel.acks.live == set()


def test_explicit_multiple_ack_is_sent_at_once():
    conn, transport = make_connection()
    channel = open_channel(conn)
    for tag in (1, 2, 3):
        channel.acks.delivered(tag)
    channel.basic_ack(2, multiple=True)
    assert transport.take() == ack_frames(1, [], 2)
    assert channel.acks.live == {3}


def test_reopened_channel_forgets_tags():
    conn, _transport = make_connection()
    channel = open_channel(conn)
    channel.acks.delivered(1)
    channel._on_open_ok()
    assert channel.acks.live == set()
    assert not channel.acks.ack(1)


def test_tcp_user_timeout_overridden():
    conn = FastConnection(host="fake:5672")
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        assert conn.socket_settings[socket.TCP_USER_TIMEOUT] == 0
    conn = FastConnection(host="fake:5672", socket_settings={socket.TCP_NODELAY: 1})
    assert conn.socket_settings[socket.TCP_NODELAY] == 1


# -- threads --------------------------------------------------------------------


def test_fast_publish_and_py_amqp_writes_never_interleave():
    conn, transport = make_connection()
    channel = open_channel(conn)
    inside = []
    errors = []
    original_write = transport.write

    def guarded_write(data: Any) -> None:
        if inside:
            errors.append("two writes at once")
        inside.append(1)
        time.sleep(0.0001)  # let the other thread run if it can
        original_write(data)
        inside.pop()

    transport.write = guarded_write
    conn.frame_writer = conn._guarded_frame_writer(conn, transport)  # py-amqp's writer binds write
    conn._check_inbound = lambda: setattr(conn, "_since_check", 0)  # the fake has no fd

    start = threading.Barrier(2, timeout=10)

    def publisher() -> None:
        start.wait()
        for _ in range(300):
            channel.fast_publish(amqp.Message(b"m"), "", "q")

    def acker() -> None:
        start.wait()
        for tag in range(1, 301):
            channel.basic_ack(tag, multiple=True)  # through py-amqp's frame writer

    threads = [threading.Thread(target=publisher), threading.Thread(target=acker)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(transport.written) == 600


# -- the benchmark script ----------------------------------------------------------


def test_benchmark_report_and_chart(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    for name in ("run", "chart", "clients"):
        sys.modules.pop(name, None)
    import run

    per_client = {
        name: {"rate": rate, "cpu_us": cpu}
        for name, rate, cpu in [
            ("carrot", 60000, 7.0),
            ("py-amqp", 20000, 30.0),
            ("kombu", 15000, 55.0),
            ("pika", 18000, 40.0),
        ]
    }
    results = {
        "n": 10,
        "rounds": 1,
        "machine": {"cpus": 2, "broker": "3.10"},
        "throughput": {scenario: per_client for scenario in run.SCENARIOS},
        "latency": {"carrot": {"p50_us": 100.0, "p99_us": 300.0}},
        "rss": {
            "rss_kib_checkpoint": 1000,
            "rss_kib_final": 1010,
            "checkpoint": 10,
            "total": 100,
            "growth_pct": 1.0,
        },
        "memory_backend": {"publish": 1.0, "consume_ack": 2.0},
    }
    table = run.format_table(results)
    assert "3.00x" in table  # carrot vs py-amqp
    assert "4.00x" in table  # carrot vs kombu
    assert "+1.0%" in table
    pytest.importorskip("matplotlib")
    from chart import write_chart

    out = tmp_path / "chart.png"
    assert write_chart(results, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confirms_are_parsed_in_place_for_the_channel_window(monkeypatch):
    from carrot.confirms import ConfirmWindow

    conn, transport = make_connection()
    channel = open_channel(conn)
    window = ConfirmWindow(100)
    for n in range(6):
        window.published(amqp.Message(f"m{n}".encode()), "x", "k")
    channel.confirm_window = window
    # py-amqp's own handlers must not see them.
    monkeypatch.setattr(
        conn, "on_inbound_frame", lambda frame: pytest.fail(f"py-amqp got {frame!r}")
    )
    transport.sock.feed(
        amqp_bytes(
            131072,
            (1, 1, spec.Basic.Ack, dumps("Lb", (3, True)), None),  # 1..3
            (1, 1, spec.Basic.Nack, dumps("Lbb", (5, False, True)), None),  # 5 alone
            (1, 1, spec.Basic.Ack, dumps("Lb", (4, False)), None),
        )
    )
    drain_all(conn)
    assert len(window) == 1  # only 6 is left
    with pytest.raises(MessageNacked) as info:
        window.raise_failures()
    assert [m.seq for m in info.value.messages] == [5]
