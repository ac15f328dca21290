"""What goes wrong on a kombu transport: carrot's two errors, and kombu's sorted into tuples.

:exc:`UnsupportedExchangeTypeError` and :exc:`UnsupportedTransportError`
are raised by :mod:`carrot.backends.kombu_transport`, which re-exports them
(their public home). The tuples here are the backends'
``connection_errors``, ``channel_errors`` and
``recoverable_connection_errors``: kombu's virtual transport's errors, and
Redis's as kombu lists them (the virtual transport's and :exc:`OSError`
when the ``redis`` client is missing).
"""

from __future__ import annotations

from kombu.transport import virtual

from carrot.backends._kombu_seam import kombu_redis
from carrot.exceptions import CarrotError

__all__ = [
    "AMQP_TRANSPORTS",
    "KOMBU_CHANNEL_ERRORS",
    "KOMBU_CONNECTION_ERRORS",
    "REDIS_CHANNEL_ERRORS",
    "REDIS_CONNECTION_ERRORS",
    "UnsupportedExchangeTypeError",
    "UnsupportedTransportError",
    "recoverable",
]

_Errors = tuple[type[BaseException], ...]


class UnsupportedExchangeTypeError(CarrotError, NotImplementedError):
    """The kombu transport cannot route this exchange type.

    For example a headers exchange on a kombu transport other than memory or
    Redis, or a RabbitMQ plugin's type such as ``x-delayed-message``.
    """

    def __init__(self, exchange: str, type: str, supported: list[str]) -> None:  # noqa: A002 -- carrot's parameter name
        self.exchange = exchange
        self.type = type
        self.supported = supported
        super().__init__(exchange, type, supported)

    def __str__(self) -> str:
        return (
            f"exchange {self.exchange!r}: the kombu transport has no {self.type!r} exchange "
            f"(supported: {', '.join(self.supported)})"
        )


#: URL schemes of kombu's AMQP transports, whose messages this backend cannot
#: build (it speaks to kombu's virtual transports).
AMQP_TRANSPORTS = frozenset(["amqp", "amqps", "pyamqp", "pyamqps", "librabbitmq"])


class UnsupportedTransportError(CarrotError, ValueError):
    """A kombu transport this backend cannot use: one of kombu's AMQP transports.

    :param transport: the URL scheme (``"amqp"``).
    """

    def __init__(self, transport: str) -> None:
        self.transport = transport
        super().__init__(transport)

    def __str__(self) -> str:
        return (
            f"backend_cls='kombu' runs on kombu's virtual transports (memory, redis, ...), "
            f"not on its {self.transport!r} AMQP transport: for RabbitMQ use "
            f"backend_cls='amqp' (the default, py-amqp) or 'pika', with the same host"
        )


def _redis_errors() -> tuple[_Errors, _Errors]:
    if kombu_redis is None:
        # The client is missing; RedisBackend raises ClientNotInstalled when used.
        return (*virtual.Transport.connection_errors, OSError), tuple(
            virtual.Transport.channel_errors
        )
    conn_errors, chan_errors = kombu_redis.get_redis_error_classes()
    return tuple(conn_errors), tuple(chan_errors)


#: Redis's connection and channel errors, as kombu lists them.
REDIS_CONNECTION_ERRORS, _REDIS_COMMAND_ERRORS = _redis_errors()


def recoverable(errors: _Errors) -> _Errors:
    """The connection errors of ``errors`` worth retrying."""
    # Worth retrying: not the KeyError kombu lists for Redis (a stale socket,
    # but also any bug). A refused Redis login is retried all the same: its
    # error subclasses redis's ConnectionError.
    return tuple(dict.fromkeys(e for e in errors if e is not KeyError))


#: Any kombu transport's connection errors (Redis's too, for a ``redis://`` URL).
KOMBU_CONNECTION_ERRORS: _Errors = tuple(
    dict.fromkeys(
        (
            *virtual.Transport.connection_errors,
            OSError,
            *(exc for exc in REDIS_CONNECTION_ERRORS if exc is not KeyError),
        )
    )
)
#: Any kombu transport's channel errors.
KOMBU_CHANNEL_ERRORS: _Errors = (
    *dict.fromkeys((*virtual.Transport.channel_errors, *_REDIS_COMMAND_ERRORS)),
    virtual.NotEquivalentError,
    UnsupportedExchangeTypeError,
)
#: A failed Redis command.
REDIS_CHANNEL_ERRORS: _Errors = (
    *_REDIS_COMMAND_ERRORS,
    virtual.NotEquivalentError,
    UnsupportedExchangeTypeError,
)
