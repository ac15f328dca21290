"""carrot.exceptions: one root, builtin bases kept where carrot raised builtins."""

from __future__ import annotations

import pickle

import pytest

from carrot import exceptions
from carrot.exceptions import (
    BackendNotFound,
    CarrotError,
    ClientNotInstalled,
    ConfirmTimeoutError,
    ConnectionClosedError,
    ConnectionLimitExceeded,
    ContentDisallowed,
    DecodeError,
    EncodeError,
    FilterWithAutoAckError,
    InvalidURLError,
    MessageNacked,
    MessageReturned,
    MessageStateError,
    MissingConnectionSetting,
    SerializerNotInstalled,
    TLSError,
    TLSVerificationError,
    UnknownDeliveryModeError,
)

ALL = [
    BackendNotFound,
    ClientNotInstalled,
    MissingConnectionSetting,
    InvalidURLError,
    ConnectionLimitExceeded,
    ConnectionClosedError,
    MessageStateError,
    SerializerNotInstalled,
    EncodeError,
    DecodeError,
    ContentDisallowed,
    TLSError,
    TLSVerificationError,
    FilterWithAutoAckError,
    UnknownDeliveryModeError,
    MessageNacked,
    MessageReturned,
    ConfirmTimeoutError,
]


def test_all_lists_every_exception() -> None:
    names = {cls.__name__ for cls in ALL}
    assert set(exceptions.__all__) == names | {"CarrotError", "CarrotWarning"}


@pytest.mark.parametrize("cls", ALL)
def test_rooted_at_carrot_error(cls: type) -> None:
    assert issubclass(cls, CarrotError)
    assert issubclass(CarrotError, Exception)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (BackendNotFound, ImportError),
        (ClientNotInstalled, ImportError),
        (MissingConnectionSetting, KeyError),
        (InvalidURLError, ValueError),
        (EncodeError, TypeError),
        (EncodeError, ValueError),
        (DecodeError, ValueError),
    ],
)
def test_builtin_bases_kept_for_old_except_clauses(cls: type, builtin: type) -> None:
    assert issubclass(cls, builtin)


def test_backend_not_found_names_it_and_lists_aliases() -> None:
    from carrot.backends import BACKEND_ALIASES

    exc = BackendNotFound("rabbit", "not an alias")
    text = str(exc)
    assert "'rabbit'" in text
    assert "not an alias" in text
    for alias in BACKEND_ALIASES:
        assert alias in text
    assert exc.name_requested == "rabbit"


def test_client_not_installed_names_the_pip_package() -> None:
    exc = ClientNotInstalled("stomp", "stomp.py")
    assert "pip install stomp.py" in str(exc)
    assert exc.backend == "stomp"
    assert exc.package == "stomp.py"


def test_missing_connection_setting_is_readable_not_a_repr() -> None:
    exc = MissingConnectionSetting("hostname")
    assert str(exc) == "Missing hostname for AMQP connection."
    assert exc.setting == "hostname"
    with pytest.raises(KeyError):
        raise exc


def test_invalid_url_error_names_the_url_masked() -> None:
    exc = InvalidURLError("amqp://u:s3cret@h:x//", "bad port")
    assert str(exc) == "invalid broker URL 'amqp://u:***@h:x//': bad port"
    assert (exc.url, exc.reason) == ("amqp://u:s3cret@h:x//", "bad port")


def test_connection_limit_exceeded_names_the_limit() -> None:
    exc = ConnectionLimitExceeded(4)
    assert exc.limit == 4
    assert "4" in str(exc)


@pytest.mark.parametrize(
    "exc",
    [
        BackendNotFound("x", "why"),
        ClientNotInstalled("pika", "pika"),
        MissingConnectionSetting("password"),
        InvalidURLError("amqp://u:pw@h:x//", "bad port"),
        ConnectionLimitExceeded(3),
        MessageStateError("already acked"),
        SerializerNotInstalled("no yaml"),
        EncodeError("bad"),
        DecodeError("bad"),
        ConfirmTimeoutError(3, 1.5),
        ContentDisallowed("application/x-python-serialize", {"application/json"}),
        TLSError("h:5671", "wrong version number", "h"),
        TLSVerificationError("h:5671", "Hostname mismatch", "h"),
    ],
)
def test_pickles(exc: CarrotError) -> None:
    # Errors cross process boundaries (multiprocessing pools, task results).
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)


def test_content_disallowed_names_the_type_and_what_is_accepted() -> None:
    exc = ContentDisallowed("application/x-python-serialize", {"application/json", "text/x"})
    assert isinstance(exc, DecodeError)
    assert isinstance(exc, ValueError)
    text = str(exc)
    assert "'application/x-python-serialize'" in text
    assert "application/json, text/x" in text
    assert exc.content_type == "application/x-python-serialize"
    assert "accepts nothing" in str(ContentDisallowed("a/b", ()))


def test_tls_errors_are_ssl_errors_naming_the_broker() -> None:
    import ssl

    exc = TLSVerificationError("127.0.0.1:5671", "certificate has expired", "broker.example")
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert isinstance(exc, OSError)
    assert "127.0.0.1:5671" in str(exc)
    assert "certificate has expired" in str(exc)
    assert "'broker.example'" in str(exc)
    plain = TLSError("h:5671", "tlsv1 alert unknown ca")
    assert isinstance(plain, ssl.SSLError)
    assert not isinstance(plain, ssl.SSLCertVerificationError)
    assert str(plain) == "TLS handshake with the broker at h:5671 failed: tlsv1 alert unknown ca"
