"""What :class:`~carrot.backends.base.BaseBackend` offers beyond carrot 0.10's contract.

:class:`BackendDefaults` is a base class of ``BaseBackend``, and its methods
are documented there (:mod:`carrot.backends.base` is the public home of
:class:`ReturnedMessage` too). The defaults are written for an AMQP broker
reached through ``BrokerConnection.connection``; other backends override them:

* existence checks: ``queue_exists``/``exchange_exists`` by a passive
  declare on a throwaway channel;
* describing and timing the connection (``carrot ping``): ``in_process``,
  ``server_description``, ``round_trip``, and ``collect_returns``;
* helpers a backend calls: ``check_settings`` and ``record_return``;
* publisher confirms: ``confirm_select``/``drain_confirms`` refuse unless the
  backend sets ``confirms_on_publish`` (or implements them).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from carrot.exceptions import ConnectionClosedError, MissingConnectionSetting

if TYPE_CHECKING:
    from carrot.confirms import ConfirmWindow
    from carrot.connection import BrokerConnection

__all__ = ["BackendDefaults", "ReturnedMessage"]

logger = logging.getLogger("carrot.backends")


class ReturnedMessage(NamedTuple):
    """A message the broker returned as unroutable (:attr:`BaseBackend.returned_messages`).

    A tuple ``(reply_code, reply_text, exchange, routing_key, message)``
    with those names.

    .. versionadded:: 0.11
    """

    reply_code: int
    reply_text: str
    exchange: str
    routing_key: str
    #: The backend's raw message as returned.
    message: Any


class BackendDefaults:
    """The part of :class:`~carrot.backends.base.BaseBackend` newer than carrot 0.10.

    Every method is documented on ``BaseBackend``, which declares (and sets)
    the attributes annotated here.
    """

    if TYPE_CHECKING:
        # For the type checker only: no runtime annotations, so autodoc
        # documents these once, where BaseBackend defines them.
        connection: BrokerConnection
        channel_errors: tuple[type[BaseException], ...]
        confirms_on_publish: bool
        returned_messages: collections.deque[ReturnedMessage]

    def _established(self) -> Any:
        """The open connection of :attr:`connection` (opened on first use).

        :raises carrot.exceptions.ConnectionClosedError: the
            :class:`~carrot.connection.BrokerConnection` was closed.
        """
        conn = self.connection.connection
        if conn is None:
            raise ConnectionClosedError()
        return conn

    # -- what exists at the broker ----------------------------------------------

    def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` exists.

        The default asks an AMQP broker (a passive ``queue.declare`` on a
        throwaway channel of the connection, so a 404 disturbs neither this
        backend's channel nor its consumers); other backends override it.
        """
        return self._passive_declare(
            lambda channel: channel.queue_declare(queue=queue, passive=True)
        )

    def exchange_exists(self, exchange: str) -> bool | None:
        """Whether ``exchange`` exists; ``None`` where the backend cannot tell.

        The default asks an AMQP broker, as :meth:`queue_exists` does.

        .. versionadded:: 0.11
        """
        return self._passive_declare(
            lambda channel: channel.exchange_declare(exchange, "direct", passive=True)
        )

    def _passive_declare(self, declare: Callable[[Any], object]) -> bool:
        """``declare(channel)`` on a throwaway channel: False when the broker answers 404."""
        channel = self._established().channel()
        try:
            declare(channel)
        except self.channel_errors as exc:
            if getattr(exc, "reply_code", None) == 404:
                return False
            raise
        finally:
            if channel.is_open:
                channel.close()
        return True

    # -- describing the connection (``carrot ping``) --------------------------------

    # -- describing the connection (``carrot ping``) ----------------------------

    @property
    def in_process(self) -> bool:
        """Whether messages stay in this process (no broker, no network)."""
        return False

    def server_description(self) -> str | None:
        """What the server says it is (``"RabbitMQ 3.13.1 on Erlang/26.2"``), or None.

        The default reads the connection's ``server_properties`` (product,
        version, platform), as AMQP and STOMP connections report them.

        .. versionadded:: 0.11
        """
        props = getattr(self._established(), "server_properties", None) or {}
        product = _text(props.get("product", "unknown server"))
        version = _text(props.get("version", "?"))
        platform = props.get("platform")
        return f"{product} {version}" + (f" on {_text(platform)}" if platform else "")

    def collect_returns(self) -> None:
        """Wait until the broker answered what this backend's channel sent, returns included.

        The default makes a synchronous call that changes nothing (a passive
        declare of ``amq.direct``) on :attr:`channel`: an AMQP broker sends
        any ``basic.return`` before its answer.

        .. versionadded:: 0.11
        """
        self.channel.exchange_declare("amq.direct", "direct", passive=True)  # type: ignore[attr-defined]

    def round_trip(self) -> tuple[str, Callable[[], object]]:
        """``(label, operation)``: one request the broker answers, to time it.

        The default opens and closes a channel.

        .. versionadded:: 0.11
        """
        connection = self._established()
        return "channel open + close", lambda: connection.channel().close()

    # -- helpers for backends --------------------------------------------------

    def check_settings(self, *settings: str, kind: str = "AMQP") -> None:
        """Raise for the first of ``settings`` the connection leaves unset.

        ``hostname`` must be non-empty, the others (``userid``,
        ``password``) not ``None``.

        :param kind: the kind of connection, for the message.
        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            naming the setting, as carrot 0.10 raised.
        """
        conninfo = self.connection
        for setting in settings:
            value = getattr(conninfo, setting, None)
            if (not value) if setting == "hostname" else (value is None):
                raise MissingConnectionSetting(setting, kind)

    def record_return(
        self, reply_code: int, reply_text: str, exchange: str, routing_key: str, message: Any
    ) -> None:
        """Log a message the broker returned and keep it on :attr:`returned_messages`."""
        logger.warning(
            "message returned by the broker: %s %s (exchange=%r routing_key=%r)",
            reply_code,
            reply_text,
            exchange,
            routing_key,
        )
        self.returned_messages.append(
            ReturnedMessage(reply_code, reply_text, exchange, routing_key, message)
        )

    # -- publisher confirms ----------------------------------------------------

    def confirm_select(self, window: ConfirmWindow) -> None:
        """Put the channel in publisher-confirm mode; report the broker's answers to ``window``.

        ``window`` is a :class:`carrot.confirms.ConfirmWindow`: call its
        ``acked``, ``nacked`` and ``returned`` as the broker answers.

        :raises NotImplementedError: this backend has no publisher confirms.

        .. versionadded:: 0.11
        """
        if not self.confirms_on_publish:
            raise NotImplementedError(
                f"the {type(self).__module__}.{type(self).__name__} backend has no publisher "
                "confirms: Publisher(confirm=True) needs a backend that has them (amqp, pika, "
                "stomp, memory)"
            )

    def drain_confirms(self, timeout: float) -> None:
        """Read the broker's answers for up to ``timeout`` seconds (see :meth:`confirm_select`).

        With :attr:`confirms_on_publish` there is nothing to read.

        .. versionadded:: 0.11
        """
        if not self.confirms_on_publish:
            raise NotImplementedError(
                f"{type(self).__name__}.drain_confirms: the backend has no publisher confirms"
            )


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
