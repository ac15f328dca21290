"""carrot.backends.pyamqplib against the local RabbitMQ."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterator

import amqp
import pytest
from amqp import transport as amqp_transport

from carrot.backends.pyamqplib import (
    Backend,
    Connection,
    Message,
    QueueAlreadyExistsWarning,
)
from carrot.connection import BrokerConnection

pytestmark = pytest.mark.rabbitmq


def drain_until(conn: BrokerConnection, predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Dispatch events until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"condition not met within {timeout} s")
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=min(remaining, 1.0))


def nothing_arrives(conn: BrokerConnection, within: float = 0.3) -> bool:
    """Whether no event at all arrives on ``conn`` within ``within`` seconds."""
    try:
        conn.drain_events(timeout=within)
    except TimeoutError:
        return True
    return False


def get_within(backend: Backend, queue: str, timeout: float = 10, **kwargs) -> Message:
    """basic_get until a message is there (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = backend.get(queue, **kwargs)
        if message is not None:
            return message
    raise AssertionError(f"no message on {queue!r} within {timeout} s")


def ready_count(queue: str) -> int:
    """Messages ready in ``queue``, asked on a connection of its own."""
    with amqp.Connection("127.0.0.1:5672", "guest", "guest", connect_timeout=5) as conn:
        ch = conn.channel()
        _, count, _ = ch.queue_declare(queue, passive=True)
        ch.close()
        return count


@pytest.fixture
def backend(amqp_connection: BrokerConnection) -> Iterator[Backend]:
    backend = amqp_connection.create_backend()
    yield backend
    backend.close()


@pytest.fixture
def queue(backend: Backend, unique: str, amqp_cleanup) -> str:
    """A fresh queue on the default exchange (routing key = its name)."""
    backend.queue_declare(amqp_cleanup.queue(unique), False, False, False)
    return unique


def send(backend: Backend, routing_key: str, body: bytes = b"x", exchange: str = "", **kw) -> None:
    backend.publish(backend.prepare_message(body, 1), exchange, routing_key, **kw)


# -- declarations -----------------------------------------------------------------------


def test_declare_bind_publish_get(backend: Backend, unique: str, amqp_cleanup) -> None:
    exchange = amqp_cleanup.exchange(unique + ".x")
    queue = amqp_cleanup.queue(unique)
    backend.exchange_declare(exchange, "topic", False, True)
    backend.queue_declare(queue, False, False, False, arguments={"x-max-length": 10})
    backend.queue_bind(queue, exchange, "a.*")
    message = backend.prepare_message(
        b'{"n": 1}', 2, priority=3, content_type="application/json", content_encoding="utf-8"
    )
    backend.publish(message, exchange, "a.b", headers={"h": "v"})
    got = get_within(backend, queue)
    assert isinstance(got, Message)
    # SPEC: bytes, or str when decoded with the content_encoding (py-amqp does).
    assert got.body in (b'{"n": 1}', '{"n": 1}')
    assert got.payload == {"n": 1}
    assert got.content_type == "application/json"
    assert got.headers == {"h": "v"}
    assert got.properties["priority"] == 3
    assert got.properties["delivery_mode"] == 2
    assert got.delivery_info["exchange"] == exchange
    assert got.delivery_info["routing_key"] == "a.b"
    assert got.delivery_info["redelivered"] is False
    assert got.delivery_info["message_count"] == 0
    got.ack()
    assert backend.get(queue) is None


def test_purge_and_delete_return_counts(backend: Backend, queue: str) -> None:
    for _ in range(3):
        send(backend, queue)
    assert backend.queue_purge(queue) == 3
    assert backend.queue_purge(queue) == 0
    send(backend, queue)
    send(backend, queue)
    assert backend.queue_delete(queue) == 2
    assert not backend.queue_exists(queue)


def test_queue_delete_if_empty_refuses(backend: Backend, queue: str) -> None:
    send(backend, queue)
    with pytest.raises(amqp.exceptions.PreconditionFailed):
        backend.queue_delete(queue, if_empty=True)
    # The backend opens a new channel after the broker closed the old one.
    assert backend.queue_purge(queue) == 1


def test_warn_if_exists(backend: Backend, queue: str, unique: str, amqp_cleanup) -> None:
    with pytest.warns(QueueAlreadyExistsWarning):
        backend.queue_declare(queue, False, False, False, warn_if_exists=True)
    fresh = amqp_cleanup.queue(unique + ".fresh")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.queue_declare(fresh, False, False, False, warn_if_exists=True)


def test_raw_channel_is_py_amqp(backend: Backend, unique: str, amqp_cleanup) -> None:
    # camqadm called py-amqp/amqplib methods on backend.channel directly.
    channel = backend.channel
    assert isinstance(channel, amqp.Channel)
    exchange = amqp_cleanup.exchange(unique)
    backend.exchange_declare(exchange, "fanout", False, False)
    channel.exchange_delete(exchange)
    with pytest.raises(amqp.exceptions.NotFound):
        backend.channel.exchange_declare(exchange, "fanout", passive=True)


# -- queue_exists and 404 ---------------------------------------------------------------


def test_queue_exists(backend: Backend, queue: str, unique: str) -> None:
    assert backend.queue_exists(queue) is True
    assert backend.queue_exists(unique + ".missing") is False


def test_queue_exists_404_keeps_channel_and_consumer(
    amqp_connection: BrokerConnection, backend: Backend, queue: str, unique: str
) -> None:
    got: list[amqp.Message] = []
    backend.declare_consumer(queue, True, got.append, "ctag-" + unique)
    channel = backend.channel
    assert backend.queue_exists(unique + ".missing") is False
    assert backend.channel is channel
    assert channel.is_open
    send(backend, queue, b"after 404")
    drain_until(amqp_connection, lambda: bool(got))
    assert got[0].body == b"after 404"
    assert backend.queue_exists(queue) is True


# -- consuming ---------------------------------------------------------------------------


def test_consume_and_cancel(amqp_connection, backend: Backend, queue: str, unique: str) -> None:
    got: list[amqp.Message] = []
    tag = "ctag-" + unique
    assert backend.declare_consumer(queue, False, got.append, tag) == tag
    for n in range(3):
        send(backend, queue, b"%d" % n)
    it = backend.consume()
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        assert next(it) is True
    assert [m.body for m in got] == [b"0", b"1", b"2"]
    for m in got:
        backend.message_to_python(m).ack()
    backend.cancel(tag)
    send(backend, queue, b"after cancel")
    assert nothing_arrives(amqp_connection)
    assert get_within(backend, queue, no_ack=True).body == b"after cancel"


def test_consume_limit(backend: Backend, queue: str, unique: str) -> None:
    got: list[amqp.Message] = []
    backend.declare_consumer(queue, True, got.append, "ctag-" + unique)
    for _ in range(2):
        send(backend, queue)
    assert list(backend.consume(limit=2)) == [True, True]


def test_consume_ends_after_close(backend: Backend, queue: str, unique: str) -> None:
    backend.declare_consumer(queue, True, lambda m: None, "ctag-" + unique)
    backend.close()
    assert list(backend.consume(limit=5)) == []


@pytest.mark.parametrize(
    ("settle", "comes_back"), [("ack", False), ("reject", False), ("requeue", True)]
)
def test_ack_reject_requeue(backend: Backend, queue: str, settle: str, comes_back: bool) -> None:
    send(backend, queue, b"m")
    message = get_within(backend, queue)
    getattr(message, settle)()
    assert message.acknowledged
    if comes_back:
        again = get_within(backend, queue)
        assert again.body == b"m"
        assert again.delivery_info["redelivered"] is True
        again.ack()
    backend.channel.basic_qos(0, 0, False)  # a round trip: the settlement was processed
    assert backend.get(queue) is None
    assert ready_count(queue) == 0


def test_qos_prefetch_count(amqp_connection, backend: Backend, queue: str, unique: str) -> None:
    backend.qos(0, 1)
    got: list[amqp.Message] = []
    backend.declare_consumer(queue, False, got.append, "ctag-" + unique)
    for n in range(3):
        send(backend, queue, b"%d" % n)
    drain_until(amqp_connection, lambda: len(got) == 1)
    assert nothing_arrives(amqp_connection)  # the window is full
    assert len(got) == 1
    backend.ack(got[0].delivery_tag)
    drain_until(amqp_connection, lambda: len(got) == 2)
    assert [m.body for m in got] == [b"0", b"1"]


def test_flow_pauses_and_resumes_deliveries(
    amqp_connection, backend: Backend, queue: str, unique: str
) -> None:
    got: list[amqp.Message] = []
    backend.declare_consumer(queue, True, got.append, "ctag-" + unique)
    send(backend, queue, b"before")
    drain_until(amqp_connection, lambda: len(got) == 1)

    backend.flow(False)
    send(backend, queue, b"while paused")
    assert nothing_arrives(amqp_connection)
    assert [m.body for m in got] == [b"before"]
    assert ready_count(queue) == 1  # kept in the queue, not lost

    backend.flow(True)
    drain_until(amqp_connection, lambda: len(got) == 2)
    assert [m.body for m in got] == [b"before", b"while paused"]
    assert backend.channel.is_open


# -- publishing -------------------------------------------------------------------------


def test_mandatory_unroutable_is_returned(backend: Backend, unique: str, amqp_cleanup) -> None:
    exchange = amqp_cleanup.exchange(unique)
    backend.exchange_declare(exchange, "direct", False, False)
    send(backend, "nobody-bound", b"lost", exchange=exchange, mandatory=True)
    # Any synchronous call makes py-amqp read the basic.return sent before its reply.
    deadline = time.monotonic() + 10
    while not backend.returned_messages and time.monotonic() < deadline:
        backend.channel.basic_qos(0, 0, False)
    assert len(backend.returned_messages) == 1
    reply_code, reply_text, ret_exchange, routing_key, message = backend.returned_messages[0]
    assert reply_code == 312
    assert "NO_ROUTE" in reply_text
    assert (ret_exchange, routing_key) == (exchange, "nobody-bound")
    assert message.body == b"lost"
    assert backend.channel.is_open


def test_publish_without_mandatory_drops_silently(backend: Backend, unique, amqp_cleanup) -> None:
    exchange = amqp_cleanup.exchange(unique)
    backend.exchange_declare(exchange, "direct", False, False)
    send(backend, "nobody-bound", exchange=exchange)
    backend.channel.basic_qos(0, 0, False)
    assert list(backend.returned_messages) == []


# -- Connection: drain_events and wait_multi ------------------------------------------------


def test_connection_class(amqp_connection: BrokerConnection) -> None:
    assert isinstance(amqp_connection.connection, Connection)


def test_connection_drain_events_signature(amqp_connection: BrokerConnection) -> None:
    client = amqp_connection.connection
    with pytest.raises(socket.timeout):
        client.drain_events(allowed_methods=[(60, 60)], timeout=0.1)
    with pytest.raises(socket.timeout):
        client.drain_events(None, 0.1)


def test_wait_multi(amqp_connection, unique: str, amqp_cleanup) -> None:
    b1 = amqp_connection.create_backend()
    b2 = amqp_connection.create_backend()
    q1 = amqp_cleanup.queue(unique + ".1")
    q2 = amqp_cleanup.queue(unique + ".2")
    b1.queue_declare(q1, False, False, False)
    b2.queue_declare(q2, False, False, False)
    got1: list[amqp.Message] = []
    got2: list[amqp.Message] = []
    b1.declare_consumer(q1, True, got1.append, "c1-" + unique)
    b2.declare_consumer(q2, True, got2.append, "c2-" + unique)
    client = amqp_connection.connection

    with pytest.raises(socket.timeout):
        client.wait_multi([b1.channel, b2.channel], timeout=0.2)

    send(b2, q2, b"for 2")
    client.wait_multi([b1.channel, b2.channel], timeout=10)
    assert [m.body for m in got2] == [b"for 2"]

    # A delivery for a channel we are not waiting on is dispatched, and the
    # wait goes on until one of ours arrives.
    send(b2, q2, b"other")
    b2.channel.basic_qos(0, 0, False)  # make sure it is on the wire first
    send(b1, q1, b"for 1")
    deadline = time.monotonic() + 10
    while not got1 and time.monotonic() < deadline:
        client.wait_multi([b1.channel], timeout=10)
    assert [m.body for m in got1] == [b"for 1"]
    assert [m.body for m in got2] == [b"for 2", b"other"]
    b1.close()
    b2.close()


# -- subclasses that plug in their own connection -----------------------------------------------


class CountingTransport(amqp_transport.TCPTransport):
    """Stands in for another socket library's transport."""

    made = 0

    def __init__(self, *args, **kwargs) -> None:
        type(self).made += 1
        super().__init__(*args, **kwargs)


class PluggedConnection(Connection):
    def Transport(
        self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None, **kwargs
    ):
        return CountingTransport(host, connect_timeout=connect_timeout, **kwargs)


class PluggedBackend(Backend):
    """Written like carrot 0.10 era code: builds the connection, never connects it."""

    def establish_connection(self):
        conninfo = self.connection
        return PluggedConnection(
            host=conninfo.host,
            userid=conninfo.userid,
            password=conninfo.password,
            virtual_host=conninfo.virtual_host,
            insist=conninfo.insist,
            ssl=conninfo.ssl,
            connect_timeout=conninfo.connect_timeout,
        )


def test_subclass_overriding_establish_connection(amqp_conninfo, unique, amqp_cleanup) -> None:
    before = CountingTransport.made
    with BrokerConnection(**amqp_conninfo, backend_cls=PluggedBackend) as conn:
        client = conn.connection
        assert isinstance(client, PluggedConnection)
        assert client.connected
        assert CountingTransport.made == before + 1
        backend = conn.create_backend()
        assert isinstance(backend, PluggedBackend)
        queue = amqp_cleanup.queue(unique)
        backend.queue_declare(queue, False, False, False)
        got: list[amqp.Message] = []
        backend.declare_consumer(queue, True, got.append, "ctag-" + unique)
        send(backend, queue, b"through the plugged transport")
        drain_until(conn, lambda: bool(got))
        assert got[0].body == b"through the plugged transport"
        backend.close()
    assert not client.connected


# -- TLS through a local TLS-terminating proxy ------------------------------------------------
#
# No TLS-enabled broker is available, so the tests put a small TLS proxy,
# owned by the test, in front of the plain-TCP RabbitMQ. That proves our
# transport selection and SSL wrapping end to end (handshake, SNI, hostname
# checks) for each form of ``ssl``.


def _make_certificates(directory) -> tuple[str, str, str]:
    """A CA and a server certificate for localhost/127.0.0.1: (ca, cert, key) paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carrot test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(ca_path), str(cert_path), str(key_path)


class TLSProxy:
    """Accepts TLS on a local port and relays the plain bytes to RabbitMQ."""

    def __init__(self, cert: str, key: str) -> None:
        import threading

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.handshakes = 0
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        import threading

        while not self.stop.is_set():
            try:
                raw, _ = self.server.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._relay, args=(raw,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _relay(self, raw: socket.socket) -> None:
        import select

        try:
            raw.settimeout(5)
            client = self.context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        self.handshakes += 1
        upstream = socket.create_connection(("127.0.0.1", 5672), timeout=5)
        client.setblocking(False)
        upstream.setblocking(False)
        peers = {client: upstream, upstream: client}
        try:
            while not self.stop.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                if client.pending():
                    readable = [*readable, client]
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    if not data:
                        return
                    peers[sock].setblocking(True)
                    peers[sock].sendall(data)
                    peers[sock].setblocking(False)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.server.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[tuple[TLSProxy, str]]:
    """(proxy, CA file) of a TLS proxy in front of RabbitMQ."""
    pytest.importorskip("cryptography")
    ca, cert, key = _make_certificates(tmp_path_factory.mktemp("tls"))
    proxy = TLSProxy(cert, key)
    try:
        yield proxy, ca
    finally:
        proxy.close()


def tls_round_trip(conn: BrokerConnection, queue: str) -> bytes:
    backend = conn.create_backend()
    backend.queue_declare(queue, False, False, True)
    send(backend, queue, b"over tls")
    body = get_within(backend, queue, no_ack=True).body
    backend.close()
    return body


def test_tls_with_an_ssl_context(tls, amqp_conninfo, unique, amqp_cleanup) -> None:
    proxy, ca = tls
    context = ssl.create_default_context(cafile=ca)
    before = proxy.handshakes
    conninfo = dict(amqp_conninfo, hostname="localhost", port=proxy.port, ssl=context)
    with BrokerConnection(**conninfo) as conn:
        client = conn.connection
        assert isinstance(client.transport, amqp_transport.SSLTransport)
        assert client.transport.sock.server_hostname == "localhost"  # SNI and hostname check
        assert tls_round_trip(conn, amqp_cleanup.queue(unique)) == b"over tls"
    assert proxy.handshakes == before + 1


def test_tls_with_a_dict_of_options(tls, amqp_conninfo, unique, amqp_cleanup) -> None:
    proxy, ca = tls
    options = {"ca_certs": ca, "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost"}
    conninfo = dict(amqp_conninfo, hostname="localhost", port=proxy.port, ssl=options)
    with BrokerConnection(**conninfo) as conn:
        assert isinstance(conn.connection.transport, amqp_transport.SSLTransport)
        assert tls_round_trip(conn, amqp_cleanup.queue(unique)) == b"over tls"


def test_tls_true_verifies_against_the_system_cas(tls, amqp_conninfo) -> None:
    # ssl=True is py-amqp's default TLS: the certificate must be trusted by
    # the system, which our test CA is not.
    proxy, _ = tls
    conninfo = dict(amqp_conninfo, hostname="localhost", port=proxy.port, ssl=True)
    conn = BrokerConnection(**conninfo)
    with pytest.raises(ssl.SSLError):
        conn.connect()
    assert isinstance(ssl.SSLError(), conn.connection_errors)


def test_tls_context_checks_the_hostname(tls, amqp_conninfo) -> None:
    proxy, ca = tls
    context = ssl.create_default_context(cafile=ca)
    # The certificate names localhost and 127.0.0.1, not this name.
    conninfo = dict(amqp_conninfo, hostname="127.0.0.2", port=proxy.port, ssl=context)
    conn = BrokerConnection(**conninfo)
    with pytest.raises((ssl.SSLError, OSError)):
        conn.connect()


def test_tls_handshake_honours_connect_timeout(amqp_conninfo) -> None:
    # A server that accepts TCP and never answers the TLS handshake.
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    outcome: list[BaseException | None] = []
    conninfo = dict(amqp_conninfo, port=port, ssl=ssl.create_default_context(), connect_timeout=0.5)
    conn = BrokerConnection(**conninfo)

    def connect() -> None:
        try:
            conn.connect()
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(30)
    server.close()
    assert not thread.is_alive(), "connect() ignored connect_timeout during the TLS handshake"
    assert isinstance(outcome[0], conn.connection_errors)


def test_backend_recovers_after_ensure_connection(amqp_connection, unique, amqp_cleanup) -> None:
    backend = amqp_connection.create_backend()
    queue = amqp_cleanup.queue(unique)
    backend.queue_declare(queue, False, False, False)
    old_channel = backend.channel
    amqp_connection.connection.transport.sock.shutdown(socket.SHUT_RDWR)
    with pytest.raises(amqp_connection.connection_errors):
        amqp_connection.drain_events(timeout=5)
    amqp_connection.ensure_connection(max_retries=3)
    # The backend opens a new channel on the new connection.
    send(backend, queue, b"after reconnect")
    assert backend.channel is not old_channel
    assert get_within(backend, queue, no_ack=True).body == b"after reconnect"
    backend.close()


def test_flow_under_load_loses_nothing(
    amqp_connection, backend: Backend, queue: str, unique
) -> None:
    # Pausing while deliveries are in flight: those that arrive after the
    # cancel are requeued by the client, so every message is seen once resumed.
    total = 200
    backend.qos(0, 50)
    got: list[bytes] = []

    def on_message(raw: amqp.Message) -> None:
        got.append(bytes(raw.body))
        backend.ack(raw.delivery_info["delivery_tag"])

    backend.declare_consumer(queue, False, on_message, "ctag-" + unique)
    for n in range(total):
        send(backend, queue, b"%d" % n)
    drain_until(amqp_connection, lambda: len(got) >= 10)
    backend.flow(False)
    paused_at = len(got)
    # Frames already in flight may still be read; none reaches the callback.
    for _ in range(5):
        if nothing_arrives(amqp_connection, within=0.1):
            break
    assert len(got) == paused_at
    backend.flow(True)
    drain_until(amqp_connection, lambda: len(set(got)) >= total, timeout=30)
    assert set(got) == {b"%d" % n for n in range(total)}
    backend.channel.basic_qos(0, 0, False)  # a round trip: the acks were processed
    assert ready_count(queue) == 0


def test_flow_pause_with_a_full_prefetch_window(
    amqp_connection, backend: Backend, queue: str, unique
) -> None:
    # Nothing is acked before the pause, so at most the window (5) is delivered.
    total = 50
    backend.qos(0, 5)
    got: list[amqp.Message] = []
    acking = False

    def on_message(raw: amqp.Message) -> None:
        got.append(raw)
        if acking:
            backend.ack(raw.delivery_info["delivery_tag"])

    backend.declare_consumer(queue, False, on_message, "ctag-" + unique)
    for n in range(total):
        send(backend, queue, b"%d" % n)
    drain_until(amqp_connection, lambda: len(got) == 5)
    backend.flow(False)
    assert nothing_arrives(amqp_connection)
    assert len(got) == 5
    for raw in got:
        backend.ack(raw.delivery_info["delivery_tag"])
    assert nothing_arrives(amqp_connection)  # acks free the window, but we are paused
    assert len(got) == 5
    assert ready_count(queue) == total - 5
    acking = True
    backend.flow(True)
    drain_until(amqp_connection, lambda: len(got) == total, timeout=30)
    assert sorted(int(m.body) for m in got) == list(range(total))


def test_close_after_the_broker_cancelled_a_consumer_releases_the_socket(
    amqp_conninfo, unique, amqp_cleanup
) -> None:
    # Deleting a queue while consuming makes the broker send basic.cancel,
    # which py-amqp raises from inside the close handshake.
    conn = BrokerConnection(**amqp_conninfo)
    backend = conn.create_backend()
    queue = amqp_cleanup.queue(unique)
    backend.queue_declare(queue, False, False, False)
    backend.declare_consumer(queue, False, lambda message: None, f"{unique}.tag")
    backend.channel.queue_delete(queue)  # the broker cancels our consumer
    raw = conn.connection
    conn.close()  # swallows the ConsumerCancelled, as carrot's close swallowed socket errors
    assert not raw.connected
    # (not raw.transport: py-amqp's property would connect again)
    assert raw._transport is None
