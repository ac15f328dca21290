"""The carrot command line against the local RabbitMQ (``python -m carrot`` subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rabbitmq

REPO = Path(__file__).resolve().parents[2]
URL = "amqp://guest:guest@127.0.0.1:5672//"


def run_carrot(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "carrot", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


def test_ping_prints_server_and_latency():
    result = run_carrot("ping", URL)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.startswith("connected to amqp://guest:***@127.0.0.1:5672//: RabbitMQ ")
    assert "round trip (channel open + close) x3: min " in out
    assert "guest:guest" not in out


def test_publish_then_consume_round_trip(unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    first = run_carrot("publish", URL, "hello carrot", "--declare-queue", queue)
    assert first.returncode == 0, first.stderr
    assert f"routing key {queue!r}".encode() in first.stdout
    second = run_carrot(
        "publish", URL, '{"n": [1, 2]}', "--serializer", "pickle", "--routing-key", queue
    )
    assert second.returncode == 0, second.stderr
    third = run_carrot("publish", URL, "--routing-key", queue, stdin=b"from stdin")
    assert third.returncode == 0, third.stderr

    consumed = run_carrot("consume", URL, "--queue", queue, "--count", "3", "--timeout", "10")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.decode().splitlines() == [
        "hello carrot",
        "{'n': [1, 2]}",
        "from stdin",
    ]
    # All three were acked: the queue is empty now.
    empty = run_carrot("consume", URL, "--queue", queue, "--timeout", "0.2")
    assert empty.returncode == 2
    assert empty.stdout == b""
    assert f"no message on queue {queue!r}".encode() in empty.stderr


def test_consume_no_ack_count_takes_only_count(unique, amqp_cleanup):
    queue = amqp_cleanup.queue(unique)
    for body in ("one", "two", "three"):
        result = run_carrot("publish", URL, body, "--declare-queue", queue)
        assert result.returncode == 0, result.stderr
    taken = run_carrot("consume", URL, "--queue", queue, "--count", "2", "--no-ack")
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout == b"one\ntwo\n"
    rest = run_carrot("consume", URL, "--queue", queue, "--timeout", "1")
    assert rest.stdout == b"three\n"


def test_publish_to_missing_exchange_is_one_line(unique):
    result = run_carrot("publish", URL, "x", "--exchange", unique)
    assert result.returncode == 1
    assert (
        result.stderr
        == (
            f"carrot: exchange {unique!r} not found on amqp://guest:***@127.0.0.1:5672//\n"
        ).encode()
    )


def test_consume_missing_queue_is_one_line(unique):
    result = run_carrot("consume", URL, "--queue", unique, "--timeout", "0.1")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert f"queue {unique!r} not found".encode() in result.stderr


def test_wrong_password_is_one_line():
    result = run_carrot("ping", "amqp://guest:not-the-password@127.0.0.1:5672//")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert result.stderr.startswith(
        b"carrot: cannot connect to amqp://guest:***@127.0.0.1:5672//: "
    )
    assert b"ACCESS_REFUSED" in result.stderr
    assert b"not-the-password" not in result.stderr + result.stdout
    assert b"Traceback" not in result.stderr


def test_unknown_vhost_is_one_line():
    result = run_carrot("ping", "amqp://guest:guest@127.0.0.1:5672/carrot-no-such-vhost")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert b"vhost carrot-no-such-vhost not found" in result.stderr


def test_refused_port_is_one_line():
    result = run_carrot("ping", "amqp://guest:secret@127.0.0.1:1//")
    assert result.returncode == 1
    assert result.stderr == (
        b"carrot: cannot connect to amqp://guest:***@127.0.0.1:1//: Connection refused\n"
    )


def test_refused_port_with_debug_shows_traceback():
    result = run_carrot("--debug", "ping", "amqp://guest:secret@127.0.0.1:1//")
    assert result.returncode == 1
    assert b"Traceback (most recent call last)" in result.stderr
    assert b"ConnectionRefusedError" in result.stderr
    assert b"secret" not in result.stderr


def test_demo_on_rabbitmq():
    result = run_carrot("demo", "--broker", URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    assert b"round trip OK: 10 messages, 5 serializers, backend amqp" in result.stdout


def test_bench_on_rabbitmq():
    result = run_carrot("bench", "--broker", URL, "--count", "500", "--size", "64")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "publish: 500 messages in " in out
    assert "consume: 500 messages in " in out
