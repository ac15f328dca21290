"""What the STOMP wire client raises, and the one place an ERROR frame becomes an exception.

* :exc:`StompError` -- the broker answered with an ERROR frame (a channel
  error for the stomp backend);
* :exc:`StompConnectionError` -- the connection could not be made, or was
  lost (a connection error, also a builtin :exc:`ConnectionError`).

Both are :exc:`~carrot.exceptions.CarrotError`\\ s; :mod:`carrot.backends.pystomp`
re-exports them as their public home.
"""

from __future__ import annotations

from typing import Any

from carrot.exceptions import CarrotError

__all__ = ["StompConnectionError", "StompError", "stomp_error"]


class StompError(CarrotError):
    """The broker answered with a STOMP ERROR frame.

    :param message: the frame's ``message`` header.
    :param details: the frame's body.
    """

    def __init__(self, message: str, details: str = "") -> None:
        self.message = message
        self.details = details
        super().__init__(message, details)

    def __str__(self) -> str:
        return f"STOMP error: {self.message}" + (f" ({self.details})" if self.details else "")


class StompConnectionError(CarrotError, ConnectionError):
    """The STOMP connection could not be made, or was lost."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "the STOMP connection was lost"


def stomp_error(frame: Any) -> StompError:
    """The :exc:`StompError` for an ERROR frame (its ``message`` header and its body)."""
    body = frame.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return StompError(frame.headers.get("message", "ERROR"), (body or "").strip())
