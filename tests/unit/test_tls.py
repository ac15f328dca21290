"""carrot._tls: what each form of ``ssl=`` turns into (no sockets)."""

from __future__ import annotations

import ssl

import pytest

from carrot._tls import DEFAULT_TLS_PORT, TLSSettings, tls_error, tls_settings
from carrot.connection import BrokerConnection
from carrot.exceptions import TLSError, TLSVerificationError

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("off", [False, None])
def test_no_tls(off):
    assert tls_settings(off, "h") is None


def test_true_verifies_chain_and_host_name():
    settings = tls_settings(True, "broker.example")
    assert settings.context.verify_mode == ssl.CERT_REQUIRED
    assert settings.context.check_hostname
    assert settings.server_hostname == "broker.example"


def test_dict_verifies_by_default_with_its_ca(ca, tmp_path):
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    settings = tls_settings({"ca_certs": str(cafile)}, "broker.example")
    assert settings.context.verify_mode == ssl.CERT_REQUIRED
    assert settings.context.check_hostname
    assert len(settings.context.get_ca_certs()) == 1
    assert settings.server_hostname == "broker.example"


def test_dict_server_hostname_and_client_certificate(ca, tmp_path):
    client = ca.issue_cert("client.example")
    certfile = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    settings = tls_settings({"certfile": str(certfile), "server_hostname": "cert-name"}, "10.0.0.1")
    assert settings.server_hostname == "cert-name"


def test_dict_cert_none_is_the_explicit_way_out():
    settings = tls_settings({"cert_reqs": ssl.CERT_NONE}, "h")
    assert settings.context.verify_mode == ssl.CERT_NONE
    assert not settings.context.check_hostname


def test_dict_moot_keys_accepted_unknown_keys_refused():
    tls_settings({"do_handshake_on_connect": True, "suppress_ragged_eofs": True}, "h")
    with pytest.raises(ValueError, match="'ca_cert'"):
        tls_settings({"ca_cert": "/typo.pem"}, "h")
    with pytest.raises(ValueError, match="server_side"):
        tls_settings({"server_side": True}, "h")


def test_context_used_as_it_is():
    context = ssl.create_default_context()
    settings = tls_settings(context, "h")
    assert settings == TLSSettings(context, "h")


def test_bad_type_named():
    with pytest.raises(TypeError, match="'yes'"):
        tls_settings("yes", "h")


def test_tls_error_names_host_and_reason():
    settings = TLSSettings(ssl.create_default_context(), "name.example")
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "unable to get local issuer certificate"
    err = tls_error(exc, "h:5671", settings)
    assert isinstance(err, TLSVerificationError)
    assert "h:5671" in str(err) and "local issuer" in str(err)
    other = ssl.SSLError(1, "[SSL] wrong version number")
    assert type(tls_error(other, "h:5671", settings)) is TLSError


def test_port_defaults_to_the_tls_port():
    assert DEFAULT_TLS_PORT == 5671
    assert BrokerConnection("h", ssl=True).host == "h:5671"
    assert BrokerConnection("h", ssl={"cert_reqs": ssl.CERT_NONE}).info()["port"] == 5671
    assert BrokerConnection("h", ssl=True, port=5999).host == "h:5999"
    assert BrokerConnection("h").host == "h:5672"


class _UntrustedBroker:
    """A backend whose every connection attempt fails certificate verification."""

    default_port = 5672
    default_tls_port = 5671
    connection_errors = (OSError,)
    recoverable_connection_errors = (OSError,)
    attempts = 0

    def __init__(self, connection, **kwargs):
        self.connection = connection

    def establish_connection(self):
        type(self).attempts += 1
        raise TLSVerificationError("h:5671", "unable to get local issuer certificate", "h")


def test_ensure_connection_raises_a_certificate_failure_at_once():
    _UntrustedBroker.attempts = 0
    errors = []
    conn = BrokerConnection("h", "u", "p", ssl=True, backend_cls=_UntrustedBroker)
    with pytest.raises(TLSVerificationError, match="local issuer"):
        conn.ensure_connection(errback=lambda exc, interval: errors.append(exc), max_retries=5)
    assert _UntrustedBroker.attempts == 1
    assert errors == []
