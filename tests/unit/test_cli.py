"""The carrot command line: URL parsing, commands on memory://, exit codes, error lines.

Nothing here opens a socket: commands run on ``memory://`` (in-process, or in
a subprocess), and connection failures are faked.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from carrot import cli
from carrot.backends import queue as memory
from carrot.connection import BrokerConnection

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["demo", "ping", "publish", "consume", "bench"]


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    memory.reset()
    yield
    memory.reset()


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


# -- parse_url ----------------------------------------------------------------


def test_parse_url_full_amqp():
    assert cli.parse_url("amqp://user:pass@rabbit.example:5673/prod") == {
        "hostname": "rabbit.example",
        "userid": "user",
        "password": "pass",
        "virtual_host": "prod",
        "port": 5673,
        "ssl": False,
        "backend_cls": "amqp",
    }


def test_parse_url_defaults_are_rabbitmq_defaults():
    params = cli.parse_url("amqp://rabbit")
    assert params["userid"] == "guest"
    assert params["password"] == "guest"
    assert params["port"] == 5672
    assert params["virtual_host"] == "/"
    assert params["ssl"] is False


def test_parse_url_missing_host_is_localhost():
    assert cli.parse_url("amqp://")["hostname"] == "localhost"


@pytest.mark.parametrize(
    "url, vhost",
    [
        ("amqp://h", "/"),
        ("amqp://h/", "/"),
        ("amqp://h//", "/"),
        ("amqp://h/%2F", "/"),
        ("amqp://h/%2f", "/"),
        ("amqp://h/prod", "prod"),
        ("amqp://h/a%2Fb", "a/b"),
        ("amqp://h/caf%C3%A9", "café"),
    ],
)
def test_parse_url_virtual_host(url, vhost):
    assert cli.parse_url(url)["virtual_host"] == vhost


def test_parse_url_decodes_user_and_password():
    params = cli.parse_url("amqp://us%40er:p%40ss%3Aw%2Frd@h")
    assert params["userid"] == "us@er"
    assert params["password"] == "p@ss:w/rd"


def test_parse_url_empty_password_stays_empty():
    assert cli.parse_url("amqp://user:@h")["password"] == ""


def test_parse_url_amqps():
    params = cli.parse_url("amqps://user:pw@secure")
    assert params["ssl"] is True
    assert params["port"] == 5671
    assert cli.parse_url("amqps://h:6000")["port"] == 6000


def test_parse_url_scheme_is_case_insensitive():
    assert cli.parse_url("AMQP://h")["port"] == 5672
    assert cli.parse_url("Memory://") == {"backend_cls": "memory"}


def test_parse_url_ipv6_host_keeps_brackets():
    params = cli.parse_url("amqp://[::1]:5673/")
    assert params["hostname"] == "[::1]"
    assert params["port"] == 5673


def test_parse_url_connect_timeout():
    assert cli.parse_url("amqp://h/?connect_timeout=2.5")["connect_timeout"] == 2.5


@pytest.mark.parametrize("url", ["memory://", "memory:///"])
def test_parse_url_memory(url):
    assert cli.parse_url(url) == {"backend_cls": "memory"}


def test_parse_url_result_builds_a_broker_connection():
    conn = BrokerConnection(**cli.parse_url("amqp://u:p@h:1234/v"))
    info = conn.info()
    assert (info["hostname"], info["userid"], info["password"]) == ("h", "u", "p")
    assert (info["virtual_host"], info["port"]) == ("v", 1234)
    memory_conn = BrokerConnection(**cli.parse_url("memory://"))
    assert memory_conn.get_backend_cls() is memory.Backend


@pytest.mark.parametrize(
    "url, reason",
    [
        ("", "expected scheme://"),
        ("localhost", "expected scheme://"),
        ("guest:secret@localhost", "expected scheme://"),
        ("http://h", "unknown scheme 'http'"),
        ("kafka://h", "unknown scheme 'kafka'"),
        ("stomps://h", "unknown scheme 'stomps'"),
        ("pika://h:abc", "Port"),
        ("stomp://h:0", "port 0"),
        ("stomp://h/?heartbeat=5", "unknown option 'heartbeat'"),
        ("redis://h/x", "Redis database number, not 'x'"),
        ("redis://h/1/2", "Redis database number, not '1/2'"),
        ("redis://h/-1", "Redis database number"),
        ("redis://h:99999", "Port"),
        ("kombu+memory://somehost", "kombu+memory://"),
        ("kombu://h", "kombu://"),
        ("amqp://h:abc", "Port"),
        ("amqp://h:99999", "Port"),
        ("amqp://h:0", "port 0"),
        ("amqp://h/#frag", "fragment"),
        ("amqp://h/?heartbeat=5", "unknown option 'heartbeat'"),
        ("amqp://h/?connect_timeout=soon", "connect_timeout"),
        ("amqp://h/?connect_timeout=-1", "connect_timeout"),
        ("amqp://h /", "whitespace"),
        ("memory://somehost", "memory://"),
    ],
)
def test_parse_url_rejects_bad_urls(url, reason):
    with pytest.raises(cli.InvalidURLError) as excinfo:
        cli.parse_url(url)
    assert reason in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_invalid_url_error_masks_the_password():
    with pytest.raises(cli.InvalidURLError) as excinfo:
        cli.parse_url("amqp://guest:s3cret@h:abc/")
    assert "s3cret" not in str(excinfo.value)
    assert "guest:***@h:abc" in str(excinfo.value)


# -- mask_url / format_url ----------------------------------------------------


@pytest.mark.parametrize(
    "url, masked",
    [
        ("amqp://guest:secret@localhost:5672//", "amqp://guest:***@localhost:5672//"),
        ("amqp://localhost//", "amqp://localhost//"),
        ("amqp://user@localhost//", "amqp://user@localhost//"),
        ("amqp://u:p@ss@h/", "amqp://u:***@h/"),
        ("amqp://u:pa/ss@h/", "amqp://u:***@h/"),
        ("guest:secret@host", "guest:***@host"),
        ("memory://", "memory://"),
    ],
)
def test_mask_url(url, masked):
    assert cli.mask_url(url) == masked


def test_format_url_masks_and_shows_defaults():
    assert cli.format_url(cli.parse_url("amqp://guest:guest@127.0.0.1:1")) == (
        "amqp://guest:***@127.0.0.1:1//"
    )
    assert cli.format_url(cli.parse_url("amqps://u:p@h/a%2Fb")) == "amqps://u:***@h:5671/a%2Fb"
    assert cli.format_url(cli.parse_url("memory://")) == "memory://"


def test_parse_url_pika_has_the_amqp_fields():
    assert cli.parse_url("pika://user:pass@rabbit:5673/prod") == {
        "hostname": "rabbit",
        "userid": "user",
        "password": "pass",
        "virtual_host": "prod",
        "port": 5673,
        "ssl": False,
        "backend_cls": "pika",
    }
    defaults = cli.parse_url("pika://rabbit")
    assert (defaults["userid"], defaults["password"], defaults["port"]) == ("guest", "guest", 5672)
    assert defaults["virtual_host"] == "/"
    secure = cli.parse_url("pikas://rabbit")
    assert (secure["port"], secure["ssl"], secure["backend_cls"]) == (5671, True, "pika")


def test_parse_url_pika_ipv6_host_has_no_brackets():
    # pika resolves the host as it is; only py-amqp wants "[::1]".
    assert cli.parse_url("pika://[::1]:5673/")["hostname"] == "::1"


def test_parse_url_stomp():
    assert cli.parse_url("stomp://user:pass@rabbit:61620/prod") == {
        "hostname": "rabbit",
        "userid": "user",
        "password": "pass",
        "virtual_host": "prod",
        "port": 61620,
        "ssl": False,
        "backend_cls": "stomp",
    }
    defaults = cli.parse_url("stomp://rabbit")
    assert (defaults["userid"], defaults["password"]) == ("guest", "guest")
    assert (defaults["port"], defaults["virtual_host"]) == (61613, "/")
    secure = cli.parse_url("STOMP+SSL://rabbit?connect_timeout=3")
    assert (secure["port"], secure["ssl"], secure["backend_cls"]) == (61614, True, "stomp")
    assert secure["connect_timeout"] == 3.0


def test_parse_url_redis():
    assert cli.parse_url("redis://:p%40ss@cache:6380/2") == {
        "hostname": "cache",
        "userid": None,
        "password": "p@ss",
        "virtual_host": "2",
        "port": 6380,
        "ssl": False,
        "backend_cls": "redis",
    }


def test_parse_url_redis_defaults_have_no_login():
    params = cli.parse_url("redis://")
    assert params["hostname"] == "localhost"
    assert (params["userid"], params["password"]) == (None, None)
    assert (params["port"], params["virtual_host"]) == (6379, "0")
    assert cli.parse_url("redis://h/")["virtual_host"] == "0"
    assert cli.parse_url("redis://h/07")["virtual_host"] == "7"
    assert cli.parse_url("redis://acl-user:pw@h")["userid"] == "acl-user"


@pytest.mark.parametrize("url", ["kombu+memory://", "kombu://", "KOMBU+MEMORY://", "kombu:///"])
def test_parse_url_kombu_memory(url):
    assert cli.parse_url(url) == {"backend_cls": "kombu"}


def test_new_schemes_build_broker_connections():
    redis_conn = BrokerConnection(**cli.parse_url("redis://:pw@h:6380/3"))
    assert (redis_conn.hostname, redis_conn.port, redis_conn.password) == ("h", 6380, "pw")
    assert redis_conn.virtual_host == "3"
    assert BrokerConnection(**cli.parse_url("stomp://h")).port == 61613
    assert BrokerConnection(**cli.parse_url("kombu://")).hostname is None


@pytest.mark.parametrize(
    "url, shown",
    [
        ("pika://guest:guest@127.0.0.1:1", "pika://guest:***@127.0.0.1:1//"),
        ("pikas://u:p@h/a%2Fb", "pikas://u:***@h:5671/a%2Fb"),
        ("pika://u:p@[::1]/", "pika://u:***@[::1]:5672//"),
        ("stomp://u:s3cret@h", "stomp://u:***@h:61613//"),
        ("stomp+ssl://u:s3cret@h:7000/v", "stomp+ssl://u:***@h:7000/v"),
        ("redis://:s3cret@h/2", "redis://:***@h:6379/2"),
        ("redis://user:s3cret@h:1", "redis://user:***@h:1/0"),
        ("redis://h", "redis://h:6379/0"),
        ("redis://user@h", "redis://user@h:6379/0"),
        ("redis://:@h", "redis://:***@h:6379/0"),
        ("kombu://", "kombu+memory://"),
        ("kombu+memory://", "kombu+memory://"),
    ],
)
def test_format_url_new_schemes_mask_and_round_trip(url, shown):
    params = cli.parse_url(url)
    assert cli.format_url(params) == shown
    assert "s3cret" not in shown
    # The shown URL, its mask replaced by the password, parses back the same.
    password = params.get("password")
    again = cli.parse_url(shown.replace(cli.MASK, quote(password or "", safe="")))
    assert again == params


# -- main(), in process, on memory:// -----------------------------------------


def test_demo_round_trip_on_memory(capsys):
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "round trip OK: 5 messages, 5 serializers, backend memory" in out
    assert out.count("[OK]") == 5
    assert "MISMATCH" not in out


def test_demo_count(capsys):
    assert cli.main(["demo", "--count", "3"]) == 0
    assert "round trip OK: 15 messages, 5 serializers, backend memory" in capsys.readouterr().out


def test_demo_reports_a_mismatch(monkeypatch, capsys):
    # Tamper with json messages in flight: the consumer gets something else.
    real_publish = memory.Backend.publish

    def tampering_publish(self, message, exchange, routing_key, **kwargs):
        if message[1] == "application/json":
            message = self.prepare_message(b'{"tampered": true}', 1, message[1], message[2])
        return real_publish(self, message, exchange, routing_key, **kwargs)

    monkeypatch.setattr(memory.Backend, "publish", tampering_publish)
    assert cli.main(["demo"]) == 1
    out = capsys.readouterr().out
    assert out.count("MISMATCH") == 1
    assert "round trip FAILED: 1 of 5 messages differ, backend memory" in out


def test_ping_memory(capsys):
    assert cli.main(["ping", "memory://"]) == 0
    assert "in-process" in capsys.readouterr().out


@pytest.mark.kombu
def test_demo_round_trip_on_kombu_memory(capsys):
    assert cli.main(["demo", "--broker", "kombu+memory://", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo: 2 message(s) per serializer through kombu+memory://\n")
    assert "round trip OK: 10 messages, 5 serializers, backend kombu" in out
    assert out.count("[OK]") == 10
    assert "MISMATCH" not in out


@pytest.mark.kombu
def test_demo_on_kombu_memory_leaves_no_queue(capsys):
    from kombu.transport import memory as kombu_memory

    assert cli.main(["demo", "--broker", "kombu://"]) == 0
    queue = capsys.readouterr().out.splitlines()[1].split()[1]
    assert queue.startswith("carrot.demo.")
    # The auto-delete queue went when the demo's consumer was cancelled.
    assert queue not in kombu_memory.Channel.queues


@pytest.mark.kombu
def test_ping_kombu_memory(capsys):
    assert cli.main(["ping", "kombu://"]) == 0
    assert capsys.readouterr().out == (
        "kombu+memory://: in-process (kombu memory transport); no network, nothing to time\n"
    )


@pytest.mark.kombu
def test_publish_then_consume_on_kombu_memory(unique, capsys):
    queue = f"{unique}.cli"
    assert cli.main(["publish", "kombu://", "hi kombu", "--declare-queue", queue]) == 0
    captured = capsys.readouterr()
    assert "published 8 bytes (text/plain, utf-8)" in captured.out
    assert "kombu+memory:// lives in this process" in captured.err
    assert cli.main(["consume", "kombu://", "--queue", queue, "--count", "1"]) == 0
    assert capsys.readouterr().out == "hi kombu\n"


class _FakeRedisClient:
    def __init__(self, info_fails: bool) -> None:
        self.info_fails = info_fails
        self.pings = 0

    def info(self, section: str) -> dict[str, str]:
        if self.info_fails:
            raise RuntimeError("INFO is disabled")
        return {"redis_version": "7.9.9"}

    def ping(self) -> bool:
        self.pings += 1
        return True


@pytest.mark.kombu
@pytest.mark.parametrize("info_fails, first_line", [(False, ": Redis 7.9.9"), (True, "")])
def test_ping_redis_version_or_just_connected(monkeypatch, capsys, info_fails, first_line):
    client = _FakeRedisClient(info_fails)
    kombu_connection = type(
        "KombuConnection", (), {"default_channel": None, "close": lambda self: None}
    )()
    kombu_connection.default_channel = type("Channel", (), {"client": client})()
    params = cli.parse_url("redis://:pw@h/1")

    def fake_connect(url: str) -> tuple[BrokerConnection, dict, str]:
        conn = BrokerConnection(**params)
        conn._connection = kombu_connection  # as if connect() had opened it
        return conn, params, cli.format_url(params)

    monkeypatch.setattr(cli, "_connect", fake_connect)
    assert cli.main(["ping", "redis://:pw@h/1", "--count", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"connected to redis://:***@h:6379/1{first_line}"
    assert lines[1].startswith("round trip (PING) x4: min ")
    assert client.pings == 4


@pytest.mark.kombu
def test_demo_deletes_its_queue_when_it_fails(monkeypatch, capsys):
    from kombu.transport import memory as kombu_memory

    def no_message(conn, done, timeout, what):
        raise cli.CommandError(f"timed out waiting for {what}")

    monkeypatch.setattr(cli, "_wait_for", no_message)
    assert cli.main(["demo", "--broker", "kombu://"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "carrot: timed out waiting for the json message\n"
    queue = captured.out.splitlines()[1].split()[1]
    assert queue not in kombu_memory.Channel.queues


@pytest.mark.kombu
def test_bench_compare_refuses_non_amqp_brokers(capsys):
    for url in ("redis://h", "stomp://h", "kombu://"):
        assert cli.main(["bench", "--compare", "--broker", url]) == 2
        assert "measures AMQP clients against RabbitMQ" in capsys.readouterr().err


def test_publish_then_consume_on_memory(capsys):
    assert cli.main(["publish", "memory://", "hello world"]) == 0
    captured = capsys.readouterr()
    assert "published 11 bytes (text/plain, utf-8)" in captured.out
    assert "gone when carrot exits" in captured.err
    assert cli.main(["consume", "memory://", "--queue", "any", "--count", "1"]) == 0
    assert capsys.readouterr().out == "hello world\n"
    assert memory.mqueue.qsize() == 0


def test_publish_with_serializer_parses_json_literal(capsys):
    assert cli.main(["publish", "memory://", '{"a": [1, 2]}', "--serializer", "pickle"]) == 0
    message = BrokerConnection(backend_cls="memory").create_backend().get()
    assert message.content_type == "application/x-python-serialize"
    assert message.payload == {"a": [1, 2]}


def test_publish_with_serializer_keeps_non_json_as_string(capsys):
    assert cli.main(["publish", "memory://", "not json", "--serializer", "json"]) == 0
    message = BrokerConnection(backend_cls="memory").create_backend().get()
    assert message.content_type == "application/json"
    assert message.payload == "not json"


def test_publish_with_content_type_sends_body_as_is(capsys):
    argv = ["publish", "memory://", "<x/>", "--content-type", "application/xml"]
    assert cli.main([*argv, "--content-encoding", "latin-1", "--exchange", "e"]) == 0
    message = BrokerConnection(backend_cls="memory").create_backend().get()
    assert (message.body, message.content_type, message.content_encoding) == (
        b"<x/>",
        "application/xml",
        "latin-1",
    )
    assert message.delivery_info["exchange"] == "e"


def test_publish_reads_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert cli.main(["publish", "memory://", "--routing-key", "k"]) == 0
    message = BrokerConnection(backend_cls="memory").create_backend().get()
    assert message.payload == "from stdin"
    assert message.delivery_info["routing_key"] == "k"


def test_publish_binary_stdin_goes_as_bytes(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\x00")))
    assert cli.main(["publish", "memory://", "-"]) == 0
    message = BrokerConnection(backend_cls="memory").create_backend().get()
    assert (message.body, message.content_type) == (b"\xff\x00", "application/data")


def test_publish_unknown_serializer_is_usage_error(capsys):
    assert cli.main(["publish", "memory://", "x", "--serializer", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("carrot: ") and "nope" in err
    assert memory.mqueue.qsize() == 0


def test_consume_prints_repr_for_non_text(capsys):
    backend = BrokerConnection(backend_cls="memory").create_backend()
    backend.publish(backend.prepare_message(b"[1, 2]", 1, "application/json", "utf-8"), "", "")
    backend.publish(backend.prepare_message(b"\x00", 1, "application/data", "binary"), "", "")
    assert cli.main(["consume", "memory://", "--queue", "q"]) == 0
    assert capsys.readouterr().out == "[1, 2]\nb'\\x00'\n"


def test_consume_undecodable_body_prints_raw_with_note(capsys):
    backend = BrokerConnection(backend_cls="memory").create_backend()
    backend.publish(backend.prepare_message(b"{oops", 1, "application/json", "utf-8"), "", "")
    assert cli.main(["consume", "memory://", "--queue", "q", "--count", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "b'{oops'\n"
    assert "cannot decode" in captured.err


def test_consume_count_leaves_the_rest(capsys):
    backend = BrokerConnection(backend_cls="memory").create_backend()
    for i in range(3):
        backend.publish(backend.prepare_message(str(i), 1, "text/plain", "utf-8"), "", "")
    assert cli.main(["consume", "memory://", "--queue", "q", "--count", "2", "--no-ack"]) == 0
    assert capsys.readouterr().out == "0\n1\n"
    assert memory.mqueue.qsize() == 1


def test_consume_nothing_exits_3_not_the_usage_error_code(capsys):
    assert cli.EXIT_NO_MESSAGE == 3
    assert cli.main(["consume", "memory://", "--queue", "q", "--timeout", "0.05"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no message on queue 'q'" in captured.err


def test_bench_on_memory(capsys):
    assert cli.main(["bench", "--count", "200", "--size", "10"]) == 0
    out = capsys.readouterr().out
    assert "publish: 200 messages" in out
    assert "consume: 200 messages" in out
    assert out.count("msg/s") == 2
    assert memory.mqueue.qsize() == 0


def test_bench_progress_bars_when_enabled(capsys):
    with BrokerConnection(backend_cls="memory") as conn:
        result = cli.run_bench(conn, 50, 8, progress=True)
    err = capsys.readouterr().err
    assert "\rpublish [" in err
    assert "\rconsume [" in err
    assert "50/50 100%" in err
    assert result["publish_seconds"] > 0
    assert result["consume_rate"] > 0


# -- errors -------------------------------------------------------------------


def test_bad_url_is_one_line_exit_2(capsys):
    assert cli.main(["ping", "amqp://guest:s3cret@h:abc/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("carrot: invalid broker URL")
    assert "s3cret" not in err
    assert "Traceback" not in err


def test_unknown_scheme_is_one_line_exit_2(capsys):
    assert cli.main(["consume", "kafka://h", "--queue", "q"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "carrot: invalid broker URL 'kafka://h': unknown scheme 'kafka' "
        "(known: amqp://, amqps://, pyamqp://, pika://, pikas://, stomp://, stomp+ssl://, "
        "redis://, memory://, kombu+memory://, kombu://)\n"
    )


@pytest.mark.parametrize(
    "exc, reason",
    [
        (ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
        (TimeoutError("timed out"), "timed out"),  # socket.timeout
        (
            socket.gaierror(-2, "Name or service not known"),
            "cannot resolve the host name (Name or service not known)",
        ),
    ],
)
def test_connect_failure_is_one_line_exit_1(monkeypatch, capsys, exc, reason):
    def refuse(self):
        raise exc

    monkeypatch.setattr(BrokerConnection, "connect", refuse)
    assert cli.main(["ping", "amqp://guest:s3cret@127.0.0.1:1//"]) == 1
    err = capsys.readouterr().err
    assert err == f"carrot: cannot connect to amqp://guest:***@127.0.0.1:1//: {reason}\n"


def test_pika_connect_failure_names_the_socket_error(monkeypatch, capsys):
    # pika nests the socket's error in the args of the error it raises
    from pika.adapters.utils.connection_workflow import AMQPConnectorSocketConnectError
    from pika.exceptions import AMQPConnectionError

    def refuse(self):
        inner = AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "Connection refused"))
        raise AMQPConnectionError(inner)

    monkeypatch.setattr(BrokerConnection, "connect", refuse)
    assert cli.main(["ping", "pikas://guest:s3cret@127.0.0.1:1//"]) == 1
    err = capsys.readouterr().err
    assert err == "carrot: cannot connect to pikas://guest:***@127.0.0.1:1//: Connection refused\n"


def test_connect_failure_without_a_reason_is_a_sentence(monkeypatch, capsys):
    # stomp.py raises ConnectFailedException() with no text at all
    from stomp.exception import ConnectFailedException

    def refuse(self):
        raise ConnectFailedException()

    monkeypatch.setattr(BrokerConnection, "connect", refuse)
    assert cli.main(["ping", "stomp://127.0.0.1:1//"]) == 1
    err = capsys.readouterr().err
    prefix = "carrot: cannot connect to stomp://guest:***@127.0.0.1:1//: "
    assert err.startswith(prefix)
    reason = err[len(prefix) :].strip()
    assert reason != "ConnectFailedException"
    assert "no reason given" in reason
    assert "broker runs and listens on that port" in reason


def test_broker_refusal_reply_text_is_the_reason(monkeypatch, capsys):
    from amqp.exceptions import AccessRefused

    def refuse(self):
        raise AccessRefused("ACCESS_REFUSED - Login was refused", method_sig=(10, 40))

    monkeypatch.setattr(BrokerConnection, "connect", refuse)
    assert cli.main(["publish", "amqp://u:wrong@h//", "x"]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "carrot: cannot connect to amqp://u:***@h:5672//: ACCESS_REFUSED - Login was refused\n"
    )


def test_debug_shows_the_traceback(monkeypatch, capsys):
    def refuse(self):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(BrokerConnection, "connect", refuse)
    assert cli.main(["--debug", "ping", "amqp://h//"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "ConnectionRefusedError" in err
    assert err.rstrip().endswith(
        "carrot: cannot connect to amqp://guest:***@h:5672//: Connection refused"
    )
    # --debug after the command works too.
    assert cli.main(["ping", "amqp://h//", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_failure_is_one_line_exit_1(monkeypatch, capsys):
    def explode(self, *args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(memory.Backend, "publish", explode)
    assert cli.main(["publish", "memory://", "x"]) == 1
    assert capsys.readouterr().err == "carrot: publish failed: disk on fire\n"


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupt(url):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_connect", interrupt)
    assert cli.main(["ping", "memory://"]) == 130
    assert capsys.readouterr().err == "carrot: interrupted\n"


def test_broken_pipe_stops_quietly(monkeypatch, capsys):
    backend = BrokerConnection(backend_cls="memory").create_backend()
    backend.publish(backend.prepare_message("first", 1, "text/plain", "utf-8"), "", "")

    def closed_pipe(line=""):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_out", closed_pipe)
    assert cli.main(["consume", "memory://", "--queue", "q", "--count", "1"]) == 141
    err = capsys.readouterr().err
    assert "pipe" not in err.lower()
    assert "failed" not in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["ping"],
        ["consume", "memory://"],
        ["demo", "--count", "0"],
        ["consume", "memory://", "--queue", "q", "--timeout", "-1"],
        ["bench", "--size", "lots"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: carrot" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_for_every_command_in_process(command, capsys):
    assert cli.main([command, "--help"]) == 0
    assert f"usage: carrot {command}" in capsys.readouterr().out


def _options_with_defaults() -> list[tuple[str, str, object, str]]:
    import argparse

    commands = next(
        action
        for action in cli.build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    found = []
    for name, parser in commands.choices.items():
        for action in parser._actions:
            default = action.default
            if not action.option_strings or any(
                default is nothing for nothing in (None, False, argparse.SUPPRESS)
            ):
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            found.append((name, action.option_strings[0], action.default, action.help or ""))
    return found


def test_every_option_with_a_default_shows_it_in_its_help(capsys):
    options = _options_with_defaults()
    assert {(name, option) for name, option, _d, _h in options} >= {
        ("demo", "--broker"),
        ("demo", "--count"),
        ("ping", "--count"),
        ("consume", "--count"),
        ("bench", "--count"),
        ("bench", "--size"),
        ("bench", "--rounds"),
    }
    for name, option, default, help_text in options:
        assert "default" in help_text, (name, option)
        assert cli.main([name, "--help"]) == 0
        shown = " ".join(capsys.readouterr().out.split())
        assert f"default: {default}" in shown, (name, option, default)


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("carrot 0.")


# -- progress bar -------------------------------------------------------------


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_tty():
    stream = _TTY()
    bar = cli.ProgressBar(4, "work", stream=stream)
    bar.interval = 0
    for _ in range(4):
        bar.update()
    bar.close()
    text = stream.getvalue()
    assert "\rwork [" in text
    assert "4/4 100%" in text
    assert text.endswith("\n")
    assert "#" * cli.ProgressBar.width in text


def test_progress_bar_is_silent_off_a_tty():
    stream = io.StringIO()
    bar = cli.ProgressBar(10, "work", stream=stream)
    for _ in range(10):
        bar.update()
    bar.close()
    assert stream.getvalue() == ""
    assert bar.done == 10


# -- subprocesses (python -m carrot) ------------------------------------------


def test_python_m_carrot_demo():
    result = run_carrot("demo")
    assert result.returncode == 0, result.stderr
    assert b"round trip OK: 5 messages, 5 serializers, backend memory" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_python_m_carrot_help(command):
    result = run_carrot(command, "--help")
    assert result.returncode == 0
    assert f"usage: carrot {command}".encode() in result.stdout


def test_python_m_carrot_top_level_help_lists_commands():
    result = run_carrot("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command.encode() in result.stdout


def test_python_m_carrot_bad_url_one_line_no_traceback():
    result = run_carrot("ping", "amqp://guest:s3cret@host:port/")
    assert result.returncode == 2
    assert result.stderr.count(b"\n") == 1
    assert result.stderr.startswith(b"carrot: invalid broker URL")
    assert b"Traceback" not in result.stderr
    assert b"s3cret" not in result.stderr


def test_python_m_carrot_debug_shows_traceback():
    result = run_carrot("--debug", "ping", "amqp://guest:s3cret@host:port/")
    assert result.returncode == 2
    assert b"Traceback (most recent call last)" in result.stderr
    assert b"InvalidURLError" in result.stderr
    assert b"s3cret" not in result.stderr


def test_python_m_carrot_publish_stdin_on_memory():
    result = run_carrot("publish", "memory://", stdin=b"piped body")
    assert result.returncode == 0, result.stderr
    assert b"published 10 bytes (text/plain, utf-8)" in result.stdout


def test_bench_compare_finds_the_benchmarks_script():
    assert (
        cli.benchmarks_script() == Path(cli.__file__).resolve().parents[1] / "benchmarks" / "run.py"
    )
    assert cli.benchmarks_script().is_file()


def test_bench_compare_refuses_the_memory_backend(capsys):
    assert cli.main(["bench", "--compare"]) == 2
    assert "give --broker amqp://" in capsys.readouterr().err


def test_bench_compare_needs_a_source_checkout(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "benchmarks_script", lambda: tmp_path / "run.py")
    assert cli.main(["bench", "--compare", "--broker", "amqp://127.0.0.1:1//"]) == 1
    assert "needs a source checkout" in capsys.readouterr().err


def test_bench_compare_passes_the_broker_and_counts(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda argv: calls.append(argv) or 0)
    argv = ["bench", "--compare", "--broker", "amqp://u:p@rabbit:5673//", "--count", "500"]
    assert cli.main([*argv, "--rounds", "2"]) == 0
    [call] = calls
    assert call[1] == str(cli.benchmarks_script())
    assert call[2:] == ["-n", "500", "--rounds", "2", "--host", "rabbit", "--port", "5673"]


def test_cli_asks_the_backends_instead_of_branching_on_their_names():
    # Per-backend behaviour lives on the backends (carrot.backends.base
    # hooks); the command line names no backend in a condition.
    import re
    from pathlib import Path

    source = Path(cli.__file__).read_text()
    assert not re.search(r"backend_cls\s*(==|!=|\bin\b|\bnot in\b)", source)
    assert not re.search(r"""(==|!=)\s*["'](amqp|pika|stomp|redis|kombu|memory)["']""", source)
