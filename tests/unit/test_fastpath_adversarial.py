"""Adversarial tests of the py-amqp fast path, without a socket.

Random interleavings of deliveries, ``basic.get-ok``, acks, rejects, nacks
and explicit ``multiple=True`` acks on several channels and consumers are
run through a :class:`FastConnection` wired to a fake socket; every frame
it writes is replayed against a model of RabbitMQ's per-channel
unacknowledged set, which fails on any ack of a tag that is not
outstanding and on any combined ack covering a tag the caller did not ack.
"""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_handler
from amqp.serialization import dumps, loads
from fastpath_fakes import (
    FakeSocket,
    FakeTransport,
    amqp_bytes,
    make_connection,
    open_channel,
)

from carrot.backends._amqp import connection, reader
from carrot.backends._amqp.channel import Channel as FastChannel
from carrot.backends._amqp.connection import Connection as FastConnection
from carrot.backends._amqp.framing import ack_frames

# -- what the broker would send ---------------------------------------------------


def deliver(channel_id: int, consumer_tag: str, tag: int, body: bytes = b"m", **props) -> bytes:
    args = dumps("sLbss", (consumer_tag, tag, False, "ex", "rk"))
    return amqp_bytes(
        131072, (1, channel_id, spec.Basic.Deliver, args, amqp.Message(body, **props))
    )


def get_ok(channel_id: int, tag: int, body: bytes = b"g") -> bytes:
    args = dumps("Lbssl", (tag, False, "ex", "rk", 0))
    return amqp_bytes(131072, (1, channel_id, spec.Basic.GetOk, args, amqp.Message(body)))


def method(channel_id: int, sig: tuple, fmt: str = "", args: tuple = ()) -> bytes:
    return amqp_bytes(131072, (1, channel_id, sig, dumps(fmt, args) if fmt else b"", None))


def drain_all(conn: FastConnection, limit: int = 10000) -> int:
    for count in range(limit):
        try:
            conn.drain_events(timeout=0)
        except TimeoutError:
            return count
    raise AssertionError("drain did not stop")


def written_methods(data: bytes) -> list[tuple[int, tuple, bytes]]:
    """The methods in bytes the client wrote, parsed by py-amqp's reader."""
    seen: list[tuple[int, tuple, bytes]] = []

    class Conn:
        bytes_recv = 0

    handler = frame_handler(
        Conn(), lambda ch, sig, payload, content: seen.append((ch, sig, payload))
    )
    offset = 0
    while offset < len(data):
        channel = int.from_bytes(data[offset + 1 : offset + 3], "big")
        size = int.from_bytes(data[offset + 3 : offset + 7], "big")
        assert data[offset + 7 + size] == 0xCE
        handler((data[offset], channel, data[offset + 7 : offset + 7 + size]))
        offset += 8 + size
    return seen


# -- a model of the broker's unacknowledged deliveries --------------------------------


class BrokerModel:
    """RabbitMQ's view: per channel, the delivery tags not yet settled.

    An ack, reject or nack of a tag that is not outstanding is a channel
    error on RabbitMQ (``PRECONDITION_FAILED - unknown delivery tag``); a
    ``multiple`` one settles every outstanding tag up to it. The caller's
    intent is recorded separately so a combined ack that covers a tag the
    caller did not ack is caught.
    """

    def __init__(self) -> None:
        self.outstanding: dict[int, set[int]] = {}
        #: Tags the caller acked (per channel).
        self.caller_acked: dict[int, set[int]] = {}
        #: Tags the caller rejected or nacked (per channel).
        self.caller_rejected: dict[int, set[int]] = {}
        self.acked: dict[int, set[int]] = {}
        self.rejected: dict[int, set[int]] = {}

    def delivered(self, channel: int, tag: int, no_ack: bool = False) -> None:
        if not no_ack:
            self.outstanding.setdefault(channel, set()).add(tag)

    def _settle(self, channel: int, tag: int, multiple: bool, intent: dict, into: dict) -> None:
        out = self.outstanding.setdefault(channel, set())
        assert tag in out, f"channel {channel}: settling unknown delivery tag {tag}"
        covered = {t for t in out if t <= tag} if multiple else {tag}
        wrong = covered - intent.get(channel, set())
        assert not wrong, f"channel {channel}: tag {tag} multiple={multiple} settles {wrong}"
        out -= covered
        into.setdefault(channel, set()).update(covered)

    def apply(self, data: bytes) -> None:
        for channel, sig, payload in written_methods(data):
            if sig == spec.Basic.Ack:
                tag, multiple = loads("Lb", payload, 4)[0]
                self._settle(channel, tag, multiple, self.caller_acked, self.acked)
            elif sig == spec.Basic.Reject:
                tag, _requeue = loads("Lb", payload, 4)[0]
                self._settle(channel, tag, False, self.caller_rejected, self.rejected)
            elif sig == spec.Basic.Nack:
                tag, multiple, _requeue = loads("Lbb", payload, 4)[0]
                self._settle(channel, tag, multiple, self.caller_rejected, self.rejected)


# -- attack 1: the ack rule under random interleavings ------------------------------------


class Caller:
    """An application with random habits, acting through the public channel API."""

    def __init__(self, rng: random.Random, model: BrokerModel) -> None:
        self.rng = rng
        self.model = model
        #: (channel, tag) delivered, needing settlement, not yet settled.
        self.held: dict[tuple[int, int], FastChannel] = {}

    def unsettled(self, channel: FastChannel) -> list[int]:
        return sorted(t for (c, t) in self.held if c == channel.channel_id)

    def settle(self, channel: FastChannel, tag: int) -> None:
        cid = channel.channel_id
        choice = self.rng.random()
        lower = [t for t in self.unsettled(channel) if t <= tag]
        if choice < 0.55:
            self.model.caller_acked.setdefault(cid, set()).add(tag)
            del self.held[(cid, tag)]
            channel.basic_ack(tag)
        elif choice < 0.65:
            self.model.caller_rejected.setdefault(cid, set()).add(tag)
            del self.held[(cid, tag)]
            channel.basic_reject(tag, requeue=self.rng.random() < 0.5)
        elif choice < 0.72:
            self.model.caller_rejected.setdefault(cid, set()).add(tag)
            del self.held[(cid, tag)]
            channel.basic_nack(tag, multiple=False, requeue=True)
        elif choice < 0.82:
            # An explicit multiple=True ack of every unsettled tag up to this one.
            self.model.caller_acked.setdefault(cid, set()).update(lower)
            for t in lower:
                del self.held[(cid, t)]
            channel.basic_ack(tag, multiple=True)
        elif choice < 0.87:
            self.model.caller_rejected.setdefault(cid, set()).update(lower)
            for t in lower:
                del self.held[(cid, t)]
            channel.basic_nack(tag, multiple=True, requeue=False)
        # else: keep it for later

    def settle_some(self, count: int) -> None:
        for _ in range(count):
            if not self.held:
                return
            cid, tag = self.rng.choice(sorted(self.held))
            self.settle(self.held[(cid, tag)], tag)


def run_interleaving(seed: int) -> None:
    rng = random.Random(seed)
    conn, transport = make_connection()
    channels = [open_channel(conn, 1), open_channel(conn, 2)]
    model = BrokerModel()
    caller = Caller(rng, model)
    next_tag = {1: 1, 2: 1}
    consumers = {1: ["a", "b", "n"], 2: ["c", "d"]}
    channels[0].no_ack_consumers.add("n")  # a no_ack consumer sharing channel 1's tags

    def make_callback(channel: FastChannel, consumer_tag: str) -> Any:
        def callback(message: amqp.Message) -> None:
            tag = message.delivery_tag
            if consumer_tag in channel.no_ack_consumers:
                return
            caller.held[(channel.channel_id, tag)] = channel
            if rng.random() < 0.8:
                caller.settle(channel, tag)
            if rng.random() < 0.1:
                caller.settle_some(2)

        return callback

    for channel in channels:
        for consumer_tag in consumers[channel.channel_id]:
            channel.callbacks[consumer_tag] = make_callback(channel, consumer_tag)

    pending: list[bytes] = []
    for _step in range(rng.randrange(20, 80)):
        what = rng.random()
        if what < 0.6:
            channel = rng.choice(channels)
            cid = channel.channel_id
            consumer_tag = rng.choice(consumers[cid])
            tag = next_tag[cid]
            next_tag[cid] += 1
            model.delivered(cid, tag, no_ack=consumer_tag in channel.no_ack_consumers)
            pending.append(deliver(cid, consumer_tag, tag))
        elif what < 0.7:
            # basic_get on a channel that also has consumers: deliveries ahead of
            # the get-ok are dispatched while basic_get waits.
            channel = rng.choice(channels)
            cid = channel.channel_id
            tag = next_tag[cid]
            next_tag[cid] += 1
            model.delivered(cid, tag)
            pending.append(get_ok(cid, tag))
            transport.sock.feed(b"".join(pending), rng)
            pending.clear()
            message = channel.basic_get("q")
            assert message is not None and message.delivery_tag == tag
            caller.held[(cid, tag)] = channel
            if rng.random() < 0.5:
                caller.settle(channel, tag)
        elif what < 0.9:
            transport.sock.feed(b"".join(pending), rng)
            pending.clear()
            if rng.random() < 0.5:
                drain_all(conn)
            else:  # a single event: acks may stay held while frames are buffered
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0)
        else:
            caller.settle_some(rng.randrange(1, 4))
        model.apply(transport.take())
    transport.sock.feed(b"".join(pending), rng)
    drain_all(conn)
    # The caller settles what it kept, oldest first on each channel.
    for (cid, tag), channel in sorted(caller.held.items()):
        model.caller_acked.setdefault(cid, set()).add(tag)
        channel.basic_ack(tag)
    caller.held.clear()
    conn.flush_acks()
    model.apply(transport.take())
    assert conn.held_acks.pending == 0
    for cid, out in model.outstanding.items():
        assert out == set(), f"channel {cid}: tags {sorted(out)} never settled"
        assert model.acked.get(cid, set()) == model.caller_acked.get(cid, set())
        assert model.rejected.get(cid, set()) == model.caller_rejected.get(cid, set())


@pytest.mark.parametrize("seed", range(150))
def test_random_interleavings_never_misack(seed):
    run_interleaving(seed)


# -- held-back acks must not be stranded -----------------------------------------------


def acks_in(data: bytes) -> list[tuple[int, int, bool]]:
    """``(channel, tag, multiple)`` of every ``basic.ack`` in ``data``."""
    return [
        (channel, *loads("Lb", payload, 4)[0])
        for channel, sig, payload in written_methods(data)
        if sig == spec.Basic.Ack
    ]


def test_ack_is_written_when_only_a_partial_frame_is_buffered():
    # Delivery 1 complete, delivery 2 cut in the middle of its body: the ack
    # made in 1's callback must not wait for the rest of 2 (which may never
    # come while the application does something else).
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    channel.callbacks["c"] = lambda m: channel.basic_ack(m.delivery_tag)
    second = deliver(1, "c", 2, b"x" * 1000)
    transport.sock.feed(deliver(1, "c", 1) + second[:-100])
    conn.drain_events(timeout=0)
    assert acks_in(transport.take()) == [(1, 1, True)]
    assert conn.held_acks.pending == 0


def test_ack_is_held_only_while_a_whole_delivery_is_buffered():
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    channel.callbacks["c"] = lambda m: channel.basic_ack(m.delivery_tag)
    transport.sock.feed(b"".join(deliver(1, "c", t) for t in (1, 2, 3)))
    conn.drain_events(timeout=0)
    assert transport.take() == b""  # delivery 2 is buffered whole: the ack waits for it
    conn.drain_events(timeout=0)
    conn.drain_events(timeout=0)
    assert acks_in(transport.take()) == [(1, 3, True)]


def test_backend_consume_with_a_limit_sends_held_acks_when_it_ends():
    # Consumer.wait(limit=1) with more deliveries prefetched: the held ack
    # must be on the wire when wait() returns, not at the next socket read.
    from types import SimpleNamespace

    from carrot.backends.pyamqplib import Backend

    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    channel.callbacks["c"] = lambda m: channel.basic_ack(m.delivery_tag)
    backend = Backend(SimpleNamespace(connection=conn))
    backend._channel = channel
    transport.sock.feed(b"".join(deliver(1, "c", t) for t in (1, 2, 3)))
    assert list(backend.consume(limit=1)) == [True]
    assert acks_in(transport.take()) == [(1, 1, True)]
    # An abandoned generator (a break out of the loop) sends them too.
    consuming = backend.consume()
    next(consuming)
    consuming.close()
    assert acks_in(transport.take()) == [(1, 2, True)]


def test_reconnecting_the_same_connection_starts_with_an_empty_read_buffer(monkeypatch):
    # py-amqp lets a Connection connect() again after its socket died; bytes
    # of a frame cut short on the dead socket must not prefix the new stream.
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    channel.callbacks["c"] = lambda m: None
    transport.sock.feed(deliver(1, "c", 1, b"x" * 500)[:-50])
    with pytest.raises(TimeoutError):
        conn.drain_events(timeout=0)
    transport.connected = False
    fresh = FakeTransport()

    def fake_connect(self: Any, callback: Any = None) -> None:
        # What py-amqp's connect does, minus the socket: new transport, then
        # frames are read through drain_events.
        self._transport = fresh
        self.on_inbound_frame = frame_handler(self, self.on_inbound_method)
        self.frame_writer = self._guarded_frame_writer(self, fresh)
        fresh.sock.feed(method(0, spec.Connection.Blocked, "s", ("low on memory",)))
        self.drain_events(timeout=0)

    monkeypatch.setattr(amqp.Connection, "connect", fake_connect)
    conn.connect()
    assert conn.is_blocked


# -- attack 2: frame parsing ------------------------------------------------------------


def test_byte_by_byte_interleaved_channels_heartbeats_and_frame_boundaries():
    frame_max = 4096
    chunk = frame_max - 8
    conn, transport = make_connection(frame_max)
    got: list[tuple[int, int, Any, dict]] = []
    for cid in (1, 2):
        channel = open_channel(conn, cid)
        channel.callbacks["c"] = lambda m, cid=cid: got.append(
            (cid, m.delivery_tag, m.body, dict(m.properties))
        )
    heartbeat = amqp_bytes(frame_max, (8, 0, None, None, None))

    def frames(cid: int, tag: int, body: bytes, **props: Any) -> list[bytes]:
        args = dumps("sLbss", ("c", tag, False, "ex", "rk"))
        data = amqp_bytes(
            frame_max, (1, cid, spec.Basic.Deliver, args, amqp.Message(body, **props))
        )
        parts, offset = [], 0
        while offset < len(data):
            size = int.from_bytes(data[offset + 3 : offset + 7], "big")
            parts.append(data[offset : offset + 8 + size])
            offset += 8 + size
        return parts

    sizes = [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 2 * chunk + 1, 3 * chunk - 1]
    expected = []
    stream = []
    for i, size in enumerate(sizes, start=1):
        body = bytes([i]) * size
        one = frames(1, i, body, content_type="application/x-test", priority=i % 3)
        other = frames(2, i, body[::-1], application_headers={"i": i, "n": {"l": [i, "s"]}})
        # Channel 2's whole delivery and a heartbeat sit between channel 1's
        # header and its body frames; another heartbeat between body frames.
        stream += [one[0], one[1], heartbeat, *other, *one[2:3], heartbeat, *one[3:]]
        mine = (
            1,
            i,
            body if size else "",
            {"content_type": "application/x-test", "priority": i % 3},
        )
        theirs = (
            2,
            i,
            body[::-1] if size else "",
            {"application_headers": {"i": i, "n": {"l": [i, "s"]}}},
        )
        # An empty body completes at its header, before channel 2's delivery.
        expected += [mine, theirs] if not size else [theirs, mine]
    data = b"".join(stream)
    for offset in range(len(data)):
        transport.sock.chunks.append(data[offset : offset + 1])
    for _ in range(len(data) * 2):
        try:
            conn.drain_events(timeout=0)
        except TimeoutError:
            break
    assert [(c, t, b) for c, t, b, _p in got] == [(c, t, b) for c, t, b, _p in expected]
    assert [p for *_, p in got] == [p for *_, p in expected]
    assert conn._partial == {}
    assert conn.reader.start == conn.reader.end


def test_broker_channel_close_mid_stream_with_held_acks():
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    got = []

    def callback(message: amqp.Message) -> None:
        got.append(message.delivery_tag)
        channel.basic_ack(message.delivery_tag)

    channel.callbacks["c"] = callback
    close = method(1, spec.Channel.Close, "BsBB", (406, "PRECONDITION_FAILED - boom", 60, 80))
    transport.sock.feed(
        deliver(1, "c", 1) + deliver(1, "c", 2) + close + method(1, spec.Channel.OpenOk, "s", ("",))
    )
    with pytest.raises(amqp.exceptions.PreconditionFailed):
        drain_all(conn)
    assert got == [1, 2]
    sent = written_methods(transport.take())
    # The acks made before the close was read go first (the broker discards
    # them, as it would have had py-amqp written them one by one), then
    # close-ok, then py-amqp reopens the channel.
    assert [sig for _c, sig, _p in sent] == [
        spec.Basic.Ack,
        spec.Channel.CloseOk,
        spec.Channel.Open,
    ]
    assert channel.is_open
    assert channel.acks.live == set() and conn.held_acks.pending == 0
    # Tags start again at 1 on the reopened channel and combine as before.
    channel.callbacks["c"] = callback
    transport.sock.feed(deliver(1, "c", 1) + deliver(1, "c", 2))
    drain_all(conn)
    assert got == [1, 2, 1, 2]
    assert acks_in(transport.take()) == [(1, 2, True)]


def test_broker_cancel_while_deliveries_are_buffered():
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    got = []
    cancelled = []
    channel.callbacks["c"] = got.append
    channel.cancel_callbacks["c"] = cancelled.append
    cancel = method(1, spec.Basic.Cancel, "sb", ("c", True))
    # Deliveries before the cancel reach the callback; one the broker had
    # already sent for the (now unknown) consumer is requeued, as py-amqp does.
    transport.sock.feed(deliver(1, "c", 1) + deliver(1, "c", 2) + cancel + deliver(1, "c", 3))
    drain_all(conn)
    assert [m.delivery_tag for m in got] == [1, 2]
    assert cancelled == ["c"]
    sent = written_methods(transport.take())
    assert [(sig, loads("Lb", p, 4)[0]) for _c, sig, p in sent] == [(spec.Basic.Reject, [3, True])]
    assert channel.acks.live == {1, 2}


class TimedSocket(FakeSocket):
    """A fake socket whose ``later`` chunks only arrive to a blocking read."""

    def __init__(self) -> None:
        super().__init__()
        self.later: list[bytes] = []
        self.timeout: float | None = None

    def recv_into(self, view: memoryview) -> int:
        if not self.chunks and self.timeout is None and self.later:
            self.chunks.append(self.later.pop(0))
        return super().recv_into(view)


class FakePoller:
    def __init__(self, sock: TimedSocket) -> None:
        self.sock = sock

    def poll(self, timeout: float) -> list:
        return [(0, 1)] if self.sock.chunks else []


def test_connection_blocked_while_publishing_holds_writes_until_unblocked():
    conn, transport = make_connection()
    sock = transport.sock = TimedSocket()

    @contextlib.contextmanager
    def having_timeout(timeout: float | None) -> Any:
        sock.timeout = timeout
        yield sock

    transport.having_timeout = having_timeout
    conn.reader.poller = FakePoller(sock)
    channel = open_channel(conn, 1)
    written_at_delivery = []
    channel.callbacks["c"] = lambda m: written_at_delivery.append(len(transport.written))
    sock.feed(method(0, spec.Connection.Blocked, "s", ("low on memory",)) + deliver(1, "c", 1))
    sock.later.append(deliver(1, "c", 2) + method(0, spec.Connection.Unblocked))
    message = amqp.Message(b"payload")
    for _ in range(connection.CHECK_EVERY - 1):
        channel.fast_publish(message, "", "q")
    before = len(transport.written)
    assert before == connection.CHECK_EVERY - 1 and not conn.is_blocked
    channel.fast_publish(message, "", "q")  # this one looks, sees blocked, waits
    assert not conn.is_blocked
    # Nothing was written while blocked; deliveries meanwhile were dispatched.
    assert written_at_delivery == [before, before]
    assert len(transport.written) == before + 1
    assert transport.written[-1] == conn.framer.frames(1, message, "", "q")


def test_frame_larger_than_the_read_buffer_split_everywhere():
    frame_max = 4 * reader.READ_SIZE
    conn, transport = make_connection(frame_max)
    channel = open_channel(conn, 1)
    got = []
    channel.callbacks["c"] = got.append
    body = bytes(range(256)) * (3 * reader.READ_SIZE // 256 + 7)
    data = deliver(1, "c", 1, b"small") + b"".join(
        amqp_bytes(
            frame_max,
            (
                1,
                1,
                spec.Basic.Deliver,
                dumps("sLbss", ("c", t, False, "", "q")),
                amqp.Message(body),
            ),
        )
        for t in (2, 3)
    )
    rng = random.Random(5)
    transport.sock.feed(data, rng)
    drain_all(conn)
    assert [m.body for m in got] == [b"small", body, body]


# -- attack 3: publish frames ---------------------------------------------------------------


def _publish_cases() -> list[tuple[dict, str, str]]:
    import datetime
    import decimal

    headers = {
        "int": -(2**40),
        "small": 7,
        "bool": True,
        "none": None,
        "float": -1.25,
        "dec": decimal.Decimal("3.14"),
        "when": datetime.datetime(2020, 1, 2, 3, 4, 5),
        "list": [1, "two", [3.0, {"four": None}], False],
        "table": {"nested": {"deeper": {"x": "\u2603"}}, "empty": {}},
        "bytes": b"\x00\xff",
        "\u00fcnicode key": "\u00e9t\u00e9",
    }
    props = [
        {"priority": 0, "delivery_mode": 1, "content_type": None, "content_encoding": None},
        {"priority": None, "delivery_mode": 2, "content_type": "application/json"},
        {"application_headers": headers, "priority": 0},
        {"application_headers": {"only": None}},
    ]
    keys = [("", "q"), ("\u00e9change", "r\u00f6ute.\u2603"), ("x" * 255, "k" * 255)]
    return [(p, e, r) for p in props for e, r in keys]


@pytest.mark.parametrize(("props", "exchange", "routing_key"), _publish_cases())
def test_publish_is_byte_identical_to_py_amqp_for_awkward_values(props, exchange, routing_key):
    conn, transport = make_connection(4096)
    channel = open_channel(conn, 5)
    for body in (b"", b"b" * 4088, "\u2603" * 3000):
        for mandatory in (False, True):
            try:
                expected = amqp_bytes(
                    4096,
                    (
                        1,
                        5,
                        spec.Basic.Publish,
                        dumps("Bssbb", (0, exchange, routing_key, mandatory, False)),
                        amqp.Message(body, **props),
                    ),
                )
            except TypeError:  # a str body with content_encoding None: py-amqp fails too
                with pytest.raises(TypeError):
                    channel.fast_publish(amqp.Message(body, **props), exchange, routing_key)
                assert transport.take() == b""
                continue
            for _ in range(2):  # the second one from the caches
                channel.fast_publish(amqp.Message(body, **props), exchange, routing_key, mandatory)
                assert transport.take() == expected


def test_backend_publish_matches_py_amqp_basic_publish():
    from types import SimpleNamespace

    from carrot.backends.pyamqplib import Backend

    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    backend = Backend(SimpleNamespace(connection=conn))
    backend._channel = channel
    headers = {"task": "t", "nested": {"a": [1, None]}}
    message = backend.prepare_message(b"{}", 2, priority=0, content_type="application/json")
    backend.publish(message, "ex\u00e9", "rk", mandatory=True, headers=headers)
    props = {
        "delivery_mode": 2,
        "priority": 0,
        "content_type": "application/json",
        "content_encoding": None,
        "application_headers": headers,
    }
    assert transport.take() == amqp_bytes(
        131072,
        (
            1,
            1,
            spec.Basic.Publish,
            dumps("Bssbb", (0, "ex\u00e9", "rk", True, False)),
            amqp.Message(b"{}", **props),
        ),
    )


def test_after_confirm_select_publish_frames_are_py_amqps():
    # py-amqp's basic_publish neither waits for a confirm after a manual
    # confirm_select (only with confirm_publish=True): same frames either way.
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    transport.sock.feed(method(1, spec.Confirm.SelectOk))
    channel.confirm_select()
    assert written_methods(transport.take()) == [(1, spec.Confirm.Select, b"\x00\x55\x00\x0a\x00")]
    channel.fast_publish(amqp.Message(b"m"), "", "q")
    assert transport.take() == amqp_bytes(
        131072,
        (1, 1, spec.Basic.Publish, dumps("Bssbb", (0, "", "q", False, False)), amqp.Message(b"m")),
    )
    # The broker's confirm goes to py-amqp's basic_ack event handlers.
    confirms = []
    channel.events["basic_ack"].add(lambda tag, multiple: confirms.append((tag, multiple)))
    transport.sock.feed(method(1, spec.Basic.Ack, "Lb", (1, False)))
    drain_all(conn)
    assert confirms == [(1, False)]


def test_confirm_publish_connection_falls_back_to_py_amqp_and_waits_for_the_confirm():
    conn, transport = make_connection()
    conn.confirm_publish = True
    channel = FastChannel(conn, 1)  # py-amqp picks basic_publish_confirm here
    channel.is_open = True
    transport.sock.feed(
        method(1, spec.Confirm.SelectOk) + method(1, spec.Basic.Ack, "Lb", (1, False))
    )
    channel.fast_publish(amqp.Message(b"m"), "", "q")
    sent = transport.take()
    assert written_methods(
        sent[
            : -len(
                amqp_bytes(
                    131072,
                    (
                        1,
                        1,
                        spec.Basic.Publish,
                        dumps("Bssbb", (0, "", "q", False, False)),
                        amqp.Message(b"m"),
                    ),
                )
            )
        ]
    ) == [(1, spec.Confirm.Select, b"\x00\x55\x00\x0a\x00")]
    assert transport.sock.chunks == []  # it waited for (and read) the confirm


# -- threads and long-held deliveries ----------------------------------------------------------


class BlockingSocket(FakeSocket):
    """A blocking read waits (bounded) until data is fed, like a real socket."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.waiting = threading.Event()

    def feed(self, data: bytes, rng: random.Random | None = None) -> None:
        super().feed(data, rng)
        self.arrived.set()

    def recv_into(self, view: memoryview) -> int:
        for _ in range(100):
            if self.chunks:
                break
            self.arrived.clear()
            self.waiting.set()
            self.arrived.wait(0.1)
        return super().recv_into(view)


def test_ack_from_another_thread_while_one_waits_in_drain_events_is_written():
    # A worker thread acks while the consuming thread is blocked reading the
    # socket (prefetch exhausted: the broker sends nothing until it sees an
    # ack). Holding that ack back would hang both until some frame arrives.
    conn, transport = make_connection()
    sock = transport.sock = BlockingSocket()
    channel = open_channel(conn, 1)
    handed_over: list = []
    channel.callbacks["c"] = handed_over.append
    sock.feed(deliver(1, "c", 1) + deliver(1, "c", 2))
    conn.drain_events(timeout=None)
    conn.drain_events(timeout=None)
    assert [m.delivery_tag for m in handed_over] == [1, 2]
    sock.waiting.clear()
    reader = threading.Thread(target=conn.drain_events, kwargs={"timeout": None})
    reader.start()
    try:
        assert sock.waiting.wait(10)  # the reader is blocked in recv
        for message in handed_over:
            channel.basic_ack(message.delivery_tag)  # from this (worker) thread
        assert acks_in(transport.take()) == [(1, 1, False), (1, 2, False)]
    finally:
        channel.callbacks["c"] = lambda m: None
        sock.feed(deliver(1, "c", 3))  # lets the reader return
        reader.join(10)
    assert not reader.is_alive()


def test_one_delivery_held_forever_does_not_grow_the_tracker():
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    for tag in range(1, 20001):
        channel.acks.delivered(tag)
        if tag > 1:
            channel.basic_ack(tag)
    assert len(channel.acks.live) == 1
    assert len(channel.acks.order) < 1000
    # Tag 1 is still the one the broker has outstanding; acking it is a single ack.
    transport.take()
    channel.basic_ack(1)
    assert acks_in(transport.take()) == [(1, 1, True)]


def test_acks_held_before_a_callback_raises_are_written():
    # Callback 1 acks, callback 2 raises (the application may die of it):
    # ack 1 must be on the wire, as py-amqp would have written it at once.
    conn, transport = make_connection()
    channel = open_channel(conn, 1)

    def callback(message: amqp.Message) -> None:
        if message.delivery_tag == 2:
            raise KeyError("bad message")
        channel.basic_ack(message.delivery_tag)

    channel.callbacks["c"] = callback
    transport.sock.feed(b"".join(deliver(1, "c", t) for t in (1, 2, 3)))
    conn.drain_events(timeout=0)
    assert transport.written == []  # held: delivery 2 is buffered whole
    with pytest.raises(KeyError):
        conn.drain_events(timeout=0)
    assert acks_in(transport.take()) == [(1, 1, True)]
    assert conn.held_acks.dispatching == 0


def test_stale_ack_after_the_broker_reopened_the_channel_is_what_py_amqp_writes():
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    held = []
    channel.callbacks["c"] = held.append
    close = method(1, spec.Channel.Close, "BsBB", (406, "PRECONDITION_FAILED", 60, 80))
    transport.sock.feed(deliver(1, "c", 1) + close + method(1, spec.Channel.OpenOk, "s", ("",)))
    with pytest.raises(amqp.exceptions.PreconditionFailed):
        drain_all(conn)
    transport.take()
    transport.sock.feed(deliver(1, "c", 1) + deliver(1, "c", 2))
    drain_all(conn)
    # The application acks the delivery it held from before the close (tag
    # 1 of the old channel): py-amqp writes basic.ack(1); so do we, and the
    # new tag 2 is not swept into a combined ack.
    held[0].channel.basic_ack(held[0].delivery_tag)
    assert acks_in(transport.take()) == [(1, 1, True)]
    assert channel.acks.live == {2}


def test_ack_of_a_no_ack_delivery_is_written_as_py_amqp_writes_it():
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    got: list = []
    channel.callbacks["a"] = got.append
    channel.callbacks["n"] = got.append
    channel.no_ack_consumers.add("n")
    transport.sock.feed(deliver(1, "a", 1) + deliver(1, "n", 2) + deliver(1, "a", 3))
    drain_all(conn)
    assert channel.acks.live == {1, 3}
    # A (wrong) ack of the no_ack delivery goes out at once, alone, as with
    # py-amqp (the broker answers PRECONDITION_FAILED either way).
    channel.basic_ack(2)
    assert acks_in(transport.take()) == [(1, 2, False)]
    # The combined ack over 1..3 is harmless: 2 is not outstanding at the broker.
    model = BrokerModel()
    for tag in (1, 3):
        model.delivered(1, tag)
    model.caller_acked[1] = {1, 3}
    channel.basic_ack(1)
    channel.basic_ack(3)
    model.apply(transport.take())
    assert model.outstanding[1] == set()


def test_delivery_with_a_surrogate_in_its_routing_key_decodes_like_py_amqp():
    # py-amqp encodes and decodes short strings with "surrogatepass": a
    # py-amqp publisher can send routing key "\ud800", and a py-amqp
    # consumer receives it. The fast path must not choke on it.
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    got: list = []
    channel.callbacks["c\udc80"] = got.append
    args = dumps("sLbss", ("c\udc80", 1, False, "ex\ud800", "rk\udfff"))
    transport.sock.feed(
        amqp_bytes(131072, (1, 1, spec.Basic.Deliver, args, amqp.Message(b"body")))
        + deliver(1, "c\udc80", 2)
    )
    drain_all(conn)
    assert [m.delivery_tag for m in got] == [1, 2]
    assert got[0].delivery_info["exchange"] == "ex\ud800"
    assert got[0].delivery_info["routing_key"] == "rk\udfff"
    assert got[0].body == b"body"


def test_publishing_thread_does_not_read_while_another_thread_is_in_drain_events():
    # A consumer thread waits in drain_events; a second thread publishes.
    # The publisher's periodic look at inbound frames must leave the socket
    # and the read buffer to the reader, or both parse the same bytes.
    conn, transport = make_connection()
    sock = transport.sock = BlockingSocket()
    conn.reader.poller = SimpleNamespaceLike(poll=lambda timeout: [(0, 1)])
    channel = open_channel(conn, 1)
    channel.callbacks["c"] = lambda m: None
    readers: list[int] = []
    real_before_wait = conn.reader.before_wait

    def spy() -> None:  # every read from the socket starts here
        readers.append(threading.get_ident())
        real_before_wait()

    conn.reader.before_wait = spy
    reader = threading.Thread(target=conn.drain_events, kwargs={"timeout": None})
    reader.start()
    try:
        assert sock.waiting.wait(10)
        for _ in range(connection.CHECK_EVERY * 2):
            channel.fast_publish(amqp.Message(b"m"), "", "q")
        assert len(transport.written) == connection.CHECK_EVERY * 2
    finally:
        sock.feed(deliver(1, "c", 1))
        reader.join(10)
    assert not reader.is_alive()
    assert set(readers) == {reader.ident}


class SimpleNamespaceLike:
    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def test_second_thread_waiting_to_read_returns_once_the_reader_dispatched():
    # Thread B waits (say for queue_declare-ok, or close-ok from close())
    # while thread A is reading: A dispatches the reply, B must notice
    # instead of then blocking on a socket that stays quiet.
    conn, transport = make_connection()
    sock = transport.sock = BlockingSocket()
    channel = open_channel(conn, 1)
    channel.callbacks["c"] = lambda m: None
    readers: list[int] = []
    real_before_wait = conn.reader.before_wait

    def spy() -> None:  # every read from the socket starts here
        readers.append(threading.get_ident())
        real_before_wait()

    conn.reader.before_wait = spy
    reader = threading.Thread(target=conn.drain_events, kwargs={"timeout": None})
    reader.start()
    assert sock.waiting.wait(10)
    waiter_done = threading.Event()

    def waiter() -> None:
        conn.drain_events(timeout=None)
        waiter_done.set()

    second = threading.Thread(target=waiter)
    second.start()
    try:
        sock.feed(deliver(1, "c", 1))
        assert waiter_done.wait(10)
    finally:
        sock.feed(deliver(1, "c", 2))  # frees whichever thread still reads
        reader.join(10)
        second.join(10)
    assert not reader.is_alive() and not second.is_alive()
    assert set(readers) == {reader.ident}
    # A timeout still applies while waiting for the other reader.
    sock.chunks.clear()
    sock.waiting.clear()
    reader = threading.Thread(target=conn.drain_events, kwargs={"timeout": None})
    reader.start()
    assert sock.waiting.wait(10)
    try:
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.2)
    finally:
        sock.feed(deliver(1, "c", 3))
        reader.join(10)


def test_holding_an_ack_waits_for_another_threads_write():
    # Another thread writing a frame takes the held-back acks under the write
    # lock; holding an ack changes the tracker under the same lock, so neither
    # can see the other half-done (an ack lost between take() and reset()).
    conn, transport = make_connection()
    channel = open_channel(conn, 1)
    channel.acks.delivered(1)
    done = threading.Event()

    def ack() -> None:
        channel.basic_ack(1)
        done.set()

    worker = threading.Thread(target=ack, daemon=True)
    with conn.write_lock:
        worker.start()
        assert not done.wait(0.2)
        # Still untouched while the other write is in progress.
        assert channel.acks.live == {1}, "the ack changed the tracker without the write lock"
        assert channel.acks.pending == 0
    worker.join(10)
    assert done.is_set()
    assert transport.take() == ack_frames(1, [], 1)


# -- frame and body limits (hostile or broken brokers) --------------------------------


class CountingSocket(FakeSocket):
    """A FakeSocket that counts reads (a limit must not wait for more data)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def recv_into(self, view: memoryview) -> int:
        self.reads += 1
        return super().recv_into(view)


def limited_connection(**kwargs: Any) -> tuple[FastConnection, FakeTransport, CountingSocket]:
    conn = FastConnection(host="fake:5672", **kwargs)
    transport = FakeTransport()
    transport.sock = sock = CountingSocket()
    conn._transport = transport
    conn.on_inbound_frame = frame_handler(conn, conn.on_inbound_method)
    conn.frame_writer = conn._guarded_frame_writer(conn, transport)
    conn.frame_max = 131072
    conn.tuned()
    return conn, transport, sock


@pytest.mark.parametrize("size", [131072 - 7, 131072, 2**31, 2**32 - 1])
def test_a_frame_over_frame_max_fails_at_once_with_frame_error_501(size):
    conn, _transport, sock = limited_connection()
    open_channel(conn, 1)
    # Only the 7 header octets arrive: the error must not wait for the payload.
    sock.feed(bytes([3]) + (1).to_bytes(2, "big") + size.to_bytes(4, "big"))
    with pytest.raises(amqp.exceptions.FrameError) as info:
        conn.drain_events(timeout=None)
    assert info.value.code == 501
    assert f"frame of {size} bytes" in str(info.value)
    assert sock.reads == 1
    assert len(conn.reader.buf) == reader.READ_SIZE  # nothing allocated for it
    assert conn._transport is None  # the connection is collected: no later read hangs


def test_a_frame_of_exactly_frame_max_is_accepted():
    conn, _transport, sock = limited_connection()
    channel = open_channel(conn, 1)
    got: list[Any] = []
    channel.callbacks["c"] = got.append
    body = b"x" * (131072 - 8)
    sock.feed(deliver(1, "c", 1, body))
    conn.drain_events(timeout=None)
    assert got[0].body == body


@pytest.mark.parametrize("whole", [True, False], ids=["buffered", "header-alone"])
def test_a_body_over_max_body_size_fails_before_any_body_arrives(whole):
    conn, _transport, sock = limited_connection(max_body_size=100)
    channel = open_channel(conn, 1)
    channel.callbacks["c"] = lambda m: pytest.fail("delivered")
    data = deliver(1, "c", 1, b"y" * 101)
    header_end = data.index(b"\xce", data.index(b"\xce") + 1) + 1  # method + header frames
    sock.feed(data if whole else data[:header_end])
    with pytest.raises(amqp.exceptions.FrameError) as info:
        conn.drain_events(timeout=None)
    assert info.value.code == 501
    assert "body of 101 bytes, over max_body_size (100)" in str(info.value)
    assert conn._partial == {}
    assert sock.reads == 1


def test_a_body_of_exactly_max_body_size_is_accepted():
    conn, _transport, sock = limited_connection(max_body_size=100)
    channel = open_channel(conn, 1)
    got: list[Any] = []
    channel.callbacks["c"] = got.append
    sock.feed(deliver(1, "c", 1, b"y" * 100))
    conn.drain_events(timeout=None)
    assert got[0].body == b"y" * 100


def test_a_2_to_the_62_byte_body_in_basic_get_ok_fails_at_once():
    # Content py-amqp assembles (basic.get-ok) gets the same limit, default 512 MiB.
    conn, _transport, sock = limited_connection()
    assert conn.max_body_size == 512 * 1024 * 1024
    open_channel(conn, 1)
    get_ok = method(1, spec.Basic.GetOk, "Lbssl", (1, False, "ex", "rk", 0))
    header_payload = b"\x00\x3c\x00\x00" + (2**62).to_bytes(8, "big") + b"\x00\x00"
    header = bytes([2]) + (1).to_bytes(2, "big") + len(header_payload).to_bytes(4, "big")
    sock.feed(get_ok + header + header_payload + b"\xce")
    with pytest.raises(amqp.exceptions.FrameError, match=r"body of 4611686018427387904 bytes"):
        for _ in range(3):
            conn.drain_events(timeout=None)


@pytest.mark.parametrize("bad", [-1, 0, "big", 1.5, True, None])
def test_max_body_size_must_be_a_byte_count(bad):
    with pytest.raises(ValueError, match=f"max_body_size must be .* not {bad!r}"):
        FastConnection(host="fake:5672", max_body_size=bad)
