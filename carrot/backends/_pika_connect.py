"""Opening a pika connection: its parameters from carrot's settings, and what a failure means.

:func:`connection_parameters` turns a
:class:`~carrot.connection.BrokerConnection`'s settings (host, login, TLS,
timeouts, heartbeat) into pika's; :func:`open_connection` opens it and
raises :exc:`PikaConnectError` where pika cannot reach the broker. The
error tuples sort pika's exceptions into connection errors, channel errors
and the connection errors worth retrying. Public names are re-exported by
:mod:`carrot.backends.pikachu`; pika is imported only when a function here
runs.
"""

from __future__ import annotations

import math
import ssl as ssl_module
from typing import Any

from carrot.backends._pika_connection import Connection
from carrot.exceptions import CarrotError

try:
    from pika import exceptions as pika_exceptions
except ImportError:  # pika is optional; the backend raises ClientNotInstalled
    pika_exceptions = None

__all__ = ["PikaConnectError", "connection_parameters", "open_connection", "ssl_options"]


def ssl_options(ssl: Any, hostname: str | None) -> Any:
    """pika's :class:`~pika.SSLOptions` for carrot's ``ssl`` setting (True, dict or context)."""
    import pika

    if not ssl:
        return None
    if isinstance(ssl, ssl_module.SSLContext):
        return pika.SSLOptions(ssl, server_hostname=hostname)
    options = dict(ssl) if isinstance(ssl, dict) else {}
    context = ssl_module.create_default_context(
        cafile=options.get("ca_certs"), capath=options.get("ca_path")
    )
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"))
    if options.get("ciphers"):
        context.set_ciphers(options["ciphers"])
    if "check_hostname" in options:
        context.check_hostname = bool(options["check_hostname"])
    cert_reqs = options.get("cert_reqs")
    if cert_reqs is not None:
        if cert_reqs == ssl_module.CERT_NONE:
            context.check_hostname = False
        context.verify_mode = cert_reqs
    return pika.SSLOptions(context, server_hostname=options.get("server_hostname", hostname))


def _whole_seconds(heartbeat: float | None) -> int:
    """pika's ``heartbeat`` (an int, 0: off) for carrot's (seconds, a float)."""
    return math.ceil(heartbeat) if heartbeat else 0


def connection_parameters(conninfo: Any, default_port: int, default_tls_port: int) -> Any:
    """The :class:`pika.ConnectionParameters` for the settings of ``conninfo``.

    See :meth:`carrot.backends.pikachu.Backend.connection_parameters`, which
    checks that the settings needed are there first.
    """
    import pika

    timeout = conninfo.connect_timeout or None  # pika: None means no limit
    return pika.ConnectionParameters(
        host=conninfo.hostname,
        port=int(conninfo.port or (default_tls_port if conninfo.ssl else default_port)),
        virtual_host=conninfo.virtual_host or "/",
        credentials=pika.PlainCredentials(conninfo.userid, conninfo.password),
        ssl_options=ssl_options(conninfo.ssl, conninfo.hostname),
        socket_timeout=timeout,
        stack_timeout=timeout,
        connection_attempts=1,
        heartbeat=_whole_seconds(getattr(conninfo, "heartbeat", 0)),
    )


#: pika's root of connection errors (``ConnectionError`` without pika).
_PikaConnectionError: Any = (
    pika_exceptions.AMQPConnectionError if pika_exceptions is not None else ConnectionError
)


# misc: the second base is pika's AMQPConnectionError when pika is installed,
# ConnectionError otherwise, so mypy sees Any.
class PikaConnectError(CarrotError, _PikaConnectionError):  # type: ignore[misc]
    """pika could not connect: refused, unreachable, or no AMQP handshake in time.

    A :exc:`pika.exceptions.AMQPConnectionError` (pika raises that class
    itself for these, and a handshake timeout outside that family), kept
    apart from a refused login so that ``ensure_connection`` retries only this.

    .. versionadded:: 0.11
    """

    def __str__(self) -> str:
        return f"cannot connect through pika: {self.args[0] if self.args else 'no reason given'}"


def _connection_errors() -> tuple[type[BaseException], ...]:
    from pika import exceptions
    from pika.adapters.utils.connection_workflow import AMQPConnectorException

    # AMQPConnectionError covers ConnectionClosed, StreamLostError, ...
    return (exceptions.AMQPConnectionError, AMQPConnectorException, OSError)


def _channel_errors() -> tuple[type[BaseException], ...]:
    from pika import exceptions

    # ChannelClosed(ByBroker), ChannelWrongStateError, ConsumerCancelled, ...
    return (exceptions.AMQPChannelError,)


def _recoverable_connection_errors() -> tuple[type[BaseException], ...]:
    from pika import exceptions

    # Every pika connection error but a refused login or virtual host (and
    # pika's bare AMQPConnectionError, which establish_connection raises as
    # PikaConnectError).
    refused = (
        exceptions.AuthenticationError,
        exceptions.ProbableAuthenticationError,
        exceptions.ProbableAccessDeniedError,
    )
    pika_errors = [
        cls
        for cls in vars(exceptions).values()
        if isinstance(cls, type)
        and issubclass(cls, exceptions.AMQPConnectionError)
        and cls is not exceptions.AMQPConnectionError
        and not issubclass(cls, refused)
    ]
    return (PikaConnectError, *pika_errors, *_connection_errors()[1:])


def _blocking_connection() -> Any:
    from pika import BlockingConnection

    return BlockingConnection


def open_connection(connection_cls: Any, params: Any) -> Connection:
    """``connection_cls(params)`` (pika's BlockingConnection) wrapped in :class:`Connection`.

    :raises PikaConnectError: refused, unreachable, or no handshake in time.
    """
    from pika.adapters.utils.connection_workflow import AMQPConnectorException

    try:
        return Connection(connection_cls(params))
    except AMQPConnectorException as exc:
        raise PikaConnectError(exc) from exc
    except pika_exceptions.AMQPConnectionError as exc:
        if type(exc) is not pika_exceptions.AMQPConnectionError:
            raise  # a refused login, a closed connection: pika says which
        raise PikaConnectError(*exc.args) from exc
