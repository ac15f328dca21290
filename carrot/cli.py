"""The ``carrot`` command line (also ``python -m carrot``).

Commands::

    carrot demo    [--broker URL] [--count N]
    carrot ping    URL [--count N]
    carrot publish URL [BODY] [--exchange X] [--routing-key K] [--serializer S]
                   [--content-type T] [--content-encoding E] [--declare-queue Q]
    carrot consume URL --queue Q [--count N] [--timeout S] [--no-ack]
    carrot bench   [--broker URL] [--count N] [--size B] [--compare [--rounds R]]

``carrot COMMAND --help`` describes each. ``--debug`` (before or after the
command) shows the traceback of a failure; without it a failure is one line
on stderr.

Broker URLs (parsed by :func:`carrot.urls.parse_url`, the same code
:class:`~carrot.connection.BrokerConnection` uses for ``hostname=URL``):

* ``amqp://user:password@host:port/vhost``: RabbitMQ through py-amqp. A
  missing user id or password is ``guest`` and a missing port 5672, as in
  RabbitMQ's defaults; a missing host is ``localhost``. The virtual host is
  the URL-decoded path without its leading slash: an empty path,
  ``amqp://host/`` and ``amqp://host//`` all mean ``/``, as does
  ``amqp://host/%2F``. ``?connect_timeout=S`` sets the connect timeout.
* ``amqps://...``: the same over TLS (``ssl=True``), default port 5671.
* ``pika://user:password@host:port/vhost`` (``pikas://`` for TLS): RabbitMQ
  through pika (``backend_cls="pika"``), with the fields and defaults of
  ``amqp://``.
* ``stomp://user:password@host:port/vhost`` (``stomp+ssl://`` for TLS,
  default port 61614): RabbitMQ's STOMP plugin through stomp.py
  (``backend_cls="stomp"``). User id and password default to ``guest``,
  the port to 61613, the virtual host (sent as STOMP's ``host`` header) to
  ``/``.
* ``redis://[user][:password@]host:port/db``: Redis through kombu
  (``backend_cls="redis"``). No user id or password unless given (a user id
  is a Redis 6 ACL user); the port defaults to 6379 and the database
  number (the path, passed as ``virtual_host``) to 0. The URL's parts go
  to :class:`~carrot.connection.BrokerConnection` as separate fields, not
  as a kombu URL in ``hostname``, so the password stays out of every host
  name that output or errors show.
* ``memory://``: the in-process backend (:mod:`carrot.backends.queue`).
* ``kombu+memory://`` (or ``kombu://``): kombu's in-process memory
  transport (``backend_cls="kombu"``), with kombu's exchange routing.

The network schemes take ``?connect_timeout=S``. A password is never
printed: URLs echoed in output and errors show ``***``. Several brokers
separated by ``;`` (``"amqp://h1//;amqp://h2//"``) are tried in turn;
``ping`` says which one answered.

What ``ping`` times depends on the backend: opening and closing a channel
(``amqp://``, ``pika://``), a SUBSCRIBE answered by its receipt
(``stomp://``, on a ``/topic/`` destination of its own), a Redis ``PING``
(``redis://``). It prints the server's product and version where the
connection tells them (AMQP, STOMP's CONNECTED frame, Redis ``INFO``).

``demo`` and ``bench`` use an exclusive, auto-delete queue on the default
exchange and delete it when done (kombu's transports would keep it). On
STOMP no exchange is declared (it cannot declare any): the messages go to
``/amq/queue/<queue>``; ``bench`` subscribes before publishing there,
since RabbitMQ creates an exclusive STOMP queue only when subscribed to.

Exit status: 0 on success; 1 when something failed at run time (cannot
connect, refused by the broker, a demo round trip that does not match, a
message ``publish`` sent that the broker returned as unroutable); 2 for usage
errors (bad arguments, a malformed URL or unknown scheme); 3
(:data:`EXIT_NO_MESSAGE`) for ``consume`` when the timeout passed with no
message; 130 when interrupted; 141 when the reader of stdout went away
(``carrot consume ... | head -1``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from carrot import __version__, serialization
from carrot.backends import get_backend_cls
from carrot.connection import BrokerConnection
from carrot.exceptions import CarrotError, DecodeError, InvalidURLError, SerializerNotInstalled

# The CLI's URLs are the library's; the names stay importable from here.
from carrot.urls import MASK as MASK
from carrot.urls import format_url, mask_url, parse_url, split_urls

if TYPE_CHECKING:
    from carrot.backends.base import BaseBackend, BaseMessage

__all__ = [
    "CommandError",
    "InvalidURLError",
    "ProgressBar",
    "format_url",
    "main",
    "mask_url",
    "parse_url",
]

#: The broker ``demo`` and ``bench`` use by default.
DEFAULT_BROKER = "memory://"
#: Seconds ``demo`` and ``bench`` wait for each message before giving up.
RECEIVE_TIMEOUT = 10.0
#: The exit status of ``consume`` when its timeout passed with no message
#: (not 2, which is a usage error).
EXIT_NO_MESSAGE = 3


class CommandError(CarrotError):
    """A command failed in a way the user should read as one line.

    :param message: what went wrong.
    :param exit_code: the process exit status (1: runtime failure, 2: usage).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.message = message
        self.exit_code = exit_code
        super().__init__(message, exit_code)

    def __str__(self) -> str:
        return self.message


# -- output -----------------------------------------------------------------------


class ProgressBar:
    """A progress bar drawn on ``stream`` (stderr) when it is a terminal.

    :param total: the count that means done.
    :param label: printed before the bar.
    :keyword stream: where to draw (default ``sys.stderr``).
    :keyword enabled: draw or not; default: only when ``stream`` is a TTY.
    """

    #: Characters of the bar itself.
    width = 30
    #: Seconds between redraws.
    interval = 0.1

    def __init__(
        self,
        total: int,
        label: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self._drawn_at = 0.0

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done; redraw at most every :attr:`interval` seconds."""
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now - self._drawn_at >= self.interval:
                self._drawn_at = now
                self.draw()

    def draw(self) -> None:
        """Draw the bar now."""
        fraction = min(1.0, self.done / self.total)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {fraction:4.0%}")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _note(line: str) -> None:
    sys.stderr.write(f"carrot: {line}\n")
    sys.stderr.flush()


def _innermost(exc: BaseException) -> BaseException:
    """The error a client wrapped, or ``exc`` itself.

    pika nests the socket's error in ``args``, then in ``.exception``.
    """
    seen = {id(exc)}
    while True:
        inner = next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
        if inner is None and isinstance(getattr(exc, "exception", None), BaseException):
            inner = exc.exception  # type: ignore[attr-defined]
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _describe(exc: BaseException) -> str:
    """One line saying what ``exc`` means, without its class path."""
    exc = _innermost(exc)
    reply_text = getattr(exc, "reply_text", None)
    if reply_text:
        return str(reply_text)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    if text:
        return text[0]
    # stomp.py's ConnectFailedException says nothing (its log said why)
    return (
        f"{type(exc).__name__}, with no reason given: check that the broker runs and "
        "listens on that port, and that the scheme's TLS setting matches the port"
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _show(value: object, limit: int = 100) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- connecting -------------------------------------------------------------------


def _connect(url: str) -> tuple[BrokerConnection, dict[str, Any], str]:
    """Parse ``url`` and connect; a failure becomes one :class:`CommandError` line.

    ``url`` may be a ``;``-separated broker list: the brokers are tried in
    turn and the URL returned (for output) is the one that answered.
    """
    brokers = split_urls(url)
    every = [parse_url(broker) for broker in brokers]  # each checked, with its own error
    params = every[0]
    shown = ";".join(format_url(broker) for broker in every)
    conn = BrokerConnection(**params) if len(brokers) == 1 else BrokerConnection(brokers)
    try:
        conn.connect()
    except Exception as exc:  # any failure here means "cannot connect"; --debug shows which
        conn.close()
        raise CommandError(f"cannot connect to {shown}: {_describe(exc)}") from exc
    if len(brokers) > 1:
        shown = conn._masked_url()  # the broker that answered
    return conn, params, shown


def _wait_for(conn: BrokerConnection, done: Callable[[], bool], timeout: float, what: str) -> None:
    """Drain events until ``done()``, waiting at most ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandError(f"timed out after {timeout:g} s waiting for {what}")
        try:
            conn.drain_events(timeout=remaining)
        except TimeoutError:
            continue


# -- demo -----------------------------------------------------------------------------


def _delete_queue_afterwards(
    conn: BrokerConnection, queue: str
) -> contextlib.AbstractContextManager[None]:
    """Delete ``queue`` when the block ends, however it ends.

    The brokers delete the exclusive auto-delete queues of ``demo`` and
    ``bench`` themselves (AMQP, STOMP), but kombu's memory and Redis
    transports keep an auto-delete queue their consumer left. A failure to
    delete does not hide the error that ended the block.
    """

    @contextlib.contextmanager
    def manager() -> Iterator[None]:
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                conn.create_backend().queue_delete(queue)
            raise
        conn.create_backend().queue_delete(queue)

    return manager()


def _demo_cases(count: int) -> list[tuple[str, str | None, list[Any]]]:
    def data(i: int) -> dict[str, Any]:
        return {"text": "héllo wörld ✓", "n": i, "pi": 3.14159, "items": [1, 2, 3], "ok": True}

    pickled = [{"tuple": (i, "two"), "set": {1, 2}, "bytes": b"\x00\xff"} for i in range(count)]
    return [
        ("json", "json", [data(i) for i in range(count)]),
        ("pickle", "pickle", pickled),
        ("yaml", "yaml", [data(i) for i in range(count)]),
        ("msgpack", "msgpack", [data(i) for i in range(count)]),
        ("raw bytes", None, [b"\x00\x01carrot\xfe\xff" + bytes([i % 256]) for i in range(count)]),
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    """Round-trip messages with every available serializer; exit 1 on any mismatch."""
    from carrot.messaging import Consumer, Publisher

    conn, params, shown = _connect(args.broker)
    backend_name = params.get("backend_cls") or "amqp"
    note = conn.create_backend().default_exchange_note
    queue = f"carrot.demo.{uuid.uuid4().hex[:12]}"
    received: list[tuple[Any, BaseMessage]] = []
    sent = matched = 0
    used = []
    with conn, _delete_queue_afterwards(conn, queue):
        # An exclusive queue on the default exchange: the broker deletes it
        # when we disconnect (and we do, for kombu's transports).
        consumer = Consumer(
            conn, queue=queue, exclusive=True, durable=False, auto_delete=True, no_ack=True
        )
        consumer.register_callback(lambda data, message: received.append((data, message)))
        publisher = Publisher(conn, exchange="", routing_key=queue, delivery_mode="transient")
        consumer.consume()
        _out(f"demo: {args.count} message(s) per serializer through {shown}")
        # STOMP cannot declare exchanges; the default exchange needs none.
        how = f" ({note})" if note else ""
        _out(f"queue {queue} (exclusive, auto-delete) on the default exchange{how}")
        for label, serializer, payloads in _demo_cases(args.count):
            try:
                serialization.encode(payloads[0], serializer=serializer)
            except SerializerNotInstalled as exc:
                _out(f"  {label:9} skipped: {exc}")
                continue
            used.append(label)
            for payload in payloads:
                content_type, content_encoding, body = serialization.encode(
                    payload, serializer=serializer
                )
                publisher.send(body, content_type=content_type, content_encoding=content_encoding)
                sent += 1
                _out(f"  {label:9} -> {content_type} ({content_encoding}, {len(body)} bytes)")
                _out(f"  {'':9}    sent:     {_show(payload)}")
                _wait_for(conn, lambda: bool(received), RECEIVE_TIMEOUT, f"the {label} message")
                data, message = received.pop(0)
                ok = data == payload and message.content_type == content_type
                matched += ok
                _out(f"  {'':9}    received: {_show(data)}  [{'OK' if ok else 'MISMATCH'}]")
        consumer.close()
        publisher.close()
    if matched != sent or not sent:
        _out(
            f"round trip FAILED: {sent - matched} of {sent} messages differ, backend {backend_name}"
        )
        return 1
    _out(f"round trip OK: {sent} messages, {len(used)} serializers, backend {backend_name}")
    return 0


# -- ping -----------------------------------------------------------------------------


def _time_round_trips(count: int, operation: Callable[[], object]) -> list[float]:
    """Milliseconds each of ``count`` calls of ``operation`` took."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        operation()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def cmd_ping(args: argparse.Namespace) -> int:
    """Connect, print the server's product and version and the round-trip time.

    What is timed is the backend's
    :meth:`~carrot.backends.base.BaseBackend.round_trip`: opening and closing
    a channel (AMQP: py-amqp and pika), a SUBSCRIBE receipt (STOMP), a
    ``PING`` command (Redis).
    """
    conn, _, shown = _connect(args.url)
    with conn:
        backend = conn.create_backend()
        described = backend.server_description()
        if backend.in_process:
            _out(f"{shown}: in-process ({described}); no network, nothing to time")
            return 0
        _out(f"connected to {shown}: {described}" if described else f"connected to {shown}")
        label, operation = backend.round_trip()
        samples = _time_round_trips(args.count, operation)
        _out(
            f"round trip ({label}) x{len(samples)}: "
            f"min {min(samples):.2f} ms, avg {sum(samples) / len(samples):.2f} ms, "
            f"max {max(samples):.2f} ms"
        )
    return 0


# -- publish --------------------------------------------------------------------------


def _read_stdin() -> str | bytes:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _encode_body(args: argparse.Namespace, body: str | bytes) -> tuple[str, str, bytes]:
    """The (content_type, content_encoding, bytes) to send for ``body``."""
    if args.content_type:
        if isinstance(body, str):
            encoding = args.content_encoding or "utf-8"
            try:
                return args.content_type, encoding, body.encode(encoding)
            except (LookupError, UnicodeError) as exc:
                raise CommandError(f"cannot encode the body as {encoding!r}: {exc}", 2) from exc
        return args.content_type, args.content_encoding or "binary", body
    data: Any = body
    if args.serializer and args.serializer != "raw" and isinstance(body, str):
        # The body is a JSON literal when it parses as one, else a string.
        try:
            data = json.loads(body)
        except ValueError:
            data = body
    try:
        content_type, content_encoding, payload = serialization.encode(
            data, serializer=args.serializer
        )
    except SerializerNotInstalled as exc:
        raise CommandError(str(exc), 2) from exc
    if args.content_encoding:
        content_encoding = args.content_encoding
    return content_type, content_encoding, payload


def _returned(backend: BaseBackend) -> str | None:
    """``"NO_ROUTE (312)"`` if the broker returned the message just published, else None.

    The backend waits for the broker's answer to what it sent
    (:meth:`~carrot.backends.base.BaseBackend.collect_returns`), which comes
    after any basic.return, and keeps returns on ``returned_messages``.
    """
    backend_logger = logging.getLogger("carrot.backends")
    level = backend_logger.level
    backend_logger.setLevel(logging.ERROR)  # its warning about the return: our error says it
    try:
        backend.collect_returns()
    finally:
        backend_logger.setLevel(level)
    if not backend.returned_messages:
        return None
    reply_code, reply_text = backend.returned_messages[-1][:2]
    return f"{_text(reply_text)} ({reply_code})"


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish one message (body from the argument, or stdin)."""
    from carrot.messaging import Publisher

    if args.body in (None, "-"):
        if sys.stdin.isatty():
            _note("reading the message body from stdin (end it with Ctrl-D)")
        body: str | bytes = _read_stdin()
    else:
        body = args.body
    content_type, content_encoding, payload = _encode_body(args, body)
    conn, _, shown = _connect(args.url)
    exchange = args.exchange
    routing_key = args.routing_key if args.routing_key is not None else args.declare_queue or ""
    with conn:
        backend = conn.create_backend()
        memory = backend.in_process
        # False only where the backend can tell (AMQP); None where it cannot.
        if exchange and not memory and backend.exchange_exists(exchange) is False:
            raise CommandError(f"exchange {exchange!r} not found on {shown}")
        if args.declare_queue:
            backend.queue_declare(args.declare_queue, True, False, False)
            if exchange:
                backend.queue_bind(args.declare_queue, exchange, routing_key)
        publisher = Publisher(
            conn, exchange=exchange, routing_key=routing_key, backend=backend, auto_declare=False
        )
        # mandatory: the broker returns a message no queue is bound for,
        # where it would drop it silently; AMQP backends only.
        can_return = backend.returns_unroutable
        publisher.send(
            payload,
            content_type=content_type,
            content_encoding=content_encoding,
            mandatory=can_return,
        )
        if can_return:
            returned = _returned(backend)
            if returned is not None:
                raise CommandError(
                    f"unroutable: no queue is bound to exchange {exchange!r} for routing "
                    f"key {routing_key!r} on {shown}, so the broker returned the message "
                    f"({returned}); bind a queue, or use --declare-queue"
                )
        publisher.close()
    _out(
        f"published {len(payload)} bytes ({content_type}, {content_encoding}) to "
        f"exchange {exchange!r} with routing key {routing_key!r} on {shown}"
    )
    if memory:
        _note(f"{shown} lives in this process: the message is gone when carrot exits")
    return 0


# -- consume --------------------------------------------------------------------------


def _print_message(message: BaseMessage) -> None:
    try:
        data = message.payload
    except (DecodeError, SerializerNotInstalled) as exc:
        _note(f"cannot decode a {message.content_type} message ({exc}); printing the raw body")
        data = message.body
    _out(data if isinstance(data, str) else repr(data))


def cmd_consume(args: argparse.Namespace) -> int:
    """Print the messages of a queue, acking each after printing it."""
    from carrot.messaging import Consumer

    conn, _, shown = _connect(args.url)
    timeout = args.timeout
    if conn.create_backend().in_process and timeout is None:
        _note(f"{shown} lives in this process: nothing else can publish to it")
        timeout = 0.0
    printed = 0
    with conn:
        backend = conn.create_backend()
        if not backend.queue_exists(args.queue):
            raise CommandError(f"queue {args.queue!r} not found on {shown}")
        consumer = Consumer(conn, queue=args.queue, backend=backend, auto_declare=False)
        # basic.get, one message at a time: with --count (and with --no-ack)
        # nothing beyond the count leaves the queue.
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while not args.count or printed < args.count:
            message = consumer.fetch(no_ack=args.no_ack)
            if message is None:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = pause if deadline is None else min(pause, deadline - now)
                time.sleep(wait)
                pause = min(pause * 2, 0.25)
                continue
            _print_message(message)
            if not args.no_ack:
                message.ack()
            printed += 1
            pause = 0.01
            if timeout is not None:
                deadline = time.monotonic() + timeout
        consumer.close()
    if printed:
        return 0
    _note(f"no message on queue {args.queue!r} within {timeout:g} s")
    return EXIT_NO_MESSAGE


# -- bench ----------------------------------------------------------------------------


def run_bench(
    conn: BrokerConnection,
    count: int,
    size: int,
    progress: bool | None = None,
    subscribe_first: bool = False,
) -> dict[str, float]:
    """Publish ``count`` messages of ``size`` bytes, then consume them all.

    Messages are transient, on an exclusive queue of the default exchange;
    consuming acks each. The full comparison across backends and libraries
    lives in ``benchmarks/``; this measures the one connection given.

    :keyword subscribe_first: start the consumer before publishing (its
        callbacks still run only in the consume phase). STOMP needs it: the
        broker creates an exclusive queue only when it is subscribed to, and
        drops what is published to a queue that does not exist yet.

    :returns: ``publish_seconds``, ``consume_seconds`` and the rates
        ``publish_rate``/``consume_rate`` in messages per second.
    :raises CommandError: not all messages came back within
        :data:`RECEIVE_TIMEOUT` seconds of the last one.
    """
    queue = f"carrot.bench.{uuid.uuid4().hex[:12]}"
    with _delete_queue_afterwards(conn, queue):
        return _run_bench(conn, queue, count, size, progress, subscribe_first)


def _run_bench(
    conn: BrokerConnection,
    queue: str,
    count: int,
    size: int,
    progress: bool | None,
    subscribe_first: bool,
) -> dict[str, float]:
    from carrot.messaging import Consumer, Publisher

    body = os.urandom(size)
    consumer = Consumer(
        conn, queue=queue, exclusive=True, durable=False, auto_delete=True, auto_ack=True
    )
    publisher = Publisher(conn, exchange="", routing_key=queue, delivery_mode="transient")
    received = 0

    def on_message(data: Any, message: BaseMessage) -> None:
        nonlocal received
        received += 1
        bar.update()

    consumer.register_callback(on_message)
    if subscribe_first:
        consumer.qos(0, min(count, 1000))
        consumer.consume()
    bar = ProgressBar(count, "publish", enabled=progress)
    started = time.perf_counter()
    for _ in range(count):
        # Hot loop: what is measured.
        publisher.send(body, content_type="application/data", content_encoding="binary")
        bar.update()
    publish_seconds = time.perf_counter() - started
    bar.close()

    bar = ProgressBar(count, "consume", enabled=progress)
    if not subscribe_first:
        consumer.qos(0, min(count, 1000))
        consumer.consume()
    started = time.perf_counter()
    while received < count:
        before = received
        try:
            conn.drain_events(timeout=RECEIVE_TIMEOUT)
        except TimeoutError:
            if received == before:
                bar.close()
                raise CommandError(
                    f"only {received} of {count} messages came back "
                    f"(none in the last {RECEIVE_TIMEOUT:g} s)"
                ) from None
    consume_seconds = time.perf_counter() - started
    bar.close()
    consumer.close()
    publisher.close()
    return {
        "publish_seconds": publish_seconds,
        "consume_seconds": consume_seconds,
        "publish_rate": count / publish_seconds if publish_seconds else float("inf"),
        "consume_rate": count / consume_seconds if consume_seconds else float("inf"),
    }


def benchmarks_script() -> Path:
    """Where the full comparison (``benchmarks/run.py``) lives in a source checkout."""
    return Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _bench_compare(args: argparse.Namespace) -> int:
    """Run ``benchmarks/run.py`` against the broker of ``--broker``."""
    script = benchmarks_script()
    if not script.is_file():
        raise CommandError(f"bench --compare needs a source checkout of carrot: {script} not found")
    params = parse_url(args.broker)
    if getattr(get_backend_cls(params.get("backend_cls")), "protocol", None) != "AMQP":
        raise CommandError(
            "bench --compare measures AMQP clients against RabbitMQ: "
            "give --broker amqp://host:port// (or pika://)",
            exit_code=2,
        )
    argv = ["-n", str(args.count), "--rounds", str(args.rounds)]
    argv += ["--host", str(params["hostname"]), "--port", str(params.get("port") or 5672)]
    return subprocess.call([sys.executable, str(script), *argv])


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure publish and consume throughput on one broker (or compare clients)."""
    if args.compare:
        return _bench_compare(args)
    conn, _, shown = _connect(args.broker)
    with conn:
        _out(f"bench: {args.count} messages of {args.size} bytes through {shown}")
        backend = conn.create_backend()
        subscribe_first = backend.subscribe_before_publish
        if subscribe_first:
            _out(f"({backend.protocol}: subscribed before publishing, so that the queue exists)")
        result = run_bench(conn, args.count, args.size, subscribe_first=subscribe_first)
    _out(
        f"publish: {args.count} messages in {result['publish_seconds']:.3f} s = "
        f"{result['publish_rate']:,.0f} msg/s"
    )
    _out(
        f"consume: {args.count} messages in {result['consume_seconds']:.3f} s = "
        f"{result['consume_rate']:,.0f} msg/s"
    )
    return 0


# -- argument parsing -------------------------------------------------------------


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


_URL_HELP = (
    "broker URL: amqp://user:password@host:port/vhost (or amqps://), "
    "pika://... (pikas://), stomp://user:password@host:port/vhost (stomp+ssl://), "
    "redis://:password@host:port/db, memory:// or kombu+memory:// "
    "(AMQP and STOMP user and password default to guest)"
)

#: Appended to an option's help: argparse fills in its default.
_DEFAULT = " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``carrot`` and its commands."""
    debug_help = "show the traceback when something fails"
    # On each command too, so ``carrot ping URL --debug`` works; SUPPRESS
    # keeps the command from resetting a --debug given before it.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="carrot",
        description="Talk to a message broker the way carrot does.",
        epilog=(
            "examples:\n"
            "  carrot demo\n"
            "  carrot ping amqp://guest:guest@localhost//\n"
            "  carrot publish amqp://localhost// 'hello' --declare-queue hello\n"
            "  carrot consume amqp://localhost// --queue hello --count 1\n"
            "  carrot bench --broker amqp://localhost// --count 10000\n"
            "\nexit status: 0 ok, 1 failed, 2 usage error, 3 consume timed out empty"
        ),
        formatter_class=formatter,
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False,
        help="show the traceback when something fails",
    )
    parser.add_argument("--version", action="version", version=f"carrot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        parents=[debug],
        help="round-trip messages with every serializer",
        description=(
            "Publish and consume messages with each serializer (json, pickle, yaml and "
            "msgpack when installed, raw bytes), print what is sent and received, and "
            "check they match. Uses an exclusive queue the broker deletes afterwards."
        ),
    )
    demo.add_argument("--broker", default=DEFAULT_BROKER, metavar="URL", help=_URL_HELP + _DEFAULT)
    demo.add_argument(
        "--count",
        type=_positive_int,
        default=1,
        metavar="N",
        help="messages per serializer" + _DEFAULT,
    )
    demo.set_defaults(func=cmd_demo)

    ping = commands.add_parser(
        "ping",
        parents=[debug],
        help="connect and time a round trip",
        description=(
            "Connect, print the server's product and version, and time a few round "
            "trips: channel open/close (amqp://, pika://), a SUBSCRIBE receipt "
            "(stomp://), a PING (redis://)."
        ),
    )
    ping.add_argument("url", metavar="URL", help=_URL_HELP)
    ping.add_argument(
        "--count", type=_positive_int, default=3, metavar="N", help="round trips to time" + _DEFAULT
    )
    ping.set_defaults(func=cmd_ping)

    publish = commands.add_parser(
        "publish",
        parents=[debug],
        help="publish one message",
        description=(
            "Publish one message. The body is BODY, or stdin when BODY is missing or "
            "'-' (text when it is valid UTF-8, bytes otherwise). Without --serializer "
            "or --content-type text goes as text/plain and bytes as application/data; "
            "with --serializer a BODY that parses as JSON is sent as that value; "
            "with --content-type the body is sent as it is. The exchange must exist. "
            "On RabbitMQ a message no queue is bound for is returned by the broker: "
            "publish says so and exits 1."
        ),
    )
    publish.add_argument("url", metavar="URL", help=_URL_HELP)
    publish.add_argument("body", nargs="?", metavar="BODY", help="the message body")
    publish.add_argument(
        "--exchange", default="", metavar="X", help="exchange (default: the default exchange)"
    )
    publish.add_argument(
        "--routing-key", default=None, metavar="K", help="routing key (default: --declare-queue)"
    )
    publish.add_argument("--serializer", metavar="S", help="json, pickle, yaml, msgpack or raw")
    publish.add_argument("--content-type", metavar="T", help="send the body as this MIME type")
    publish.add_argument("--content-encoding", metavar="E", help="the body's charset or binary")
    publish.add_argument(
        "--declare-queue",
        metavar="Q",
        help="declare durable queue Q first (bound to --exchange with the routing key)",
    )
    publish.set_defaults(func=cmd_publish)

    consume = commands.add_parser(
        "consume",
        parents=[debug],
        help="print the messages of a queue",
        description=(
            "Print each message's decoded body on its own line (repr for what is not "
            "text) and ack it. Exits 0 once it printed a message and the count is "
            "reached or the queue stays empty for --timeout seconds; exits 3 when "
            "the timeout passes with nothing printed."
        ),
    )
    consume.add_argument("url", metavar="URL", help=_URL_HELP)
    consume.add_argument("--queue", required=True, metavar="Q", help="the queue to read")
    consume.add_argument(
        "--count",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="stop after N messages (default: 0, no limit)",
    )
    consume.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="stop after S seconds without a message (default: wait for ever)",
    )
    consume.add_argument(
        "--no-ack",
        action="store_true",
        help="take messages with no_ack: the broker removes them on delivery, no acks sent",
    )
    consume.set_defaults(func=cmd_consume)

    bench = commands.add_parser(
        "bench",
        parents=[debug],
        help="measure publish and consume throughput",
        description=(
            "Publish N transient messages of B bytes, then consume (and ack) them, "
            "printing messages per second both ways. benchmarks/ holds the full "
            "comparison across backends."
        ),
    )
    bench.add_argument("--broker", default=DEFAULT_BROKER, metavar="URL", help=_URL_HELP + _DEFAULT)
    bench.add_argument(
        "--count",
        type=_positive_int,
        default=10000,
        metavar="N",
        help="messages to send" + _DEFAULT,
    )
    bench.add_argument(
        "--size",
        type=_non_negative_int,
        default=100,
        metavar="B",
        help="body size in bytes" + _DEFAULT,
    )
    bench.add_argument(
        "--compare",
        action="store_true",
        help=(
            "run the full comparison (benchmarks/run.py, source checkout only): carrot "
            "against py-amqp, kombu and pika on the --broker RabbitMQ"
        ),
    )
    bench.add_argument(
        "--rounds",
        type=_positive_int,
        default=3,
        metavar="R",
        help="with --compare: rounds" + _DEFAULT,
    )
    bench.set_defaults(func=cmd_bench)
    return parser


def _silence_stdout() -> None:
    # Python would report the broken pipe again when flushing stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``carrot`` command line; return the exit status.

    :param argv: the arguments (default ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    debug = getattr(args, "debug", False)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except KeyboardInterrupt:
        _note("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (``carrot consume ... | head -1``): stop
        # quietly, as a process killed by SIGPIPE would (the message being
        # printed was not acked, so the broker keeps it).
        _silence_stdout()
        return 141
    except InvalidURLError as exc:
        if debug:
            traceback.print_exc()
        _note(str(exc))
        return 2
    except CommandError as exc:
        if debug:
            traceback.print_exc()
        _note(str(exc))
        return exc.exit_code
    except Exception as exc:  # one line per failure; the traceback is for --debug
        if debug:
            traceback.print_exc()
        _note(f"{args.command} failed: {_describe(exc)}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
