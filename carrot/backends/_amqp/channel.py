"""A py-amqp channel with a fast publish and combined acks.

It is a plain :class:`amqp.Channel` for everything else; the methods it
overrides keep their py-amqp signatures and effects.
"""

from __future__ import annotations

from threading import get_ident
from typing import Any

from amqp import spec

from carrot.backends._amqp import seam
from carrot.backends._amqp.acks import AckTracker
from carrot.backends._amqp.framing import ack_frames

__all__ = ["Channel"]


#: The broker's publisher confirms (sent only to a channel in confirm mode).
_CONFIRM_METHODS = frozenset({spec.Basic.Ack, spec.Basic.Nack})


class Channel(seam.SeamChannel):
    """A py-amqp channel with a fast ``publish`` and combined acks.

    Its connection is a :class:`carrot.backends._amqp.connection.Connection`
    (``fast_publish`` falls back to ``basic_publish`` on any other).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Deliveries awaiting settlement and the acks held back.
        self.acks = AckTracker()
        super().__init__(*args, **kwargs)

    def channel_opened(self) -> None:
        # Delivery tags start again at 1 on a (re)opened channel.
        self.acks.reset()

    def collect(self) -> None:
        self.acks.reset()
        super().collect()

    def consumer_delivery(self, consumer_tag: str, delivery_tag: int) -> None:
        # Deliveries py-amqp assembled (the fast path handed them over).
        if consumer_tag not in self.no_ack_consumers:
            self.acks.delivered(delivery_tag)

    # -- publish ---------------------------------------------------------------

    def fast_publish(
        self,
        message: Any,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
    ) -> None:
        """``basic_publish`` without its per-message overhead (same frames, same effect).

        Falls back to :meth:`basic_publish` when the connection waits for
        each confirm (py-amqp's ``confirm_publish``) and for bodies that are
        neither ``bytes`` nor ``str``. Confirms asked for with
        ``confirm_select`` arrive as py-amqp events either way.
        """
        # Hot path: runs once per published message.
        conn = self.connection
        if (
            conn is None
            or not self.is_open
            or conn.confirm_publish
            or not conn.fast_path
            or not isinstance(message.body, (bytes, str))
        ):
            # no-any-return: py-amqp's basic_publish is untyped (it returns None).
            return self.basic_publish(  # type: ignore[no-any-return]
                message,
                exchange=exchange,
                routing_key=routing_key,
                mandatory=mandatory,
                immediate=immediate,
            )
        data = conn.framer.frames(
            self.channel_id, message, exchange, routing_key, mandatory, immediate
        )
        conn.write_publish(data)

    # -- acks ------------------------------------------------------------------

    #: The :class:`~carrot.confirms.ConfirmWindow` the connection reports this
    #: channel's publisher confirms to, parsed in place (``None``: py-amqp's
    #: ``basic_ack``/``basic_nack`` events do).
    confirm_window: Any = None

    def dispatch_method(self, method_sig: Any, payload: Any, content: Any) -> Any:
        """As py-amqp's, but confirms reaching a closing channel are dropped quietly.

        Closing a channel with messages still unconfirmed (recovery replaces
        a channel a leaderless quorum queue nacked, and re-sends what it
        left) makes the broker answer each of them before ``close-ok``;
        py-amqp ignores them too, but logs a WARNING for every one, hundreds
        per failover. Anything else still gets py-amqp's warning.
        """
        if self.is_closing and method_sig in _CONFIRM_METHODS:
            return None
        return super().dispatch_method(method_sig, payload, content)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False, argsig: str = "Lb") -> Any:
        """Acknowledge; consecutive single acks are combined (see :class:`.AckTracker`)."""
        # Hot path: once per acked message.
        conn = self.connection
        if not multiple and conn is not None:
            held_acks = conn.held_acks
            if held_acks.dispatching and held_acks.dispatch_thread != get_ident():
                # Another thread is inside drain_events (maybe blocked reading a
                # socket that stays quiet until the broker sees this ack): write
                # it now, alone, leaving that thread's held-back acks to it (no
                # combined ack of its covers this tag: it is still live), and
                # only then forget the tag.
                with held_acks.lock:
                    conn.transport.write(ack_frames(self.channel_id, [delivery_tag], 0))
                conn.bytes_sent += 1
                self.acks.settled(delivery_tag)
                return None
            # The tracker changes under the ack lock: another thread's frame
            # write (a reject, a close) takes held-back acks under it too.
            with held_acks.lock:
                held = self.acks.ack(delivery_tag)
                flush = held and held_acks.hold(self)
            if held:
                if flush:
                    conn.flush_acks()
                return None
        if multiple:
            self.acks.settled_upto(delivery_tag)
        return super().basic_ack(delivery_tag, multiple, argsig)

    def basic_reject(self, delivery_tag: Any, requeue: bool, argsig: str = "Lb") -> Any:
        self.acks.settled(delivery_tag)
        return super().basic_reject(delivery_tag, requeue, argsig)

    def basic_nack(
        self, delivery_tag: Any, multiple: bool = False, requeue: bool = True, argsig: str = "Lbb"
    ) -> Any:
        """Reject one delivery, or every one up to ``delivery_tag`` (RabbitMQ's ``basic.nack``).

        py-amqp's channel has no ``basic_nack``; this sends the frame itself.
        """
        if multiple:
            self.acks.settled_upto(delivery_tag)
        else:
            self.acks.settled(delivery_tag)
        return self.send_method(spec.Basic.Nack, argsig, (delivery_tag, multiple, requeue))

    def basic_get(self, queue: str = "", no_ack: bool = False, argsig: str = "Bsb") -> Any:
        message = super().basic_get(queue, no_ack, argsig)
        if message is not None and not no_ack:
            self.acks.delivered(message.delivery_info["delivery_tag"])
        return message
