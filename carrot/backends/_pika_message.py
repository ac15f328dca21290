"""What pika hands over, as the pika backend passes it on: raw tuples, messages, declare results.

:class:`RawMessage` is what a consumer callback receives, :class:`Message`
wraps one for the application and :class:`DeclareOk` is what
``queue_declare`` returns. Public names are re-exported by
:mod:`carrot.backends.pikachu`; nothing here imports pika.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from carrot.backends.base import _NOT_DECODED, BaseMessage

__all__ = ["DeclareOk", "Message", "RawMessage"]


class RawMessage(NamedTuple):
    """What pika hands over for one message, as :meth:`Backend.message_to_python` takes it.

    compat: carrot 0.10's pika backend passed consumer callbacks the tuple
    ``(channel, method, header, body)``; this is that tuple, with names.
    """

    #: The pika channel it arrived on (acks go there).
    channel: Any
    #: ``Basic.Deliver``, ``Basic.GetOk`` or ``Basic.Return``.
    method: Any
    #: The :class:`pika.BasicProperties`.
    properties: Any
    #: The body, ``bytes``.
    body: bytes


class DeclareOk(NamedTuple):
    """What :meth:`Backend.queue_declare` returns (py-amqp returns the same fields)."""

    queue: str
    message_count: int
    consumer_count: int


def _properties_dict(properties: Any) -> dict[str, Any]:
    """The set fields of a :class:`pika.BasicProperties` as a dict."""
    if properties is None:
        return {}
    return {key: value for key, value in vars(properties).items() if value is not None}


class Message(BaseMessage):
    """A message received through pika.

    :param backend: the :class:`Backend` that received it.
    :param amqp_message: a :class:`RawMessage` (or carrot 0.10's 4-tuple
        ``(channel, method, properties, body)``), kept as :attr:`raw_message`.

    .. attribute:: raw_message

       The :class:`RawMessage` this was made from.
    """

    def __init__(self, backend: Any, amqp_message: Any, **kwargs: Any) -> None:
        # Hot path (every delivery): attributes set directly.
        _channel, method, properties, body = amqp_message
        self.backend = backend
        # Documented in the class docstring: autodoc looks for "#:" comments
        # in carrot.backends.pikachu, this class's public home.
        self.raw_message = amqp_message
        self._properties = properties
        self.body = kwargs.get("body", body)
        self.delivery_tag = method.delivery_tag
        self.content_type = getattr(properties, "content_type", None)
        self.content_encoding = getattr(properties, "content_encoding", None)
        info = {
            "exchange": method.exchange,
            "routing_key": method.routing_key,
            "redelivered": method.redelivered,
            "delivery_tag": method.delivery_tag,
        }
        consumer_tag = getattr(method, "consumer_tag", None)
        if consumer_tag is not None:
            info["consumer_tag"] = consumer_tag
        message_count = getattr(method, "message_count", None)
        if message_count is not None:
            info["message_count"] = message_count
        self.delivery_info = info
        self._decoded_cache = _NOT_DECODED
        self._state = "RECEIVED"

    @property
    def properties(self) -> dict[str, Any]:
        """The AMQP properties that are set (``headers``, ``priority``, ``delivery_mode``, ...)."""
        return _properties_dict(self._properties)

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers table (empty when it has none)."""
        return getattr(self._properties, "headers", None) or {}
