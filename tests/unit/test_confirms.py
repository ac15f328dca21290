"""carrot.confirms.ConfirmWindow: the bookkeeping of publisher confirms, no broker."""

import random
import threading
from types import SimpleNamespace

import pytest

from carrot.confirms import ConfirmWindow
from carrot.exceptions import ConfirmTimeoutError, MessageNacked, MessageReturned


def msg(body, **properties):
    return SimpleNamespace(body=body, properties=properties)


def publish(window, n, exchange="ex", routing_key="rk"):
    return [window.published(msg(f"m{i}".encode()), exchange, routing_key) for i in range(n)]


def test_numbers_from_one_in_publish_order():
    window = ConfirmWindow(10)
    entries = publish(window, 3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert len(window) == 3


def test_single_and_multiple_acks_settle_exactly_those():
    window = ConfirmWindow(10)
    publish(window, 5)
    window.acked(2)
    assert len(window) == 4
    window.acked(4, multiple=True)  # 1, 3, 4 (2 already)
    assert len(window) == 1
    window.acked(5)
    assert len(window) == 0
    window.raise_failures()  # nothing to raise


def test_out_of_order_single_acks_keep_the_order_queue_bounded():
    window = ConfirmWindow(1000)
    publish(window, 1000)
    for tag in range(1000, 0, -1):
        window.acked(tag)
    assert len(window) == 0
    assert len(window._order) == 0


def test_ack_of_unknown_or_repeated_tag_is_ignored():
    window = ConfirmWindow(10)
    publish(window, 2)
    window.acked(1)
    window.acked(1)
    window.acked(99)
    assert len(window) == 1


def test_nack_raises_once_with_the_refused_messages():
    window = ConfirmWindow(10)
    entries = publish(window, 3)
    window.nacked(2, multiple=True)
    with pytest.raises(MessageNacked) as info:
        window.raise_failures()
    assert info.value.messages == entries[:2]
    assert info.value.messages[0].body == b"m0"
    assert "refused 2 message(s)" in str(info.value)
    window.raise_failures()  # cleared
    assert len(window) == 1


def test_return_before_ack_raises_message_returned():
    window = ConfirmWindow(10)
    publish(window, 2, routing_key="nowhere")
    assert window.returned("ex", "nowhere", b"m1", 312, "NO_ROUTE")
    window.acked(2, multiple=True)
    with pytest.raises(MessageReturned) as info:
        window.raise_failures()
    assert [m.seq for m in info.value.messages] == [2]
    assert info.value.messages[0].returned == (312, "NO_ROUTE")
    assert "312 NO_ROUTE" in str(info.value)


def test_return_matches_oldest_unmarked_identical_message():
    window = ConfirmWindow(10)
    first = window.published(msg(b"same"), "ex", "rk")
    second = window.published(msg(b"same"), "ex", "rk")
    assert window.returned("ex", "rk", b"same", 312, "NO_ROUTE")
    assert window.returned("ex", "rk", b"same", 312, "NO_ROUTE")
    assert first.returned and second.returned
    assert not window.returned("ex", "rk", b"same", 312, "NO_ROUTE")


def test_message_id_in_error_text():
    window = ConfirmWindow(1)
    window.published(msg(b"x", message_id="abc-1"), "ex", "rk")
    window.nacked(1)
    with pytest.raises(MessageNacked, match="abc-1"):
        window.raise_failures()


def test_wait_pumps_until_enough_are_confirmed():
    window = ConfirmWindow(3)
    publish(window, 3)
    calls = []

    def pump(seconds):
        calls.append(seconds)
        window.acked(len(calls))

    window.wait_for_room(pump)
    assert len(window) == 2
    window.wait(0, pump)
    assert len(window) == 0
    assert len(calls) == 3


def test_wait_times_out_with_a_timeout_error():
    window = ConfirmWindow(1)
    publish(window, 1)

    def pump(seconds):
        assert 0 < seconds <= 1.0
        raise TimeoutError

    with pytest.raises(ConfirmTimeoutError) as info:
        window.wait(0, pump, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert "1 message(s) still unconfirmed after 0.05 s" in str(info.value)


def test_unpublished_takes_back_only_the_newest():
    window = ConfirmWindow(10)
    a, b = publish(window, 2)
    window.unpublished(a)  # not the newest: kept
    assert len(window) == 2
    window.unpublished(b)
    assert len(window) == 1
    assert window.published(msg(b"again"), "ex", "rk").seq == 2


def test_reset_returns_unconfirmed_in_order_and_renumbers():
    window = ConfirmWindow(10)
    entries = publish(window, 4)
    window.acked(2)
    assert window.reset() == [entries[0], entries[2], entries[3]]
    assert len(window) == 0
    assert window.published(msg(b"n"), "ex", "rk").seq == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "8", True, None])
def test_bad_window_size_names_the_value(bad):
    with pytest.raises((TypeError, ValueError), match=repr(bad).replace(".", r"\.")):
        ConfirmWindow(bad)


@pytest.mark.parametrize("seed", range(30))
def test_against_a_model_of_the_broker(seed):
    """Random acks, nacks (single, multiple, out of order): each message settled once."""
    rnd = random.Random(seed)
    window = ConfirmWindow(64)
    outstanding: set[int] = set()
    acked: set[int] = set()
    nacked: set[int] = set()
    for _ in range(400):
        if rnd.random() < 0.55 or not outstanding:
            outstanding.add(window.published(msg(b"x"), "ex", "rk").seq)
            continue
        tag = rnd.choice(sorted(outstanding))
        multiple = rnd.random() < 0.3
        covered = {t for t in outstanding if t <= tag} if multiple else {tag}
        if rnd.random() < 0.2:
            window.nacked(tag, multiple)
            nacked |= covered
        else:
            window.acked(tag, multiple)
            acked |= covered
        outstanding -= covered
        assert len(window) == len(outstanding)
    got_nacked: set[int] = set()
    try:
        window.raise_failures()
    except MessageNacked as exc:
        got_nacked = {m.seq for m in exc.messages}
    assert got_nacked == nacked
    assert not acked & nacked
    assert {e.seq for e in window.reset()} == outstanding


def test_answers_from_another_thread_wake_the_waiter():
    window = ConfirmWindow(1)
    publish(window, 1)
    arrived = threading.Event()

    def reader():
        arrived.wait(5)
        window.acked(1)

    thread = threading.Thread(target=reader)
    thread.start()

    def pump(seconds):
        arrived.set()
        thread.join(seconds)

    window.wait(0, pump, timeout=5)
    thread.join(5)
    assert len(window) == 0
