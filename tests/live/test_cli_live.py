"""The carrot command line against the local brokers (``python -m carrot`` subprocesses).

RabbitMQ over AMQP (py-amqp and pika) and STOMP, and Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.rabbitmq
def test_ping_prints_server_and_latency():
    result = run_carrot("ping", URL)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.startswith("connected to amqp://guest:***@127.0.0.1:5672//: RabbitMQ ")
    assert "round trip (channel open + close) x3: min " in out
    assert "guest:guest" not in out


@pytest.mark.rabbitmq
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
    assert empty.returncode == 3  # not 2, the usage error
    assert empty.stdout == b""
    assert f"no message on queue {queue!r}".encode() in empty.stderr


@pytest.mark.rabbitmq
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


@pytest.mark.rabbitmq
def test_publish_to_missing_exchange_is_one_line(unique):
    result = run_carrot("publish", URL, "x", "--exchange", unique)
    assert result.returncode == 1
    assert (
        result.stderr
        == (
            f"carrot: exchange {unique!r} not found on amqp://guest:***@127.0.0.1:5672//\n"
        ).encode()
    )


@pytest.mark.rabbitmq
@pytest.mark.parametrize("url", [URL, "pika://guest:guest@127.0.0.1:5672//"])
@pytest.mark.parametrize("exchange", ["", "amq.direct"])
def test_publish_with_no_queue_bound_is_unroutable_not_published(url, exchange, unique):
    result = run_carrot("publish", url, "x", "--exchange", exchange, "--routing-key", unique)
    assert result.returncode == 1
    assert result.stdout == b""  # no "published"
    shown = url.replace("guest:guest", "guest:***")
    assert result.stderr.decode() == (
        f"carrot: unroutable: no queue is bound to exchange {exchange!r} for routing key "
        f"{unique!r} on {shown}, so the broker returned the message (NO_ROUTE (312)); "
        "bind a queue, or use --declare-queue\n"
    )


@pytest.mark.rabbitmq
def test_consume_missing_queue_is_one_line(unique):
    result = run_carrot("consume", URL, "--queue", unique, "--timeout", "0.1")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert f"queue {unique!r} not found".encode() in result.stderr


@pytest.mark.rabbitmq
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


@pytest.mark.rabbitmq
def test_unknown_vhost_is_one_line():
    result = run_carrot("ping", "amqp://guest:guest@127.0.0.1:5672/carrot-no-such-vhost")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert b"vhost carrot-no-such-vhost not found" in result.stderr


@pytest.mark.rabbitmq
def test_refused_port_is_one_line():
    result = run_carrot("ping", "amqp://guest:secret@127.0.0.1:1//")
    assert result.returncode == 1
    assert result.stderr == (
        b"carrot: cannot connect to amqp://guest:***@127.0.0.1:1//: Connection refused\n"
    )


@pytest.mark.rabbitmq
def test_refused_port_with_debug_shows_traceback():
    result = run_carrot("--debug", "ping", "amqp://guest:secret@127.0.0.1:1//")
    assert result.returncode == 1
    assert b"Traceback (most recent call last)" in result.stderr
    assert b"ConnectionRefusedError" in result.stderr
    assert b"secret" not in result.stderr


@pytest.mark.rabbitmq
def test_demo_on_rabbitmq():
    result = run_carrot("demo", "--broker", URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    assert b"round trip OK: 10 messages, 5 serializers, backend amqp" in result.stdout


@pytest.mark.rabbitmq
def test_bench_on_rabbitmq():
    result = run_carrot("bench", "--broker", URL, "--count", "500", "--size", "64")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "publish: 500 messages in " in out
    assert "consume: 500 messages in " in out


# -- the other backends' URLs ---------------------------------------------------------

PIKA_URL = "pika://guest:guest@127.0.0.1:5672//"
STOMP_URL = "stomp://guest:guest@127.0.0.1:61613//"
REDIS_URL = "redis://127.0.0.1:6379/0"


def demo_queue(stdout: bytes) -> str:
    """The queue name ``demo`` printed on its second line."""
    line = stdout.decode().splitlines()[1]
    assert line.startswith("queue carrot.demo."), line
    return line.split()[1]


def assert_amqp_queue_gone(amqp_connection, queue: str) -> None:
    assert not amqp_connection.create_backend().queue_exists(queue)


@pytest.mark.rabbitmq
def test_ping_pika():
    result = run_carrot("ping", PIKA_URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.startswith("connected to pika://guest:***@127.0.0.1:5672//: RabbitMQ ")
    assert "round trip (channel open + close) x2: min " in out
    assert "guest:guest" not in out


@pytest.mark.rabbitmq
def test_demo_on_pika(amqp_connection):
    result = run_carrot("demo", "--broker", PIKA_URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    assert b"round trip OK: 10 messages, 5 serializers, backend pika" in result.stdout
    assert_amqp_queue_gone(amqp_connection, demo_queue(result.stdout))


@pytest.mark.rabbitmq
def test_publish_to_missing_exchange_on_pika_is_one_line(unique):
    result = run_carrot("publish", PIKA_URL, "x", "--exchange", unique)
    assert result.returncode == 1
    assert (
        result.stderr
        == (
            f"carrot: exchange {unique!r} not found on pika://guest:***@127.0.0.1:5672//\n"
        ).encode()
    )


@pytest.mark.rabbitmq
def test_wrong_password_on_pika_is_masked():
    result = run_carrot("ping", "pika://guest:not-the-password@127.0.0.1:5672//")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert result.stderr.startswith(b"carrot: cannot connect to pika://guest:***@127.0.0.1:5672//")
    assert b"not-the-password" not in result.stderr + result.stdout


@pytest.mark.stomp
def test_ping_stomp():
    result = run_carrot("ping", STOMP_URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.startswith("connected to stomp://guest:***@127.0.0.1:61613//: RabbitMQ ")
    assert " on STOMP 1." in out.splitlines()[0]
    assert "round trip (SUBSCRIBE receipt) x2: min " in out


@pytest.mark.stomp
@pytest.mark.rabbitmq
def test_demo_on_stomp(amqp_connection):
    result = run_carrot("demo", "--broker", STOMP_URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    assert b"no exchange declared" in result.stdout
    assert b"round trip OK: 10 messages, 5 serializers, backend stomp" in result.stdout
    assert_amqp_queue_gone(amqp_connection, demo_queue(result.stdout))


@pytest.mark.stomp
def test_bench_on_stomp():
    result = run_carrot("bench", "--broker", STOMP_URL, "--count", "300", "--size", "16")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "subscribed before publishing" in out
    assert "consume: 300 messages in " in out


@pytest.mark.stomp
def test_wrong_password_on_stomp_is_masked():
    result = run_carrot("ping", "stomp://guest:not-the-password@127.0.0.1:61613//")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert result.stderr.startswith(
        b"carrot: cannot connect to stomp://guest:***@127.0.0.1:61613//"
    )
    assert b"not-the-password" not in result.stderr + result.stdout


@pytest.mark.redis
def test_ping_redis():
    result = run_carrot("ping", REDIS_URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("connected to redis://127.0.0.1:6379/0: Redis ")
    assert lines[1].startswith("round trip (PING) x2: min ")


@pytest.mark.redis
def test_demo_on_redis_leaves_no_keys():
    import redis

    result = run_carrot("demo", "--broker", REDIS_URL, "--count", "2")
    assert result.returncode == 0, result.stderr
    assert b"round trip OK: 10 messages, 5 serializers, backend redis" in result.stdout
    queue = demo_queue(result.stdout)
    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        assert list(client.scan_iter(match=f"*{queue}*")) == []
        for bindings in client.scan_iter(match="_kombu.binding.*"):
            assert not [member for member in client.smembers(bindings) if queue.encode() in member]
    finally:
        client.close()


@pytest.mark.redis
def test_bench_on_redis():
    result = run_carrot("bench", "--broker", REDIS_URL, "--count", "200", "--size", "16")
    assert result.returncode == 0, result.stderr
    assert "consume: 200 messages in " in result.stdout.decode()


@pytest.mark.redis
def test_publish_then_consume_on_redis(unique):
    queue = f"{unique}.cli"
    published = run_carrot("publish", REDIS_URL, "hello redis", "--declare-queue", queue)
    assert published.returncode == 0, published.stderr
    consumed = run_carrot("consume", REDIS_URL, "--queue", queue, "--count", "1", "--timeout", "5")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == b"hello redis\n"


@pytest.mark.redis
def test_wrong_redis_password_is_masked():
    # An ACL user the local Redis does not have: AUTH fails. (A password
    # alone is not checked when Redis has none: redis-py ignores that error.)
    result = run_carrot("ping", "redis://carrot-nobody:not-the-password@127.0.0.1:6379/0")
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert result.stderr.startswith(
        b"carrot: cannot connect to redis://carrot-nobody:***@127.0.0.1:6379/0"
    )
    assert b"not-the-password" not in result.stderr + result.stdout
