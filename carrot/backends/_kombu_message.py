"""A message received through a kombu transport, as carrot's messages are.

Re-exported by :mod:`carrot.backends.kombu_transport`, its public home.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carrot.backends.base import _NOT_DECODED, BaseMessage

if TYPE_CHECKING:
    from kombu.message import Message as KombuMessage

    from carrot.backends.kombu_transport import Backend

__all__ = ["Message"]


class Message(BaseMessage):
    """A message received through a kombu transport.

    :param backend: the :class:`Backend` that received it.
    :param kombu_message: the transport's :class:`kombu.message.Message`.
    """

    def __init__(self, backend: Backend, kombu_message: KombuMessage, **kwargs: Any) -> None:
        # Hot path (every delivery): attributes set directly.
        self.backend = backend
        self.kombu_message = kombu_message
        body = kwargs.get("body", kombu_message.body)
        # kombu hands an empty body back as "".
        self.body = body if body else b""
        self.delivery_tag = tag = kombu_message.delivery_tag
        self.content_type = kombu_message.content_type
        self.content_encoding = kombu_message.content_encoding
        info = dict(kombu_message.delivery_info or ())
        info["delivery_tag"] = tag
        info.setdefault("redelivered", False)
        self.delivery_info = info
        self._decoded_cache = _NOT_DECODED
        self._state = "RECEIVED"

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers (empty when it has none)."""
        headers: dict[str, Any] = self.kombu_message.headers or {}
        return headers

    @property
    def properties(self) -> dict[str, Any]:
        """The transport's message properties (delivery_mode, priority, ...)."""
        return self.kombu_message.properties
