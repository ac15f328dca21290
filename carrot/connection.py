"""Getting a connection to the message broker.

:class:`BrokerConnection` holds the settings and lazily opens the backend's
connection; :class:`ConnectionPool` shares a few of them between threads;
:class:`DjangoBrokerConnection` reads the settings from Django's
``BROKER_*`` settings.
"""

from __future__ import annotations

import builtins
import threading
import time
import warnings
from copy import copy
from typing import Any

import amqp
from amqp.exceptions import ConnectionError as AMQPConnectionException

from carrot import _redact
from carrot._keywords import warn_unknown_keywords
from carrot.backends import get_backend_cls
from carrot.exceptions import ConnectionLimitExceeded
from carrot.utils import retry_over_time

__all__ = [
    "ARG_TO_DJANGO_SETTING",
    "COMPAT_SETTING_PREFIX",
    "DEFAULT_CONNECT_TIMEOUT",
    "SETTING_DEPRECATED_FMT",
    "SETTING_PREFIX",
    "AMQPConnection",
    "BrokerConnection",
    "ConnectionLimitExceeded",
    "ConnectionPool",
    "DjangoAMQPConnection",
    "DjangoBrokerConnection",
    "MaskedPassword",
    "get_django_conninfo",
]

#: Seconds to wait for the TCP connect and the protocol handshake.
DEFAULT_CONNECT_TIMEOUT = 5
#: Django settings are read as ``BROKER_<NAME>``...
SETTING_PREFIX = "BROKER"
#: ... falling back to the deprecated ``AMQP_<NAME>``.
COMPAT_SETTING_PREFIX = "AMQP"
#: :class:`BrokerConnection` argument -> Django setting suffix.
ARG_TO_DJANGO_SETTING = {
    "hostname": "HOST",
    "userid": "USER",
    "password": "PASSWORD",
    "virtual_host": "VHOST",
    "port": "PORT",
}
#: Warning text for an ``AMQP_*`` setting (old name, new name).
SETTING_DEPRECATED_FMT = (
    "Setting %s has been renamed to %s and is scheduled for removal in version 1.0."
)

# stomp.py logs the STOMP passcode at DEBUG: mask it (and URL passwords).
_redact.install()

_CONN_ARGS = ("hostname", "userid", "password", "virtual_host", "port", "pool")


class MaskedPassword(str):
    """A password whose ``repr`` is ``'***'``; otherwise the very same string.

    :meth:`BrokerConnection.info` hands it out, so a settings dict that ends
    up in a log message or a traceback shows no password, while code that
    connects with it (or compares it) sees the real one through ``str``.

    .. versionadded:: 0.11
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


class BrokerConnection:
    """A network/socket connection to a message broker.

    :param hostname: the broker's host name.
    :param userid: the user name to authenticate as.
    :param password: the password to authenticate with.
    :param virtual_host: the virtual host to work in (default ``"/"``).
    :param port: the broker's port (default: the backend's, 5672 for AMQP).
    :param pool: the :class:`ConnectionPool` this connection belongs to.
    :keyword insist: insist on connecting to this server (default ``False``).
    :keyword connect_timeout: seconds allowed for the TCP connect and for
        each step of the handshake (default 5).
    :keyword ssl: TLS: ``True`` (the system's CAs), a dict of options
        (``ca_certs``, ``certfile``, ``keyfile``, ``cert_reqs``,
        ``server_hostname``) or an :class:`ssl.SSLContext`; default ``False``.
        The broker's certificate and host name (``server_hostname``, by
        default the host connected to) are verified unless ``cert_reqs`` is
        ``ssl.CERT_NONE``; without a port, the backend's TLS port (5671).
        See :doc:`/security`.

        .. versionchanged:: 0.11
           Certificates and host names are verified by default, also for
           a dict without ``cert_reqs`` (carrot 0.10 verified nothing), and
           the port defaults to 5671 with TLS.
    :keyword backend_cls: the backend: a class, a dotted path, an alias from
        :data:`carrot.backends.BACKEND_ALIASES`, or ``None`` for py-amqp.
    :keyword transport: alias of ``backend_cls`` (kombu's name).
    :keyword accept: serializer names or content types that consumers on
        this connection decode when they name none themselves (see
        :attr:`carrot.messaging.Consumer.accept`); ``["json"]`` refuses
        pickle everywhere. None (default): every content type.

        .. versionadded:: 0.11

    Used as a context manager it closes on exit; an exception raised inside
    the block propagates unchanged.

    .. versionchanged:: 0.11
       :meth:`connect` after :meth:`close` opens a new connection (carrot
       0.10 returned ``None``), and ``__exit__`` no longer replaces the
       exception raised in the block with a new one of the same type. An
       unknown keyword argument is still ignored, but a
       :exc:`~carrot.exceptions.CarrotWarning` names it.
    """

    virtual_host = "/"
    port: int | None = None
    insist = False
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    ssl: Any = False
    #: Default ``accept`` of the consumers on this connection (None: all content types).
    accept: Any = None
    _closed: bool | None = True
    backend_cls: Any = None

    #: The default backend's connection error class.
    ConnectionException = AMQPConnectionException
    #: The keyword arguments read from ``**kwargs`` (others warn); ``transport_cls``
    #: comes back from :meth:`info`, which code passes to a new connection.
    _keywords: tuple[str, ...] = (
        "insist",
        "connect_timeout",
        "ssl",
        "backend_cls",
        "transport",
        "transport_cls",
        "heartbeat",
        "auto_recover",
        "retry_policy",
        "failover_strategy",
        "max_body_size",
        "accept",
    )

    def __init__(
        self,
        hostname: str | None = None,
        userid: str | None = None,
        password: str | None = None,
        virtual_host: str | None = None,
        port: int | None = None,
        pool: ConnectionPool | None = None,
        **kwargs: Any,
    ) -> None:
        warn_unknown_keywords(type(self), kwargs)
        self.hostname = hostname
        self.userid = userid
        self.password = password
        self.virtual_host = virtual_host or self.virtual_host
        self.port = port or self.port
        self.pool = pool
        self.insist = kwargs.get("insist", self.insist)
        self.connect_timeout = kwargs.get("connect_timeout", self.connect_timeout)
        self.ssl = kwargs.get("ssl", self.ssl)
        self.accept = kwargs.get("accept", self.accept)
        self.backend_cls = kwargs.get("backend_cls") or kwargs.get("transport") or self.backend_cls
        self._closed = None
        self._connection = None
        self._backend = None

    def __repr__(self) -> str:
        # Never the password, not even inside a URL given as the host name.
        hostname = self.hostname
        if hostname and "://" in hostname and "@" in hostname:
            scheme, _, rest = hostname.partition("://")
            hostname = f"{scheme}://***@{rest.rpartition('@')[2]}"
        return (
            f"<{type(self).__name__} {self.userid}@{hostname}:{self.port or ''}"
            f"{self.virtual_host} backend={self.backend_cls or 'amqp'}>"
        )

    def __copy__(self) -> BrokerConnection:
        info = self.info()
        info.pop("transport_cls")
        info.setdefault("accept", self.accept)
        return self.__class__(pool=self.pool, **info)

    def __enter__(self) -> BrokerConnection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def host(self) -> str:
        """The host as ``"hostname:port"``; the backend's port when unset."""
        port = self.port or self._default_port()
        return f"{self.hostname}:{port}"

    def _default_port(self) -> int | None:
        backend_cls = self.get_backend_cls()
        if self.ssl:
            tls_port = getattr(backend_cls, "default_tls_port", None)
            if tls_port:
                return tls_port
        return getattr(backend_cls, "default_port", None)

    def get_backend_cls(self) -> Any:
        """Get the backend class this connection uses.

        An alias or dotted path is resolved; anything else that is not a
        string (a class, or a factory called as ``factory(connection=self)``)
        is used as it is, as carrot 0.10 did.
        """
        backend_cls = self.backend_cls
        if backend_cls and not isinstance(backend_cls, str):
            return backend_cls
        return get_backend_cls(backend_cls)

    def create_backend(self) -> Any:
        """Create a new instance of the backend, bound to this connection."""
        return self.get_backend_cls()(connection=self)

    def _get_backend(self) -> Any:
        # The backend that opens/closes the connection itself.
        if self._backend is None:
            self._backend = self.create_backend()
        return self._backend

    @property
    def connection(self) -> Any:
        """The backend's connection, established on first use; ``None`` once closed."""
        if self._closed is True:
            return None
        if self._connection is None:
            connection = self._get_backend().establish_connection()
            # compat: amqplib connected in its constructor, so backends
            # written for carrot 0.10 (subclasses overriding
            # establish_connection) return a py-amqp connection that has not
            # connected yet.
            if isinstance(connection, amqp.Connection) and not connection.connected:
                connection.connect()
            self._connection = connection
            self._closed = False
        return self._connection

    def connect(self) -> Any:
        """Establish the connection now (again, after :meth:`close`) and return it.

        .. versionchanged:: 0.11
           A connection known to be lost (its socket failed) is replaced by
           a new one, so :meth:`ensure_connection` really reconnects; carrot
           0.10 kept returning the dead connection.
        """
        if self._closed is True:
            self._closed = None
        connection = self._connection
        if connection is not None and not getattr(connection, "connected", True):
            self._connection = None
            self._close_quietly(connection)
        return self.connection

    def _close_quietly(self, connection: Any) -> None:
        try:
            self._get_backend().close_connection(connection)
        except (OSError, *self.connection_errors):
            pass

    def get_channel(self) -> Any:
        """Open a new channel on the underlying connection."""
        return self.connection.channel()

    def channel(self) -> Any:
        """For kombu compatibility: a new backend instance."""
        return self.create_backend()

    def drain_events(self, **kwargs: Any) -> Any:
        """Wait for one event on any channel and dispatch it to its consumer.

        :keyword timeout: seconds to wait; :exc:`socket.timeout` when it passes.
        """
        return self.connection.drain_events(**kwargs)

    def ensure_connection(
        self,
        errback: Any = None,
        max_retries: int | None = None,
        interval_start: float = 2,
        interval_step: float = 2,
        interval_max: float = 30,
    ) -> BrokerConnection:
        """Ensure we have a connection to the server, retrying if need be.

        :keyword errback: called as ``errback(exc, interval)`` each time the
            connection can't be established, before sleeping ``interval``.
        :keyword max_retries: re-raise the connection error after this many
            retries (``None`` or ``0``: retry for ever).
        :keyword interval_start: seconds to sleep after the first failure.
        :keyword interval_step: seconds added to the sleep each retry.
        :keyword interval_max: the longest sleep.

        Only :attr:`connection_errors` are retried. A refusal by the broker
        (wrong password, unknown virtual host) is raised at once.
        """
        retry_over_time(
            self.connect,
            self._recoverable_connection_errors(),
            errback=errback,
            max_retries=max_retries,
            interval_start=interval_start,
            interval_step=interval_step,
            interval_max=interval_max,
        )
        return self

    def _recoverable_connection_errors(self) -> tuple[type[BaseException], ...]:
        recoverable = getattr(self.get_backend_cls(), "recoverable_connection_errors", None)
        return self.connection_errors if recoverable is None else tuple(recoverable)

    def close(self) -> None:
        """Close the connection if open; socket errors on the way are ignored."""
        connection, self._connection = self._connection, None
        try:
            if connection is not None:
                self._close_quietly(connection)
        finally:
            self._backend = None
            self._closed = True

    def release(self) -> None:
        """Give the connection back to its pool.

        :raises NotImplementedError: the connection is not part of a pool.
        """
        if not self.pool:
            raise NotImplementedError("Trying to release connection not part of a pool")
        self.pool.release(self)

    def info(self) -> dict[str, Any]:
        """The connection's settings as a dict (the port filled in).

        .. versionchanged:: 0.11
           The password is a :class:`MaskedPassword`: the same string, but
           its ``repr`` (and so the dict's, as in a log message) is ``'***'``.
        """
        backend_cls = self.backend_cls or "amqplib"
        password = self.password
        return {
            "hostname": self.hostname,
            "userid": self.userid,
            "password": MaskedPassword(password) if isinstance(password, str) else password,
            "virtual_host": self.virtual_host,
            "port": self.port or self._default_port(),
            "insist": self.insist,
            "ssl": self.ssl,
            "transport_cls": backend_cls,
            "backend_cls": backend_cls,
            "connect_timeout": self.connect_timeout,
        }

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """Exception classes the backend raises when the connection fails."""
        return tuple(getattr(self.get_backend_cls(), "connection_errors", ()))

    @property
    def channel_errors(self) -> tuple[type[BaseException], ...]:
        """Exception classes the backend raises when a channel operation fails."""
        return tuple(getattr(self.get_backend_cls(), "channel_errors", ()))


#: compat: carrot's first name for :class:`BrokerConnection`.
AMQPConnection = BrokerConnection


class ConnectionPool:
    """A thread-safe pool of copies of one connection.

    :param source_connection: the connection to copy; it joins the pool.
    :param min: connections made up front (the source and ``min - 1`` copies).
    :param max: most connections out at once; ``None`` for no limit.
    :param preload: make the ``min - 1`` copies now rather than on demand.

    .. versionchanged:: 0.11
       ``max=None`` means no limit (carrot 0.10 crashed comparing with None);
       no more than ``max`` connections are out even when more are idle; a
       connection closed before its release connects again when acquired.
    """

    def __init__(
        self,
        source_connection: BrokerConnection,
        min: int = 2,  # noqa: A002 -- compat: carrot's parameter name
        max: int | None = None,  # noqa: A002 -- compat: carrot's parameter name
        preload: bool = True,
    ) -> None:
        if max is not None and max < 1:
            raise ValueError(f"ConnectionPool max must be None or at least 1, not {max!r}")
        self.source_connection = source_connection
        self.min = min
        self.max = max
        self.preload = preload
        source_connection.pool = self
        # acquire(connect_timeout=...) may change the source's; copies get this.
        self._connect_timeout = source_connection.connect_timeout
        self._lock = threading.Condition()
        self._idle: list[BrokerConnection] = [source_connection]
        self._dirty: set[BrokerConnection] = set()
        if preload:
            for _ in range(builtins.max(0, (min or 0) - 1)):
                self._idle.append(self._copy())

    def _copy(self) -> BrokerConnection:
        conn = copy(self.source_connection)
        conn.pool = self
        conn.connect_timeout = self._connect_timeout
        return conn

    def _total(self) -> int:
        return len(self._idle) + len(self._dirty)

    def acquire(
        self,
        block: bool = False,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> BrokerConnection:
        """Take an idle connection, or make a new one.

        :keyword block: when ``max`` connections are out, wait for one to be
            released (up to ``timeout`` seconds) instead of raising.
        :keyword timeout: seconds to wait with ``block=True``.
        :keyword connect_timeout: set on the connection handed out.
        :raises carrot.exceptions.ConnectionLimitExceeded: ``max`` connections
            are out (after waiting, with ``block``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self.max is None or len(self._dirty) < self.max:
                    conn = self._idle.pop() if self._idle else self._copy()
                    break
                if not block:
                    raise ConnectionLimitExceeded(self.max)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ConnectionLimitExceeded(self.max)
                # Another thread may take the released connection first: loop.
                self._lock.wait(remaining)
            self._dirty.add(conn)
        if connect_timeout is not None:
            conn.connect_timeout = connect_timeout
        if conn._closed is True:
            # Closed before it was released: it connects again on first use
            # instead of handing out a connection whose .connection is None.
            conn._closed = None
        return conn

    def release(self, connection: BrokerConnection) -> None:
        """Give ``connection`` back; it may be handed out again."""
        with self._lock:
            self._dirty.discard(connection)
            if connection not in self._idle:
                self._idle.append(connection)
            self._lock.notify()


def get_django_conninfo(settings: Any = None) -> dict[str, Any]:
    """Read connection arguments from Django settings.

    ``BROKER_HOST``, ``BROKER_PORT``, ``BROKER_USER``, ``BROKER_PASSWORD`` and
    ``BROKER_VHOST``; each falls back to its deprecated ``AMQP_*`` name (with a
    :exc:`DeprecationWarning`), the host also to ``AMQP_SERVER``.
    ``CARROT_BACKEND`` names the backend.

    :param settings: an object with those attributes; ``None`` imports
        ``django.conf.settings``.
    """
    if settings is None:
        from django.conf import settings

    conninfo: dict[str, Any] = {}
    for arg_name, setting_name in ARG_TO_DJANGO_SETTING.items():
        setting = f"{SETTING_PREFIX}_{setting_name}"
        compat_setting = f"{COMPAT_SETTING_PREFIX}_{setting_name}"
        if hasattr(settings, setting):
            conninfo[arg_name] = getattr(settings, setting)
        elif hasattr(settings, compat_setting):
            conninfo[arg_name] = getattr(settings, compat_setting)
            warnings.warn(
                SETTING_DEPRECATED_FMT % (compat_setting, setting),
                DeprecationWarning,
                stacklevel=2,
            )
    if "hostname" not in conninfo and hasattr(settings, "AMQP_SERVER"):
        conninfo["hostname"] = settings.AMQP_SERVER
        warnings.warn(
            SETTING_DEPRECATED_FMT % ("AMQP_SERVER", f"{SETTING_PREFIX}_HOST"),
            DeprecationWarning,
            stacklevel=2,
        )
    conninfo["backend_cls"] = getattr(settings, "CARROT_BACKEND", None)
    return conninfo


class DjangoBrokerConnection(BrokerConnection):
    """A :class:`BrokerConnection` configured from Django's settings.

    Arguments given explicitly (by position or keyword) win over settings.

    :keyword settings: the settings object; default ``django.conf.settings``.
    """

    _keywords: tuple[str, ...] = ("settings",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = kwargs.pop("settings", None)
        #: The settings object read (``None``: django.conf.settings).
        self._django_settings = settings
        explicit = dict(zip(_CONN_ARGS, args, strict=False))
        explicit.update(kwargs)
        conninfo = get_django_conninfo(settings)
        if explicit.get("backend_cls") is None and explicit.get("transport") is not None:
            conninfo.pop("backend_cls", None)
        conninfo.update((k, v) for k, v in explicit.items() if v is not None)
        super().__init__(**conninfo)

    def __copy__(self) -> DjangoBrokerConnection:
        info = self.info()
        info.pop("transport_cls")
        info.setdefault("accept", self.accept)
        return self.__class__(pool=self.pool, settings=self._django_settings, **info)


#: compat: carrot's first name for :class:`DjangoBrokerConnection`.
DjangoAMQPConnection = DjangoBrokerConnection
