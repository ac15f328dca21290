"""Getting a connection to the message broker.

:class:`BrokerConnection` holds the settings and lazily opens the backend's
connection; :class:`ConnectionPool` shares a few of them between threads;
:class:`DjangoBrokerConnection` reads the settings from Django's
``BROKER_*`` settings.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import random
import sys
import threading
import time
import warnings
import weakref
from copy import copy
from types import FrameType
from typing import Any

import amqp
from amqp.exceptions import ConnectionError as AMQPConnectionException

from carrot import _redact
from carrot._keywords import warn_unknown_keywords
from carrot.backends import get_backend_cls, resolve_backend
from carrot.exceptions import ConnectionLimitExceeded, InvalidURLError, TLSVerificationError
from carrot.urls import format_url, is_url, mask_url, parse_url, split_urls
from carrot.utils import retry_over_time

__all__ = [
    "ARG_TO_DJANGO_SETTING",
    "COMPAT_SETTING_PREFIX",
    "CONNECTION_KEYWORDS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_RETRY_POLICY",
    "DJANGO_KEYWORD_SETTINGS",
    "FAILOVER_STRATEGIES",
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
#: The largest message body accepted (RabbitMQ's own hard limit), in bytes.
DEFAULT_MAX_BODY_SIZE = 512 * 1024 * 1024
#: ``failover_strategy`` values: the order brokers of a list are tried in.
FAILOVER_STRATEGIES = ("round-robin", "shuffle")
#: The retry policy used when ``retry_policy`` is ``None`` (the defaults of
#: :meth:`BrokerConnection.ensure_connection`).
DEFAULT_RETRY_POLICY: dict[str, Any] = {
    "max_retries": None,
    "interval_start": 2,
    "interval_step": 2,
    "interval_max": 30,
}
#: Keyword arguments of :class:`BrokerConnection` besides the positional
#: settings; a copy (:class:`ConnectionPool`) keeps every one of them.
CONNECTION_KEYWORDS = (
    "insist",
    "connect_timeout",
    "ssl",
    "backend_cls",
    "transport",
    "heartbeat",
    "auto_recover",
    "retry_policy",
    "failover_strategy",
    "accept",
    "max_body_size",
)
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
#: :class:`BrokerConnection` keyword -> the Django setting that sets it (no
#: deprecated ``AMQP_*`` name). ``BROKER_URL`` is the host name, a URL.
DJANGO_KEYWORD_SETTINGS = {
    "heartbeat": "BROKER_HEARTBEAT",
    "connect_timeout": "BROKER_CONNECTION_TIMEOUT",
    "ssl": "BROKER_USE_SSL",
    "failover_strategy": "BROKER_FAILOVER_STRATEGY",
}
#: Warning text for an ``AMQP_*`` setting (old name, new name).
SETTING_DEPRECATED_FMT = (
    "Setting %s has been renamed to %s and is scheduled for removal in version 1.0."
)

logger = logging.getLogger("carrot.connection")

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

    :param hostname: the broker's host name; or a broker URL such as
        ``"amqp://user:password@host:5672//"`` (see :mod:`carrot.urls`),
        whose parts fill in the other settings; or several brokers, as one
        ``;``-separated string or a list of URLs or host names.
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
    :keyword heartbeat: seconds between heartbeats, ``0`` for none (the
        default). Stored for the backend to use; see :doc:`/production`.
    :keyword auto_recover: re-establish a lost connection under
        ``retry_policy`` and carry on (default ``False``); see
        :doc:`/production` and :mod:`carrot.recovery`.
    :keyword retry_policy: a dict of ``max_retries`` (``None`` or ``0``: for
        ever), ``interval_start``, ``interval_step`` and ``interval_max``;
        ``None`` means :data:`DEFAULT_RETRY_POLICY`.
    :keyword failover_strategy: the order the brokers of a list are tried
        in: ``"round-robin"`` (the default, in the order given) or
        ``"shuffle"`` (a random order, drawn anew for each copy).
    :keyword accept: serializer names or content types that consumers on
        this connection decode when they name none themselves (see
        :attr:`carrot.messaging.Consumer.accept`); ``["json"]`` refuses
        pickle everywhere. None (default): every content type.
    :keyword max_body_size: the largest message body accepted, in bytes
        (default :data:`DEFAULT_MAX_BODY_SIZE`).
    :raises carrot.exceptions.InvalidURLError: (a ``ValueError``) a
        malformed URL or broker list.
    :raises ValueError: a keyword with a value it cannot take.

    Explicit arguments win over the parts of a URL:
    ``BrokerConnection("amqp://u:pw@h:5673//", port=5674)`` connects to port
    5674. With several brokers, connecting (:attr:`connection`,
    :meth:`connect`, :meth:`ensure_connection`) moves on to the next broker
    when one cannot be reached; :attr:`hostname`, :attr:`port` and the other
    settings, :meth:`info` and ``repr`` always name the current broker.

    Used as a context manager it closes on exit; an exception raised inside
    the block propagates unchanged.

    .. versionchanged:: 0.11
       :meth:`connect` after :meth:`close` opens a new connection (carrot
       0.10 returned ``None``), and ``__exit__`` no longer replaces the
       exception raised in the block with a new one of the same type. An
       unknown keyword argument is still ignored, but a
       :exc:`~carrot.exceptions.CarrotWarning` names it.

    .. versionchanged:: 0.11
       ``hostname`` may be a URL or a list of brokers; new keywords
       ``heartbeat``, ``auto_recover``, ``retry_policy``,
       ``failover_strategy``, ``accept`` and ``max_body_size``, whose
       defaults keep carrot 0.10's behaviour.
    """

    virtual_host = "/"
    port: int | None = None
    insist = False
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    ssl: Any = False
    _closed: bool | None = True
    backend_cls: Any = None
    heartbeat: float = 0
    auto_recover = False
    retry_policy: dict[str, Any] | None = None
    failover_strategy = "round-robin"
    #: Default ``accept`` of the consumers on this connection (None: all content types).
    accept: Any = None
    max_body_size = DEFAULT_MAX_BODY_SIZE

    #: The default backend's connection error class.
    ConnectionException = AMQPConnectionException

    #: The keyword arguments read from ``**kwargs`` (others warn); ``transport_cls``
    #: comes back from :meth:`info`, which code passes to a new connection.
    _keywords: tuple[str, ...] = (*CONNECTION_KEYWORDS, "transport_cls")

    def __init__(
        self,
        hostname: str | list[str] | None = None,
        userid: str | None = None,
        password: str | None = None,
        virtual_host: str | None = None,
        port: int | None = None,
        pool: ConnectionPool | None = None,
        **kwargs: Any,
    ) -> None:
        warn_unknown_keywords(type(self), kwargs)
        self.pool = pool
        self.insist = kwargs.get("insist", self.insist)
        self.heartbeat = _check_heartbeat(kwargs.get("heartbeat", self.heartbeat))
        self.auto_recover = bool(kwargs.get("auto_recover", self.auto_recover))
        self.retry_policy = _check_retry_policy(kwargs.get("retry_policy", self.retry_policy))
        self.failover_strategy = _check_strategy(
            kwargs.get("failover_strategy", self.failover_strategy)
        )
        self.accept = kwargs.get("accept", self.accept)
        self.max_body_size = _check_max_body_size(kwargs.get("max_body_size", self.max_body_size))
        # The settings given explicitly win over the parts of a URL.
        explicit: dict[str, Any] = {}
        if userid is not None:
            explicit["userid"] = userid
        if password is not None:
            explicit["password"] = password
        if virtual_host:
            explicit["virtual_host"] = virtual_host
        if port:
            explicit["port"] = port
        for name in ("ssl", "connect_timeout"):
            if name in kwargs:
                explicit[name] = kwargs[name]
        backend_cls = kwargs.get("backend_cls") or kwargs.get("transport")
        if backend_cls:
            explicit["backend_cls"] = backend_cls
        self._explicit = explicit
        self._brokers = _parse_brokers(hostname, backend_cls)
        if self.failover_strategy == "shuffle":
            random.shuffle(self._brokers)
        self._broker_index = 0
        # The class defaults, then the first broker's URL parts, then the
        # explicit settings.
        self.hostname = None
        self.userid = None
        self.password = None
        self._use_broker(0, initial=True)
        self._closed = None
        self._connection = None
        self._backend = None
        self._init_recovery()

    def _init_recovery(self) -> None:
        # carrot.recovery's state: the connection's generation (one more at
        # each recovery), the generation each backend was made in, the lock.
        self._generation = 0
        self._backend_generations: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._recovery_lock = threading.RLock()

    def _use_broker(self, index: int, initial: bool = False) -> None:
        """Make broker ``index`` of the list the current one.

        Its URL's parts are set, except those given explicitly; on a
        failover the other settings stay as they are (a pool may have
        changed ``connect_timeout`` since).
        """
        self._broker_index = index
        broker = self._brokers[index]
        settings = {**broker, **self._explicit} if initial else broker
        for name, value in settings.items():
            setattr(self, name, self._explicit.get(name, value))

    def _failover(self) -> None:
        """Move on to the next broker of the list (the first after the last)."""
        self._use_broker((self._broker_index + 1) % len(self._brokers))
        self._backend = None

    def _masked_url(self) -> str:
        """The current broker as a URL, its password masked."""
        if is_url(self.hostname):
            return mask_url(self.hostname)  # compat: kombu's own URL, kept as it is
        return format_url(
            {
                "hostname": self.hostname,
                "port": self.port,
                "userid": self.userid,
                "password": self.password,
                "virtual_host": self.virtual_host,
                "ssl": self.ssl,
                "backend_cls": self.backend_cls or "amqp",
            }
        )

    def __repr__(self) -> str:
        # Never the password, not even inside a URL given as the host name.
        count = len(self._brokers)
        which = f" (broker {self._broker_index + 1} of {count})" if count > 1 else ""
        backend = self.backend_cls or "amqp"
        return f"<{type(self).__name__} {self._masked_url()}{which} backend={backend}>"

    def __copy__(self) -> BrokerConnection:
        # Every attribute, so every setting (and any a subclass adds) is
        # kept; nothing of the open connection is.
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone._brokers = [dict(broker) for broker in self._brokers]
        clone._explicit = dict(self._explicit)
        if self.retry_policy is not None:
            clone.retry_policy = dict(self.retry_policy)
        if self.failover_strategy == "shuffle" and len(clone._brokers) > 1:
            random.shuffle(clone._brokers)
            clone._use_broker(0)  # the first of its own order
        clone._connection = None
        clone._backend = None
        clone._closed = None
        clone._init_recovery()
        return clone

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
            tls_port: int | None = getattr(backend_cls, "default_tls_port", None)
            if tls_port:
                return tls_port
        port: int | None = getattr(backend_cls, "default_port", None)
        return port

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
        backend = self.get_backend_cls()(connection=self)
        generations = getattr(self, "_backend_generations", None)  # None: __init__ not run
        if generations is not None:
            with contextlib.suppress(TypeError):  # an unhashable backend: never rebound
                generations[backend] = self._generation
        return backend

    def _get_backend(self) -> Any:
        # The backend that opens/closes the connection itself.
        if self._backend is None:
            self._backend = self.create_backend()
        return self._backend

    @property
    def connection(self) -> Any:
        """The backend's connection, established on first use; ``None`` once closed.

        With several brokers, one that cannot be reached (a recoverable
        connection error) is skipped for the next; when none can be, the
        last broker's error is raised.
        """
        if self._closed is True:
            return None
        if self._connection is None:
            self._connection = self._establish()
            self._closed = False
        return self._connection

    def _establish(self) -> Any:
        """Connect to the current broker, or to the next ones in turn."""
        attempts = len(self._brokers)
        for attempt in range(1, attempts + 1):
            try:
                connection = self._get_backend().establish_connection()
                # compat: amqplib connected in its constructor, so backends
                # written for carrot 0.10 (subclasses overriding
                # establish_connection) return a py-amqp connection that
                # has not connected yet.
                if isinstance(connection, amqp.Connection) and not connection.connected:
                    connection.connect()
            except self._recoverable_connection_errors() as exc:
                if attempt == attempts:
                    raise
                failed = self._masked_url()
                self._failover()
                logger.warning(
                    "cannot connect to %s (%s); trying %s", failed, exc, self._masked_url()
                )
            else:
                return connection
        raise AssertionError("unreachable: the last attempt returns or raises")

    def connect(self) -> Any:
        """Establish the connection now (again, after :meth:`close`) and return it.

        .. versionchanged:: 0.11
           A connection known to be lost (its socket failed) is replaced by
           a new one, so :meth:`ensure_connection` really reconnects; carrot
           0.10 kept returning the dead connection. With several brokers,
           the next one is tried when one cannot be reached.
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
        # mypy does not see a starred tuple of exception classes as one
        except (OSError, *self.connection_errors):  # type: ignore[misc]
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
        (wrong password, unknown virtual host) is raised at once, and so is a
        broker certificate that fails verification
        (:exc:`~carrot.exceptions.TLSVerificationError`): no retry fixes it.
        """

        def on_error(exc: BaseException, interval: float) -> None:
            if isinstance(exc, TLSVerificationError):
                raise exc  # out of retry_over_time, before its sleep
            if errback is not None:
                errback(exc, interval)

        retry_over_time(
            self.connect,
            self._recoverable_connection_errors(),
            errback=on_error,
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
        """The settings of the current broker as a dict (the port filled in).

        Carrot 0.10's keys only; :func:`copy.copy` (which
        :class:`ConnectionPool` uses) keeps every setting, not only these.

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

#: The generic kombu backend takes a kombu URL (``sqs://``...) as its host name.
_KOMBU_BACKEND = "carrot.backends.kombu_transport.Backend"


def _takes_urls_itself(backend_cls: Any) -> bool:
    """Whether the backend reads a URL in ``hostname`` itself (kombu's, by name)."""
    if not backend_cls:
        return False
    if isinstance(backend_cls, str):
        return resolve_backend(backend_cls) == _KOMBU_BACKEND
    return f"{backend_cls.__module__}.{backend_cls.__qualname__}" == _KOMBU_BACKEND


def _parse_brokers(hostname: Any, backend_cls: Any) -> list[dict[str, Any]]:
    """The settings each broker of ``hostname`` contributes (its URL's parts)."""
    if hostname is None or (
        isinstance(hostname, str) and "://" not in hostname and ";" not in hostname
    ):
        return [{"hostname": hostname}]  # compat: a plain host name, as carrot 0.10
    brokers = []
    for item in split_urls(hostname):
        if not is_url(item):
            brokers.append({"hostname": item})
        elif _takes_urls_itself(backend_cls):
            # compat: BrokerConnection("redis://...", backend_cls="kombu")
            # hands kombu its own URL.
            brokers.append({"hostname": item})
        else:
            brokers.append(parse_url(item))
    kinds = {broker["backend_cls"] for broker in brokers if "backend_cls" in broker}
    if len(kinds) > 1:
        shown = hostname if isinstance(hostname, str) else ";".join(hostname)
        raise InvalidURLError(
            shown, f"the brokers of a list use one backend, not {', '.join(sorted(kinds))}"
        )
    return brokers


def _check_heartbeat(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"heartbeat must be a number of seconds >= 0 (0: off), not {value!r}")
    return value


def _check_retry_policy(policy: Any) -> dict[str, Any] | None:
    if policy is None:
        return None
    if not isinstance(policy, dict):
        raise ValueError(f"retry_policy must be a dict or None, not {policy!r}")
    unknown = set(policy) - set(DEFAULT_RETRY_POLICY)
    if unknown:
        known = ", ".join(DEFAULT_RETRY_POLICY)
        raise ValueError(f"unknown retry_policy key(s) {sorted(unknown)} (known: {known})")
    for key, value in policy.items():
        if key == "max_retries" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"retry_policy {key!r} must be a number >= 0, not {value!r}")
    return dict(policy)


def _check_strategy(strategy: Any) -> str:
    if strategy not in FAILOVER_STRATEGIES:
        known = ", ".join(repr(name) for name in FAILOVER_STRATEGIES)
        raise ValueError(f"failover_strategy must be one of {known}, not {strategy!r}")
    checked: str = strategy
    return checked


def _check_max_body_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"max_body_size must be a positive number of bytes, not {size!r}")
    return size


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


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this module."""
    frame: FrameType | None = sys._getframe(1)  # the function that warns
    level = 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    return level


def get_django_conninfo(settings: Any = None) -> dict[str, Any]:
    """Read connection arguments from Django settings.

    ``BROKER_HOST``, ``BROKER_PORT``, ``BROKER_USER``, ``BROKER_PASSWORD`` and
    ``BROKER_VHOST``; each falls back to its deprecated ``AMQP_*`` name (with a
    :exc:`DeprecationWarning` pointing at the caller's line), the host also to
    ``AMQP_SERVER``. ``CARROT_BACKEND`` names the backend.

    ``BROKER_URL`` (a URL or a broker list, see :mod:`carrot.urls`) is the
    host name when set (``BROKER_HOST`` is then not read); ``BROKER_PORT``,
    ``BROKER_USER``, ``BROKER_PASSWORD`` and ``BROKER_VHOST`` win over its
    parts. The settings of :data:`DJANGO_KEYWORD_SETTINGS`
    (``BROKER_HEARTBEAT``, ``BROKER_CONNECTION_TIMEOUT``, ``BROKER_USE_SSL``,
    ``BROKER_FAILOVER_STRATEGY``) fill the keywords of the same meaning.

    :param settings: an object with those attributes; ``None`` imports
        ``django.conf.settings``.

    .. versionchanged:: 0.11
       ``BROKER_URL`` and the settings of :data:`DJANGO_KEYWORD_SETTINGS`.
    """
    if settings is None:
        from django.conf import settings as django_settings

        settings = django_settings

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
                stacklevel=_caller_stacklevel(),
            )
    if "hostname" not in conninfo and hasattr(settings, "AMQP_SERVER"):
        conninfo["hostname"] = settings.AMQP_SERVER
        warnings.warn(
            SETTING_DEPRECATED_FMT % ("AMQP_SERVER", f"{SETTING_PREFIX}_HOST"),
            DeprecationWarning,
            stacklevel=_caller_stacklevel(),
        )
    url = getattr(settings, f"{SETTING_PREFIX}_URL", None)
    if url:
        conninfo["hostname"] = url
    for keyword, setting in DJANGO_KEYWORD_SETTINGS.items():
        if hasattr(settings, setting):
            conninfo[keyword] = getattr(settings, setting)
    conninfo["backend_cls"] = getattr(settings, "CARROT_BACKEND", None)
    return conninfo


class DjangoBrokerConnection(BrokerConnection):
    """A :class:`BrokerConnection` configured from Django's settings.

    Arguments given explicitly (by position or keyword) win over settings.

    :keyword settings: the settings object; default ``django.conf.settings``.
    """

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


#: compat: carrot's first name for :class:`DjangoBrokerConnection`.
DjangoAMQPConnection = DjangoBrokerConnection
