"""Every error carrot raises itself, under one root.

The tree::

    CarrotError
     ├── BackendNotFound            (also ImportError)
     ├── ClientNotInstalled         (also ImportError)
     ├── MissingConnectionSetting   (also KeyError)
     ├── InvalidURLError            (also ValueError)
     ├── ConnectionLimitExceeded
     ├── ConnectionClosedError      (also the builtin ConnectionError, an OSError)
     ├── TLSError                   (also ssl.SSLError, an OSError)
     │    └── TLSVerificationError  (also ssl.SSLCertVerificationError)
     ├── MessageStateError
     ├── SerializerNotInstalled
     ├── EncodeError                (also TypeError and ValueError)
     ├── DecodeError                (also ValueError)
     │    └── ContentDisallowed     (a content type not in ``accept``)
     ├── FilterWithAutoAckError     (also ValueError)
     ├── UnknownDeliveryModeError   (also ValueError)
     ├── MessageNacked              the broker refused published messages (confirms)
     ├── MessageReturned            the broker returned unroutable ones (confirms + mandatory)
     └── ConfirmTimeoutError        (also TimeoutError) confirms did not come in time

Where carrot 0.10 raised a builtin (``KeyError`` for a missing hostname,
``ImportError`` for a missing backend), our class subclasses that builtin too,
so ``except`` clauses written for carrot keep catching it.

Errors of the broker and of the network are not wrapped (except a failed TLS
handshake, re-raised as :exc:`TLSError` naming the broker, still an
:exc:`ssl.SSLError`): catch them through
:attr:`carrot.connection.BrokerConnection.connection_errors` and
:attr:`~carrot.connection.BrokerConnection.channel_errors`, which list the
active backend's classes.

One warning stands apart from the tree::

    UserWarning
     └── CarrotWarning              accepted as carrot 0.10 did, but likely a mistake

Each class is also importable from where carrot 0.10 defined it
(``carrot.backends.base.MessageStateError``,
``carrot.connection.ConnectionLimitExceeded``,
``carrot.serialization.SerializerNotInstalled``); those are the same objects.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from carrot.confirms import Unconfirmed

__all__ = [
    "BackendNotFound",
    "CarrotError",
    "CarrotWarning",
    "ClientNotInstalled",
    "ConfirmTimeoutError",
    "ConnectionClosedError",
    "ConnectionLimitExceeded",
    "ContentDisallowed",
    "DecodeError",
    "EncodeError",
    "FilterWithAutoAckError",
    "InvalidURLError",
    "MessageNacked",
    "MessageReturned",
    "MessageStateError",
    "MissingConnectionSetting",
    "SerializerNotInstalled",
    "TLSError",
    "TLSVerificationError",
    "UnknownDeliveryModeError",
]


class CarrotError(Exception):
    """Root of every exception carrot raises itself."""


class CarrotWarning(UserWarning):
    """Something carrot accepted, as carrot 0.10 did, but that is probably a mistake.

    For example an unknown keyword argument (``Consumer(durible=True)``),
    which carrot 0.10 ignored silently. Turn it into an error while testing
    with ``-W error::carrot.exceptions.CarrotWarning``.

    .. versionadded:: 0.11
    """


class BackendNotFound(CarrotError, ImportError):  # noqa: N818 -- compat: carrot's (or a kept) name
    """A backend alias, dotted path or class could not be resolved."""

    def __init__(self, name: object, reason: str = "") -> None:
        self.name_requested = name
        self.reason = reason
        super().__init__(name, reason)

    def __str__(self) -> str:
        from carrot.backends import BACKEND_ALIASES

        msg = f"unknown backend {self.name_requested!r}"
        if self.reason:
            msg += f": {self.reason}"
        return f"{msg} (aliases: {', '.join(sorted(BACKEND_ALIASES))}; or a dotted path to a class)"


class ClientNotInstalled(CarrotError, ImportError):  # noqa: N818 -- compat: carrot's (or a kept) name
    """An optional client library a backend needs is not installed."""

    def __init__(self, backend: str, package: str) -> None:
        self.backend = backend
        self.package = package
        super().__init__(backend, package)

    def __str__(self) -> str:
        return (
            f"the {self.backend} backend needs the {self.package!r} package: "
            f"pip install {self.package}"
        )


class MissingConnectionSetting(CarrotError, KeyError):  # noqa: N818 -- compat: carrot's (or a kept) name
    """A connection setting the backend needs (hostname, userid, ...) is unset.

    A ``KeyError`` too, as carrot 0.10 raised ``KeyError`` here.

    :param setting: the :class:`~carrot.connection.BrokerConnection`
        argument that is missing (``"hostname"``, ``"userid"``, ``"password"``).
    :param backend: the kind of connection, for the message.
    """

    #: compat: carrot 0.10's wording for a setting in the message.
    _WORDING = {"userid": "user id"}

    def __init__(self, setting: str, backend: str = "AMQP") -> None:
        self.setting = setting
        self.backend = backend
        super().__init__(setting)

    def __str__(self) -> str:
        # compat: carrot's text, e.g. "Missing user id for AMQP connection."
        setting = self._WORDING.get(self.setting, self.setting)
        return f"Missing {setting} for {self.backend} connection."


class InvalidURLError(CarrotError, ValueError):
    """A broker URL that cannot be used: malformed, or of an unknown scheme.

    The message names the URL with its password masked (``***``).

    :param url: the URL (or broker list) as given.
    :param reason: what is wrong with it.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(url, reason)

    def __str__(self) -> str:
        from carrot.urls import mask_url  # carrot.urls imports this module

        return f"invalid broker URL {mask_url(self.url)!r}: {self.reason}"


class ConnectionLimitExceeded(CarrotError):  # noqa: N818 -- compat: carrot's (or a kept) name
    """The maximum number of pool connections has been exceeded."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        super().__init__(limit)

    def __str__(self) -> str:
        return f"connection pool limit exceeded: all {self.limit} connections are in use"


class ConnectionClosedError(CarrotError, ConnectionError):
    """The :class:`~carrot.connection.BrokerConnection` was closed; ``connect()`` opens it again.

    Raised when a publisher, consumer or backend is used after its connection
    was closed. It is also the builtin :exc:`ConnectionError` (an
    :exc:`OSError`), so it is one of every network backend's
    ``connection_errors`` and retry loops written for carrot catch it.

    .. versionadded:: 0.11
       carrot 0.10 raised ``AttributeError`` here.
    """

    def __str__(self) -> str:
        if self.args:
            return str(self.args[0])
        return "the connection is closed: call connect() to open it again"


class TLSError(CarrotError, ssl.SSLError):
    """The TLS handshake with the broker failed; no connection was made.

    Also an :exc:`ssl.SSLError` (an :exc:`OSError`), as the error it replaces.

    :param host: the broker, as ``host:port``.
    :param reason: what went wrong, from the :mod:`ssl` module.
    :param server_hostname: the host name the certificate was checked against.

    .. versionadded:: 0.11
    """

    def __init__(self, host: str, reason: str, server_hostname: str | None = None) -> None:
        self.host = host
        self.reason_text = reason
        self.server_hostname = server_hostname
        super().__init__(reason)

    def __reduce__(self) -> tuple[type[TLSError], tuple[str, str, str | None]]:
        return (type(self), (self.host, self.reason_text, self.server_hostname))

    def __str__(self) -> str:
        return f"TLS handshake with the broker at {self.host} failed: {self.reason_text}"


class TLSVerificationError(TLSError, ssl.SSLCertVerificationError):
    """The broker's certificate is not trusted, or does not name the host connected to.

    .. versionadded:: 0.11
    """

    def __str__(self) -> str:
        checked = f" (checked against host name {self.server_hostname!r})"
        return (
            f"the broker at {self.host} presented a certificate that can't be verified: "
            f"{self.reason_text}{checked if self.server_hostname else ''}"
        )


class MessageStateError(CarrotError):
    """The message has already been acknowledged (acked, rejected or requeued)."""


class SerializerNotInstalled(CarrotError):  # noqa: N818 -- compat: carrot's (or a kept) name
    """The serializer named is not registered, or its library is not installed."""


class EncodeError(CarrotError, TypeError, ValueError):
    """A message body could not be serialized; nothing was sent."""


class DecodeError(CarrotError, ValueError):
    """A received message body could not be decoded."""


class ContentDisallowed(DecodeError):  # noqa: N818 -- kombu's name, which users know
    """A message's content type is not in the consumer's ``accept`` list: its body was not decoded.

    Raised by the ``decode()`` and ``payload`` of a message fetched by a
    consumer whose ``accept`` does not list the content type; while
    consuming, the message is rejected and logged instead.

    :param content_type: the message's content type.
    :param accepted: the content types the consumer accepts.

    .. versionadded:: 0.11
    """

    def __init__(self, content_type: str | None, accepted: Iterable[str] | None = ()) -> None:
        self.content_type = content_type
        self.accepted = tuple(sorted(accepted or ()))
        super().__init__(content_type, self.accepted)

    def __str__(self) -> str:
        accepted = ", ".join(self.accepted) or "nothing"
        return (
            f"refusing to decode a message of content type {self.content_type!r}: "
            f"the consumer accepts {accepted}"
        )


class FilterWithAutoAckError(CarrotError, ValueError):
    """:meth:`~carrot.messaging.Consumer.discard_all` got a filter on an auto/no-ack consumer.

    Messages that do not match the filter could not be kept, as they are
    acknowledged on receipt. carrot 0.10 raised a bare :exc:`Exception` here;
    this class still is one.
    """

    def __str__(self) -> str:
        return "discard_all: can't use a filter with auto_ack or no_ack"


class UnknownDeliveryModeError(CarrotError, ValueError):
    """A delivery mode that is neither a name in ``Publisher.DELIVERY_MODES`` nor 1 or 2."""

    def __init__(
        self, name: object, valid: Iterable[str] = ("transient", "persistent", "non-persistent")
    ) -> None:
        self.name = name
        self.valid = tuple(valid)
        super().__init__(name)

    def __str__(self) -> str:
        valid = ", ".join(repr(name) for name in self.valid)
        return f"unknown delivery mode {self.name!r} (valid names: {valid}; or 1 or 2)"


def _describe(messages: Sequence[Unconfirmed]) -> str:
    shown = ", ".join(
        f"#{m.seq} to {m.exchange!r}/{m.routing_key!r}"
        + (f" (message_id {m.message_id!r})" if m.message_id else "")
        for m in messages[:3]
    )
    more = f" and {len(messages) - 3} more" if len(messages) > 3 else ""
    return shown + more


class MessageNacked(CarrotError):  # noqa: N818 -- RELIABILITY.md fixes the name (kombu's)
    """The broker refused (``basic.nack``) one or more messages published with ``confirm=True``.

    :attr:`messages` lists them (:class:`carrot.confirms.Unconfirmed`: the
    backend's message with its body and properties, the exchange and routing
    key), so exactly those can be sent again.
    """

    def __init__(self, messages: Iterable[Unconfirmed]) -> None:
        self.messages = list(messages)
        super().__init__(self.messages)

    def __str__(self) -> str:
        return f"the broker refused {len(self.messages)} message(s): {_describe(self.messages)}"


class MessageReturned(CarrotError):  # noqa: N818 -- RELIABILITY.md fixes the name
    """A message published ``mandatory`` with ``confirm=True`` was returned: no queue took it.

    :attr:`messages` lists them, each with ``returned = (reply_code, reply_text)``.
    """

    def __init__(self, messages: Iterable[Unconfirmed]) -> None:
        self.messages = list(messages)
        super().__init__(self.messages)

    def __str__(self) -> str:
        code, text = self.messages[0].returned or (312, "NO_ROUTE")
        return (
            f"the broker returned {len(self.messages)} unroutable message(s)"
            f" ({code} {text}): {_describe(self.messages)}"
        )


class ConfirmTimeoutError(CarrotError, TimeoutError):
    """Messages published with ``confirm=True`` were not confirmed within the timeout."""

    def __init__(self, unconfirmed: int, timeout: float | None) -> None:
        self.unconfirmed = unconfirmed
        self.timeout = timeout
        super().__init__(unconfirmed, timeout)

    def __str__(self) -> str:
        return f"{self.unconfirmed} message(s) still unconfirmed after {self.timeout} s"
