"""TLS against a real RabbitMQ TLS listener (the node of ``tlsnode.py``).

The server certificate names ``localhost`` only: connecting to
``127.0.0.1`` is connecting to a host the certificate does not name.
"""

from __future__ import annotations

import ssl
import uuid

import pytest
from tlsnode import TLS_PORT

from carrot.connection import BrokerConnection
from carrot.exceptions import TLSError, TLSVerificationError
from carrot.messaging import Consumer, Publisher

pytestmark = [pytest.mark.tls, pytest.mark.timeout(60)]


def connection(hostname: str, ssl_option, **kwargs) -> BrokerConnection:
    return BrokerConnection(
        hostname=hostname,
        port=TLS_PORT,
        userid="guest",
        password="guest",
        virtual_host="/",
        ssl=ssl_option,
        connect_timeout=5,
        **kwargs,
    )


def assert_tls_round_trip(conn: BrokerConnection) -> None:
    """The connection is TLS (checked for py-amqp's socket) and carries messages."""
    with conn:
        transport = getattr(conn.connection, "transport", None)
        if transport is not None:
            assert isinstance(transport.sock, ssl.SSLSocket)
            assert transport.sock.version() in ("TLSv1.2", "TLSv1.3")
        queue = f"carrot.test.tls.{uuid.uuid4().hex[:12]}"
        consumer = Consumer(conn, queue=queue, exchange=queue, routing_key=queue, auto_delete=True)
        publisher = Publisher(conn, exchange=queue, routing_key=queue, auto_delete=True)
        try:
            publisher.send({"over": "tls"})
            message = None
            for _ in range(50):
                message = consumer.fetch()
                if message is not None:
                    break
            assert message is not None
            assert message.payload == {"over": "tls"}
            message.ack()
        finally:
            consumer.backend.queue_delete(queue)
            publisher.close()
            consumer.close()


def test_dict_with_the_ca_and_the_right_host_connects(tls):
    assert_tls_round_trip(connection("localhost", {"ca_certs": tls.ca}))


def test_ssl_true_verifies_against_the_system_cas(tls, monkeypatch):
    # Our CA is not a system CA: refused.
    with pytest.raises(TLSVerificationError) as info:
        connection("localhost", True).connect()
    assert f"localhost:{TLS_PORT}" in str(info.value)
    # OpenSSL's default verify paths honour SSL_CERT_FILE: with it, trusted.
    monkeypatch.setenv("SSL_CERT_FILE", tls.ca)
    assert_tls_round_trip(connection("localhost", True))


def test_wrong_host_name_refused_naming_the_host(tls):
    conn = connection("127.0.0.1", {"ca_certs": tls.ca})
    with pytest.raises(TLSVerificationError) as info:
        conn.connect()
    text = str(info.value)
    assert f"127.0.0.1:{TLS_PORT}" in text
    assert "mismatch" in text  # "IP address mismatch" for an IP
    assert "'127.0.0.1'" in text
    assert isinstance(info.value, ssl.SSLCertVerificationError)
    assert isinstance(info.value, conn.connection_errors)
    conn.close()


def test_server_hostname_names_the_certificate_host(tls):
    option = {"ca_certs": tls.ca, "server_hostname": "localhost"}
    assert_tls_round_trip(connection("127.0.0.1", option))


def test_untrusted_ca_refused(tls):
    with pytest.raises(TLSVerificationError) as info:
        connection("localhost", {"ca_certs": tls.other_ca}).connect()
    text = str(info.value)
    assert f"localhost:{TLS_PORT}" in text
    assert "certificate" in text


def test_ssl_context(tls):
    context = ssl.create_default_context(cafile=tls.ca)
    assert_tls_round_trip(connection("localhost", context))
    with pytest.raises(TLSVerificationError, match="mismatch"):
        connection("127.0.0.1", context).connect()


def test_cert_none_is_the_explicit_opt_out(tls):
    assert_tls_round_trip(connection("127.0.0.1", {"cert_reqs": ssl.CERT_NONE}))


def test_client_certificate_mutual_tls(tls):
    option = {"ca_certs": tls.ca, "certfile": tls.client_cert}
    assert_tls_round_trip(connection("localhost", option))


def test_client_certificate_from_an_untrusted_ca_refused_by_the_broker(tls):
    option = {"ca_certs": tls.ca, "certfile": tls.untrusted_client_cert}
    conn = connection("localhost", option)
    # TLS 1.3 finishes the client's side of the handshake before the broker
    # checks the client certificate: its alert arrives with the first read.
    with pytest.raises((TLSError, ConnectionError)) as info:
        conn.connect()
    assert not isinstance(info.value, TLSVerificationError)  # the broker refused us
    conn.close()


def test_amqps_url_turns_on_verifying_tls(tls, monkeypatch):
    url = f"amqps://guest:guest@localhost:{TLS_PORT}//"
    with pytest.raises(TLSVerificationError):  # our CA is not a system CA
        BrokerConnection(url, connect_timeout=5).connect()
    monkeypatch.setenv("SSL_CERT_FILE", tls.ca)
    assert_tls_round_trip(BrokerConnection(url, connect_timeout=5))
    wrong_host = f"amqps://guest:guest@127.0.0.1:{TLS_PORT}//"
    with pytest.raises(TLSVerificationError, match="mismatch"):
        BrokerConnection(wrong_host, connect_timeout=5).connect()


def test_amqps_url_with_explicit_ssl_options(tls):
    url = f"amqps://guest:guest@127.0.0.1:{TLS_PORT}//"
    option = {"ca_certs": tls.ca, "server_hostname": "localhost"}
    assert_tls_round_trip(BrokerConnection(url, ssl=option, connect_timeout=5))


@pytest.mark.parametrize(
    ("hostname", "ca_name", "ok"),
    [("localhost", "ca", True), ("127.0.0.1", "ca", False), ("localhost", "other_ca", False)],
    ids=["right-host", "wrong-host", "untrusted-ca"],
)
def test_pika_backend_verifies_too(tls, hostname, ca_name, ok):
    pytest.importorskip("pika")
    conn = connection(hostname, {"ca_certs": getattr(tls, ca_name)}, backend_cls="pika")
    try:
        if ok:
            assert_tls_round_trip(conn)
        else:
            with pytest.raises(conn.connection_errors):
                conn.connect()
    finally:
        conn.close()
