"""The sending half of the stomp backend: a message's SEND headers, publish, publisher confirms.

:class:`StompPublishing` holds :class:`carrot.backends.pystomp.Backend`'s
methods that send: ``prepare_message`` maps carrot's message fields to
STOMP headers (the inverse of :class:`~carrot.backends.pystomp.Message`),
``publish`` sends to the destination named by
:func:`~carrot.backends._stomp_destinations.publish_destination`, and
publisher confirms ask a receipt of each SEND
(:meth:`~carrot.backends.pystomp.Connection.send_confirmed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carrot.backends._stomp_destinations import _bool_header, publish_destination
from carrot.backends.base import BaseBackend

if TYPE_CHECKING:
    from carrot.backends._stomp_wire import Connection
    from carrot.confirms import ConfirmWindow

__all__ = ["StompPublishing"]


class StompPublishing(BaseBackend):
    """The stomp backend's publishing and publisher confirms (a part of its ``Backend``)."""

    if TYPE_CHECKING:

        @property
        def channel(self) -> Connection: ...

    def prepare_message(  # type: ignore[override]
        # override: carrot 0.10's base takes **kwargs; Publisher passes only these.
        self,
        message_data: Any,
        delivery_mode: Any,
        priority: int | None = 0,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> dict[str, Any]:
        """Build the message: ``body`` (bytes) and its STOMP headers.

        ``persistent`` is ``"true"`` for delivery mode 2; ``priority`` is
        sent unless it is 0 (the default, as in carrot 0.10) or ``None``.
        """
        body = message_data
        if isinstance(body, str):
            try:
                body = body.encode(content_encoding or "utf-8")
            except LookupError:
                body = body.encode("utf-8")
        message: dict[str, Any] = {
            "body": body if body is not None else b"",
            "persistent": _bool_header(delivery_mode == 2),
        }
        if content_type is not None:
            message["content-type"] = content_type
        if content_encoding is not None:
            message["content-encoding"] = content_encoding
        if priority:  # 0 (carrot's default) is AMQP's default priority too
            message["priority"] = str(priority)
        return message

    def publish(
        self,
        message: dict[str, Any],
        exchange: str,
        routing_key: Any,
        mandatory: bool | None = None,
        immediate: bool | None = None,
        headers: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Send a prepared message to the destination for ``exchange`` and ``routing_key``.

        A dict ``routing_key`` (headers exchanges) is sent as headers; other
        keywords are accepted and ignored, as carrot 0.10 did.
        """
        # Hot path (every publish).
        frame_headers = {key: value for key, value in message.items() if key != "body"}
        if isinstance(routing_key, dict):
            frame_headers.update((str(k), str(v)) for k, v in routing_key.items())
        if headers:
            frame_headers.update((str(k), str(v)) for k, v in headers.items())
        confirms = self._confirms
        if confirms is None:
            self.channel.send(
                publish_destination(exchange, routing_key), message["body"], frame_headers
            )
            return
        seq = confirms.last_seq

        def settled(ok: bool) -> None:
            if ok:
                confirms.acked(seq)
            else:
                confirms.nacked(seq)

        self.channel.send_confirmed(
            publish_destination(exchange, routing_key), message["body"], frame_headers, settled
        )

    # -- publisher confirms --------------------------------------------------

    _confirms: ConfirmWindow | None = None

    def confirm_select(self, window: ConfirmWindow) -> None:
        """Confirm each SEND with a STOMP receipt: RECEIPT is an ack, an ERROR for it a nack.

        Receipts are asked for per message, so ``max_unconfirmed`` messages
        may await theirs at once. RabbitMQ closes the STOMP connection after
        an ERROR.

        .. versionadded:: 0.11
        """
        window.reset()
        self._confirms = window

    def drain_confirms(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a receipt (they come on stomp.py's own thread).

        :raises StompError: the broker sent an ERROR (and closed the connection).
        :raises StompConnectionError: the connection is lost.

        .. versionadded:: 0.11
        """
        conn = self.channel
        settled = conn.send_settled
        # Short waits: a set() just before the clear() is not missed for long.
        if settled.wait(min(timeout, 0.05)):
            settled.clear()
            return  # the caller looks at its window again
        conn.check_sends()
