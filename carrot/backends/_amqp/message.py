"""The message the py-amqp backend hands its consumers.

:class:`Message` wraps a received :class:`amqp.Message`; its public home is
:mod:`carrot.backends.pyamqplib`.
"""

from __future__ import annotations

from typing import Any

from carrot.backends.base import _NOT_DECODED, BaseMessage

__all__ = ["Message"]


class Message(BaseMessage):
    """A message received through py-amqp.

    :param backend: the :class:`Backend` that received it.
    :param amqp_message: the :class:`amqp.Message`.
    """

    def __init__(self, backend: Any, amqp_message: Any, **kwargs: Any) -> None:
        # Hot path (every delivery): attributes set directly.
        self.backend = backend
        self.amqp_message = amqp_message
        props = amqp_message.properties
        self.body = kwargs.get("body", amqp_message.body)
        self.delivery_info = amqp_message.delivery_info or {}
        self.delivery_tag = self.delivery_info.get("delivery_tag")
        self.content_type = props.get("content_type")
        self.content_encoding = props.get("content_encoding")
        self._decoded_cache = _NOT_DECODED
        self._state = "RECEIVED"

    @property
    def properties(self) -> dict[str, Any]:
        """The AMQP properties (headers, priority, delivery_mode, ...)."""
        return self.amqp_message.properties  # type: ignore[no-any-return]  # py-amqp is untyped

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers table (empty when it has none)."""
        return self.amqp_message.properties.get("application_headers") or {}
