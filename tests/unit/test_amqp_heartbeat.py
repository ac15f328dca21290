"""carrot.backends._amqp.heartbeat and the bounded close, without a socket.

The monitor's decisions are driven tick by tick with a fake clock, a fake
probe (pending bytes, writability, shutdown) and a fake connection.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import socket
import struct
import threading
import time
from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.exceptions import ConnectionForced
from fastpath_fakes import FakeTransport, make_connection

from carrot.backends._amqp import heartbeat
from carrot.backends._amqp.heartbeat import HEARTBEAT_FRAME, HeartbeatMonitor, Watch
from carrot.backends._amqp.plain import PlainConnection, bounded_waits

# -- wire value -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "wire"),
    [(0, 0), (None, 0), (1, 1), (1.0, 1), (1.5, 2), (0.2, 1), (60, 60), (10**6, 65535)],
)
def test_wire_heartbeat_is_whole_seconds_rounded_up(seconds, wire):
    assert heartbeat.wire_heartbeat(seconds) == wire


# -- the watch ------------------------------------------------------------------


def test_watch_hears_a_peer_through_frames_read_or_bytes_arriving_unread():
    watch = Watch(1.0, now=0.0)
    watch.observe(0.0, recv_count=0, pending=0, sent_count=0)
    watch.observe(1.5, recv_count=1, pending=0, sent_count=0)  # a frame read
    assert watch.heard_at == 1.5
    watch.observe(3.0, recv_count=1, pending=8, sent_count=0)  # 8 bytes unread
    assert watch.heard_at == 3.0
    watch.observe(4.0, recv_count=1, pending=8, sent_count=0)  # nothing new
    assert watch.heard_at == 3.0 and watch.silence() == 1.0


def test_watch_a_heartbeat_is_due_after_half_the_interval_without_writes():
    watch = Watch(2.0, now=0.0)
    watch.observe(0.9, 0, 0, 0)
    assert not watch.heartbeat_due()
    watch.observe(1.0, 0, 0, 0)
    assert watch.heartbeat_due()
    watch.heartbeat_sent()
    watch.observe(1.5, 0, 0, 0)
    assert not watch.heartbeat_due()
    watch.observe(2.5, 0, 0, 5)  # the application wrote frames: no heartbeat needed
    watch.observe(3.4, 0, 0, 5)
    assert not watch.heartbeat_due()


def test_watch_silence_with_nothing_unread_loses_the_peer_after_two_intervals():
    watch = Watch(1.0, now=0.0)
    watch.observe(0.0, 0, 0, 0)
    for now in (0.5, 1.0, 1.5, 2.0):
        watch.observe(now, 0, 0, now)  # we keep writing; the peer says nothing
        assert not watch.peer_lost()
    watch.observe(2.01, 0, 0, 99)
    assert watch.peer_lost()


def test_watch_unread_bytes_keep_a_connection_whose_writes_go_out():
    # The application is busy elsewhere; the broker's bytes wait unread.
    watch = Watch(1.0, now=0.0)
    watch.observe(0.0, 0, 16, 0)
    for step in range(1, 50):
        watch.observe(step * 0.25, 0, 16, 0)
        if watch.heartbeat_due():
            watch.heartbeat_sent()
        assert not watch.peer_lost()


def test_watch_unread_bytes_and_a_stuck_write_lose_the_peer():
    watch = Watch(1.0, now=0.0)
    watch.observe(0.0, 0, 16, 0)
    watch.observe(1.9, 0, 16, 0)  # nothing written since 0.0: a write is stuck
    assert not watch.peer_lost()
    watch.observe(2.1, 0, 16, 0)
    assert watch.peer_lost()


# -- the monitor ----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeProbe:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.pending_bytes = 0
        self.is_writable = True
        self.shut = False

    def pending(self) -> int:
        return self.pending_bytes

    def writable(self) -> bool:
        return self.is_writable

    def shutdown(self) -> None:
        self.shut = True


class FailingTransport(FakeTransport):
    def __init__(self, errno_: int) -> None:
        super().__init__()
        self.errno = errno_

    def write(self, data: Any) -> None:
        if self.errno not in (errno.EAGAIN,):
            self.connected = False
        raise OSError(self.errno, "write failed")


class FakeConnection:
    host = "fake:5672"

    def __init__(self) -> None:
        self.write_lock = threading.Lock()
        self.bytes_recv = 0
        self.bytes_sent = 0
        self.heartbeat_lost: str | None = None


def monitor_for(
    interval: float = 1.0, transport: Any = None
) -> tuple[HeartbeatMonitor, FakeConnection, Any, FakeClock]:
    connection = FakeConnection()
    transport = transport or FakeTransport()
    clock = FakeClock()
    monitor = HeartbeatMonitor(connection, transport, interval, clock=clock, probe=FakeProbe)
    monitor._keep = connection  # type: ignore[attr-defined]  # the monitor holds it weakly
    return monitor, connection, transport, clock


def test_monitor_sends_a_heartbeat_frame_when_nothing_was_written():
    monitor, conn, transport, clock = monitor_for(interval=2.0)
    clock.now += 0.5
    assert monitor.check()
    assert transport.written == []
    clock.now += 0.6  # 1.1 s > interval / 2
    assert monitor.check()
    assert transport.written == [HEARTBEAT_FRAME]
    clock.now += 0.5
    conn.bytes_sent += 1  # the application wrote: that is a heartbeat too
    assert monitor.check()
    clock.now += 0.5
    assert monitor.check()
    assert transport.written == [HEARTBEAT_FRAME]


def test_monitor_never_waits_for_the_write_lock_or_a_full_socket():
    monitor, conn, transport, clock = monitor_for()
    clock.now += 0.6
    with conn.write_lock:  # another thread is writing
        assert monitor.check()
    assert transport.written == []
    monitor.probe.is_writable = False
    clock.now += 0.1
    assert monitor.check()
    assert transport.written == []
    assert not conn.write_lock.locked()
    monitor.probe.is_writable = True
    clock.now += 0.1
    assert monitor.check()
    assert transport.written == [HEARTBEAT_FRAME]


def test_monitor_gives_a_silent_peer_up_by_shutting_the_socket_down():
    monitor, conn, transport, clock = monitor_for(interval=1.0)
    for _ in range(8):
        clock.now += 0.25
        assert monitor.check()
    clock.now += 0.1  # 2.1 s without a byte from the peer
    assert not monitor.check()
    assert monitor.probe.shut
    assert transport.connected is False
    assert "no data from the broker for 2.1 s (heartbeat 1 s)" in conn.heartbeat_lost


def test_monitor_keeps_a_peer_that_sends_heartbeats():
    monitor, conn, _, clock = monitor_for(interval=1.0)
    for step in range(40):
        clock.now += 0.25
        if step % 2:
            monitor.probe.pending_bytes += 8  # the broker's heartbeat, unread
        assert monitor.check()
    assert not monitor.probe.shut and conn.heartbeat_lost is None


def test_monitor_stops_when_the_transport_is_gone_or_a_write_fails():
    monitor, _, transport, _ = monitor_for()
    transport.connected = False
    assert not monitor.check()
    monitor, _, transport, clock = monitor_for(transport=FailingTransport(errno.EPIPE))
    clock.now += 0.6
    assert not monitor.check()
    monitor, _, transport, clock = monitor_for(transport=FailingTransport(errno.EAGAIN))
    clock.now += 0.6
    assert monitor.check()  # would block: try again next tick


def test_monitor_holds_its_connection_weakly():
    connection = FakeConnection()
    monitor = HeartbeatMonitor(connection, FakeTransport(), 1.0, probe=FakeProbe)
    del connection
    gc.collect()
    assert not monitor.check()


def test_monitor_rejects_a_non_positive_interval():
    with pytest.raises(ValueError, match="heartbeat interval must be > 0, not 0"):
        HeartbeatMonitor(FakeConnection(), FakeTransport(), 0, probe=FakeProbe)


def test_monitor_thread_is_a_named_daemon_and_ends_on_stop():
    connection = FakeConnection()
    transport = FakeTransport()
    monitor = HeartbeatMonitor(connection, transport, 0.04, probe=FakeProbe).start()
    assert monitor.thread.daemon
    assert monitor.thread.name == "carrot-heartbeat-fake:5672"
    assert monitor.tick == 0.01
    deadline = time.monotonic() + 5
    while not transport.written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert HEARTBEAT_FRAME in transport.written
    monitor.stop()
    assert not monitor.thread.is_alive()


def test_monitor_thread_ends_by_itself_when_the_peer_is_lost():
    connection = FakeConnection()
    monitor = HeartbeatMonitor(connection, FakeTransport(), 0.04, probe=FakeProbe).start()
    monitor.thread.join(5)
    assert not monitor.thread.is_alive()
    assert connection.heartbeat_lost is not None and monitor.probe.shut


# -- the connection ---------------------------------------------------------------


class ClosableTransport(FakeTransport):
    closed = False

    def __init__(self) -> None:
        super().__init__()
        self.sock.shutdown = self.shutdown  # type: ignore[attr-defined]
        self.shut: list[int] = []

    def shutdown(self, how: int) -> None:
        self.shut.append(how)

    def close(self) -> None:
        self.closed = True
        self.connected = False


def closable_connection(**kwargs: Any) -> tuple[Any, ClosableTransport]:
    conn, _ = make_connection()
    transport = ClosableTransport()
    conn._transport = transport
    conn.frame_writer = conn._guarded_frame_writer(conn, transport)
    conn.connect_timeout = kwargs.get("connect_timeout", 0.2)
    return conn, transport


def test_close_without_close_ok_drops_the_socket_and_raises_timeout():
    conn, transport = closable_connection()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.close()
    assert time.monotonic() - started < 1
    assert transport.closed and transport.shut == [socket.SHUT_RDWR]
    assert not conn.connected
    assert transport.written[0][:1] == b"\x01"  # connection.close went out first
    conn.close()  # closed already: nothing to do


def test_close_of_a_connection_known_broken_only_collects():
    conn, transport = closable_connection()
    transport.connected = False
    conn.close()
    assert transport.closed and transport.written == []


def test_close_waits_for_close_ok():
    conn, transport = closable_connection()
    close_ok = amqp_frame(spec.Connection.CloseOk)
    transport.sock.feed(close_ok)
    conn.close()
    assert transport.closed


def amqp_frame(method_sig: tuple[int, int]) -> bytes:
    payload = struct.pack(">HH", *method_sig)
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"


def test_a_read_error_after_the_monitor_gave_up_raises_connection_forced():
    conn, transport = closable_connection()

    def broken(view: Any) -> int:
        raise OSError("Server unexpectedly closed connection")

    transport.sock.recv_into = broken
    with pytest.raises(OSError, match="unexpectedly"):
        conn.drain_events(timeout=0)
    conn.heartbeat_lost = "no data from the broker for 2.1 s (heartbeat 1 s): connection lost"
    with pytest.raises(ConnectionForced, match="no data from the broker") as caught:
        conn.drain_events(timeout=0)
    assert isinstance(caught.value.__cause__, OSError)
    assert isinstance(caught.value, amqp.Connection.connection_errors)


def test_plain_connection_asks_for_whole_seconds_and_guards_its_writes():
    conn = PlainConnection(host="fake:5672", heartbeat=1.5)
    assert conn.heartbeat_requested == 1.5
    assert conn.client_heartbeat == 2
    assert isinstance(conn.write_lock, type(threading.Lock()))
    assert PlainConnection(host="fake:5672").client_heartbeat == 0


def test_collect_stops_the_monitor_before_closing_the_socket():
    conn, transport = closable_connection()
    order: list[str] = []

    class Monitor:
        def stop(self) -> None:
            order.append("stop" if not transport.closed else "stop after close")

    conn.heartbeat_monitor = Monitor()
    conn.collect()
    assert order == ["stop"] and transport.closed
    assert conn.heartbeat_monitor is None


class TimeoutRecordingTransport(ClosableTransport):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    @contextlib.contextmanager
    def having_timeout(self, timeout: float | None) -> Any:
        self.timeouts.append(timeout)
        yield self.sock


def test_bounded_waits_sets_the_sockets_timeout_for_the_block():
    conn, _ = make_connection()
    transport = TimeoutRecordingTransport()
    conn._transport = transport
    with bounded_waits(conn, 1.5):
        assert transport.timeouts == [1.5]
    conn._transport = None
    with bounded_waits(conn, 1.5):  # collected: nothing to bound
        pass
    assert transport.timeouts == [1.5]
