"""The one place that touches py-amqp's private names and undocumented internals.

The fast path needs a handful of them: handler methods to override
(``Channel._on_basic_deliver``, ``Channel._on_open_ok``,
``Connection._on_tune``, ``SSLTransport._wrap_socket``), state to read
(``AbstractChannel._pending``), ``Message`` objects filled in without
``__init__`` (``_pending_chunks`` and the rest) and
``GenericContent._serialize_properties``. Every other module reaches py-amqp
through this one or through public API only (a unit test greps for it).

At import, :func:`check` verifies that each name is there with the
signature used and that the installed amqp version is one the tox
environments test (:data:`TESTED`). If anything is off, :data:`AVAILABLE` is
false, :func:`warn_fallback` says so once (``carrot`` logger and a
:class:`RuntimeWarning` naming the amqp version), and the backend runs on
plain py-amqp: slower, but never on guessed internals.
"""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from typing import Any

import amqp
from amqp import method_framing, spec
from amqp import transport as amqp_transport
from amqp.abstract_channel import AbstractChannel

__all__ = [
    "AVAILABLE",
    "PROBLEMS",
    "TESTED",
    "SeamChannel",
    "SeamConnection",
    "SeamSSLTransport",
    "check",
    "current_transport",
    "delivered_message",
    "guarded_frame_writer",
    "having_timeout",
    "new_message",
    "serialize_properties",
    "transport_socket",
    "warn_fallback",
]

logger = logging.getLogger("carrot")

#: amqp versions the tox environments prove (``>=`` first, ``<`` second).
TESTED = ((5, 2, 0), (5, 5, 0))

#: Where the dotted names below are looked up.
_OWNERS: dict[str, Any] = {
    "Channel": amqp.Channel,
    "Connection": amqp.Connection,
    "Message": amqp.Message,
    "GenericContent": amqp.Message.__mro__[1],
    "AbstractChannel": AbstractChannel,
    "SSLTransport": amqp_transport.SSLTransport,
    "Transport": amqp_transport.TCPTransport,
    "method_framing": method_framing,
}

#: Callables used, and the parameter names they must take (in this order).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "Channel._on_basic_deliver": (
        "self",
        "consumer_tag",
        "delivery_tag",
        "redelivered",
        "exchange",
        "routing_key",
        "msg",
    ),
    "Channel._on_open_ok": ("self",),
    "Channel.collect": ("self",),
    "Channel.basic_ack": ("self", "delivery_tag", "multiple", "argsig"),
    "Channel.basic_reject": ("self", "delivery_tag", "requeue", "argsig"),
    "Channel.basic_get": ("self", "queue", "no_ack", "argsig"),
    "Connection._on_tune": ("self", "channel_max", "frame_max", "server_heartbeat", "argsig"),
    "Message._serialize_properties": ("self",),
    "SSLTransport._wrap_socket": ("self", "sock", "context", "sslopts"),
    "Transport.having_timeout": ("self", "timeout"),
    "method_framing.frame_writer": ("connection", "transport"),
}

#: Instance attributes used, and the method whose code must set them.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "Channel.__init__": ("no_ack_consumers", "callbacks"),
    "AbstractChannel.__init__": ("_pending", "channel_id", "connection"),
    "GenericContent.__init__": (
        "frame_method",
        "frame_args",
        "properties",
        "_pending_chunks",
        "body_received",
        "body_size",
        "ready",
    ),
    "Message.__init__": ("delivery_info", "body", "channel"),
    "Transport.__init__": ("sock", "connected"),
    "Connection.__init__": ("_transport",),
}

#: Set by :func:`check` at import.
AVAILABLE = False
#: What :func:`check` found wrong (empty when :data:`AVAILABLE`).
PROBLEMS: list[str] = []


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _parameters(func: Any) -> tuple[str, ...]:
    params = inspect.signature(func).parameters.values()
    # Defaults may change; names and order may not. **kwargs counts by name.
    return tuple(p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def _resolve(dotted: str) -> Any:
    owner, _, name = dotted.partition(".")
    return getattr(_OWNERS[owner], name)


def check(
    version: str | None = None,
    signatures: dict[str, tuple[str, ...]] | None = None,
    attributes: dict[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """What keeps the fast path from using this py-amqp: one sentence per problem.

    The arguments replace what is checked (the tests force each failure).
    """
    version = amqp.__version__ if version is None else version
    problems = []
    low, high = TESTED
    if not low <= _version(version) < high:
        problems.append(
            f"amqp {version} is outside the tested range "
            f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        )
    for name, expected in (SIGNATURES if signatures is None else signatures).items():
        try:
            found = _parameters(_resolve(name))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{name} is missing ({exc})")
            continue
        if found[: len(expected)] != expected:
            problems.append(f"{name}{found} no longer takes {expected}")
    for name, attrs in (ATTRIBUTES if attributes is None else attributes).items():
        try:
            code = _resolve(name).__code__
        except (AttributeError, KeyError) as exc:
            problems.append(f"{name} is missing ({exc})")
            continue
        missing = [attr for attr in attrs if attr not in code.co_names]
        if missing:
            problems.append(f"{name} no longer sets {', '.join(missing)}")
    return problems


_warned = False


def warn_fallback(problems: list[str], version: str | None = None) -> None:
    """Say once (log and :class:`RuntimeWarning`) that the fast path is off, and why."""
    global _warned
    if _warned:
        return
    _warned = True
    message = (
        f"carrot: py-amqp fast path disabled for amqp {version or amqp.__version__}; "
        f"using plain py-amqp ({'; '.join(problems)})"
    )
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)


def _self_check() -> None:
    global AVAILABLE
    try:
        PROBLEMS[:] = check()
    except Exception as exc:
        PROBLEMS[:] = [f"self-check failed: {exc!r}"]
    AVAILABLE = not PROBLEMS
    if PROBLEMS:
        warn_fallback(PROBLEMS)


# -- messages -------------------------------------------------------------------


def serialize_properties(message: Any) -> bytes:
    """The property flags and list of a content header for ``message``."""
    return message._serialize_properties()  # type: ignore[no-any-return]  # py-amqp is untyped


_new = object.__new__


def new_message(cls: type, body: Any, properties: dict[str, Any]) -> Any:
    """A ``cls`` (an :class:`amqp.Message` class) equal to ``cls(body, **properties)``, faster."""
    # Hot path: once per published message; sets what Message.__init__ sets.
    message: Any = _new(cls)  # an amqp.Message; py-amqp is untyped
    message.frame_method = None
    message.frame_args = None
    message.properties = properties
    message._pending_chunks = []
    message.body_received = 0
    message.body_size = 0
    message.ready = False
    message.delivery_info = None
    message.body = body
    message.channel = None
    return message


_DELIVER = spec.Basic.Deliver


def delivered_message(
    body: Any, size: int, properties: dict[str, Any], channel: Any, delivery_info: Any
) -> amqp.Message:
    """A received :class:`amqp.Message`, as py-amqp's own frame handler leaves it."""
    # Hot path: once per delivery.
    message = _new(amqp.Message)
    message.frame_method = _DELIVER
    message.frame_args = None
    message.properties = properties
    message._pending_chunks = []
    message.body_received = message.body_size = size
    message.ready = True
    message.body = body
    message.channel = channel
    message.delivery_info = delivery_info
    return message


# -- overrides ------------------------------------------------------------------


# misc (here and below): py-amqp is untyped, so its classes are Any to mypy.
class SeamChannel(amqp.Channel):  # type: ignore[misc]
    """An :class:`amqp.Channel` that reports openings and deliveries to hooks."""

    def channel_opened(self) -> None:
        """Hook: the channel was (re)opened or collected; delivery tags start again."""

    def consumer_delivery(self, consumer_tag: str, delivery_tag: int) -> None:
        """Hook: py-amqp assembled a delivery for ``consumer_tag``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: py-amqp's replies being waited for (``method sig -> callback``): the
        #: dict it creates once per channel and never replaces.
        self.awaited_replies = self._pending

    def _on_open_ok(self) -> None:
        self.channel_opened()
        super()._on_open_ok()

    def _on_basic_deliver(
        self,
        consumer_tag: str,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        msg: Any,
    ) -> None:
        self.consumer_delivery(consumer_tag, delivery_tag)
        super()._on_basic_deliver(
            consumer_tag, delivery_tag, redelivered, exchange, routing_key, msg
        )

    def deliver_unclaimed(self, delivery_info: dict[str, Any], msg: Any) -> None:
        """Hand a delivery nobody consumes to py-amqp (it logs and requeues it)."""
        self._on_basic_deliver(
            delivery_info["consumer_tag"],
            delivery_info["delivery_tag"],
            delivery_info["redelivered"],
            delivery_info["exchange"],
            delivery_info["routing_key"],
            msg,
        )


class SeamConnection(amqp.Connection):  # type: ignore[misc]  # misc: as SeamChannel
    """An :class:`amqp.Connection` that reports the end of tuning to a hook."""

    def tuned(self) -> None:
        """Hook: ``frame_max`` and the rest were negotiated."""

    def _on_tune(self, *args: Any, **kwargs: Any) -> Any:
        result = super()._on_tune(*args, **kwargs)
        self.tuned()
        return result


class SeamSSLTransport(amqp_transport.SSLTransport):  # type: ignore[misc]  # misc: as SeamChannel
    """py-amqp's TLS transport wrapping with the context and host name of a ``TLSSettings``."""

    __slots__ = ("_tls",)

    def __init__(self, host: str, connect_timeout: Any = None, ssl: Any = None, **kwargs: Any):
        self._tls = ssl
        super().__init__(host, connect_timeout=connect_timeout, ssl=True, **kwargs)

    def _wrap_socket(self, sock: Any, **sslopts: Any) -> Any:
        # py-amqp has already split off the port (and an IPv6 literal's brackets).
        return self._tls.context.wrap_socket(
            sock,
            server_hostname=self._tls.server_hostname or self.host,
            do_handshake_on_connect=False,
        )


def current_transport(connection: Any) -> Any:
    """The connection's transport, ``None`` once collected (``.transport`` would reconnect)."""
    return connection._transport


def transport_socket(transport: Any) -> Any:
    """The socket py-amqp's ``transport`` reads and writes."""
    return transport.sock


def having_timeout(transport: Any, timeout: float | None) -> Any:
    """py-amqp's context manager applying a read ``timeout`` to ``transport``'s socket."""
    return transport.having_timeout(timeout)


def guarded_frame_writer(connection: Any, transport: Any, lock: Any, before: Any) -> Any:
    """py-amqp's frame writer, each write under ``lock`` and after ``before()``."""
    write = method_framing.frame_writer(connection, transport)

    def write_frame(type_: int, channel: int, method_sig: Any, args: Any, content: Any) -> Any:
        with lock:
            before()
            return write(type_, channel, method_sig, args, content)

    return write_frame


_self_check()


def main() -> int:
    """``python -m carrot.backends._amqp.seam``: report, exit 1 if the fast path is off."""
    if PROBLEMS:
        print(f"amqp {amqp.__version__}: fast path OFF")
        for problem in PROBLEMS:
            print(f"  {problem}")
        return 1
    print(f"amqp {amqp.__version__}: every internal the fast path uses checks out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
