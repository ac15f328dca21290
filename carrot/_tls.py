"""TLS settings for broker connections: one :class:`ssl.SSLContext` that verifies by default.

:class:`~carrot.connection.BrokerConnection` takes ``ssl`` as ``True``, a
dict of options or a ready :class:`ssl.SSLContext`; :func:`tls_settings`
turns each into a context and the host name the broker's certificate must
name, so every backend checks certificates the same way:

* ``True``: :func:`ssl.create_default_context`: the system's CAs, the
  certificate chain and the host name verified;
* a dict with ``ca_certs``, ``certfile``, ``keyfile``, ``cert_reqs``,
  ``server_hostname`` (and carrot 0.10's ``ciphers``, ``ssl_version``): the
  same defaults, changed by the options given; ``cert_reqs=ssl.CERT_NONE``
  is the only way to turn verification off;
* an :class:`ssl.SSLContext`: used as it is; its ``check_hostname`` decides
  whether the host name is checked.

The host name checked is ``server_hostname`` when given, else the host
connected to. :func:`tls_error` rewrites a failed handshake into
:exc:`~carrot.exceptions.TLSError`, naming the broker and the reason.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from carrot.exceptions import TLSError, TLSVerificationError

__all__ = ["DEFAULT_TLS_PORT", "TLSSettings", "tls_error", "tls_settings"]

#: The AMQP-over-TLS port, used when TLS is on and no port is given.
DEFAULT_TLS_PORT = 5671

#: Keys of an ``ssl`` dict, beside those :func:`tls_settings` reads, that
#: carrot 0.10 passed to :func:`ssl.wrap_socket` and that a context makes
#: moot: the handshake is always done on connect, ragged EOFs suppressed.
_MOOT_KEYS = frozenset({"do_handshake_on_connect", "suppress_ragged_eofs"})
_KEYS = frozenset(
    {"ca_certs", "certfile", "keyfile", "cert_reqs", "server_hostname", "ciphers", "ssl_version"}
)


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """What a transport needs to wrap its socket."""

    #: The context to wrap the socket with.
    context: ssl.SSLContext
    #: The name sent as SNI and, when the context checks host names, the one
    #: the certificate must name.
    server_hostname: str | None


def tls_settings(option: Any, hostname: str | None) -> TLSSettings | None:
    """The TLS settings for ``BrokerConnection(ssl=option)`` to ``hostname``.

    :param option: ``False``/``None`` (no TLS), ``True``, a dict of options
        or an :class:`ssl.SSLContext`.
    :param hostname: the host connected to.
    :returns: None when TLS is off.
    :raises ValueError: an unknown key in the dict, or ``server_side``.
    :raises TypeError: ``option`` is none of the above.
    """
    if option is None or option is False:
        return None
    if option is True:
        return TLSSettings(ssl.create_default_context(), hostname)
    if isinstance(option, ssl.SSLContext):
        return TLSSettings(option, hostname)
    if isinstance(option, dict):
        return _from_dict(option, hostname)
    raise TypeError(
        f"ssl must be True, False, a dict of options or an ssl.SSLContext, not {option!r}"
    )


def _from_dict(options: dict[str, Any], hostname: str | None) -> TLSSettings:
    unknown = set(options) - _KEYS - _MOOT_KEYS - {"server_side"}
    if unknown:
        raise ValueError(
            f"unknown ssl option(s) {', '.join(sorted(map(repr, unknown)))} "
            f"(known: {', '.join(sorted(_KEYS))}; or pass an ssl.SSLContext)"
        )
    if options.get("server_side"):
        raise ValueError("ssl option server_side=True: a broker connection is a TLS client")
    cert_reqs = options.get("cert_reqs")
    cert_reqs = ssl.CERT_REQUIRED if cert_reqs is None else ssl.VerifyMode(cert_reqs)
    ssl_version = options.get("ssl_version")
    if ssl_version is None:
        context = ssl.create_default_context(cafile=options.get("ca_certs"))
    else:
        # compat: carrot 0.10 passed ssl_version to ssl.wrap_socket.
        context = ssl.SSLContext(ssl_version)
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        if options.get("ca_certs"):
            context.load_verify_locations(cafile=options["ca_certs"])
        else:
            context.load_default_certs()
    if cert_reqs == ssl.CERT_NONE:
        context.check_hostname = False  # must go first: it needs verification
    context.verify_mode = cert_reqs
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"))
    if options.get("ciphers"):
        context.set_ciphers(options["ciphers"])
    return TLSSettings(context, options.get("server_hostname") or hostname)


def tls_error(exc: ssl.SSLError, host: str, settings: TLSSettings) -> TLSError:
    """A :exc:`~carrot.exceptions.TLSError` naming ``host`` for a failed TLS handshake.

    :param exc: the :mod:`ssl` error raised.
    :param host: the broker as ``host:port``.
    """
    name = settings.server_hostname
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or exc.strerror or str(exc)
        return TLSVerificationError(host, reason, name)
    # reason: OpenSSL's short text ("TLSV1_ALERT_UNKNOWN_CA"); strerror the full one.
    reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
    return TLSError(host, reason, name)
