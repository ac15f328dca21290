"""Keeping passwords out of log records that client libraries write.

carrot's own messages never carry a password, and py-amqp, pika, kombu and
redis-py log none. stomp.py does: at DEBUG it logs every frame it sends,
the CONNECT frame's ``passcode`` header included, and it names the host it
connects to as given, which may be a URL with a password in it.
:func:`install` adds :class:`RedactPasswords` to such libraries' loggers
(:data:`REDACTED_LOGGERS`); it is called when :mod:`carrot.connection` is
imported.

A logger's filters see only the records logged on that very logger, so the
names are exact.
"""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED_LOGGERS", "RedactPasswords", "install", "redact"]

#: The loggers of client libraries that log passwords (see the module docstring).
REDACTED_LOGGERS = ("stomp.py",)

#: What replaces a password.
MASK = "***"

# scheme://user:password@ -> scheme://user:***@
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):[^@/\s]*@")
# A STOMP passcode header: up to the end of the line, or of the header as a
# repr'd bytes item (\n') in a logged frame.
_PASSCODE = re.compile(r"(passcode:).*?(?=\\n['\"]|\n|\\r|$)")


def redact(text: str) -> str:
    """``text`` with URL passwords and STOMP passcodes replaced by ``***``.

    >>> redact("connecting to amqp://app:s3cret@broker//")
    'connecting to amqp://app:***@broker//'
    >>> redact("[b'login:app\\\\n', b'passcode:s3cret\\\\n']")
    "[b'login:app\\\\n', b'passcode:***\\\\n']"
    """
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    if "passcode:" in text:
        text = _PASSCODE.sub(rf"\g<1>{MASK}", text)
    return text


class RedactPasswords(logging.Filter):
    """A logging filter that rewrites a record's message with :func:`redact`; it drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = RedactPasswords()


def install() -> None:
    """Add the filter to every logger of :data:`REDACTED_LOGGERS` (once)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
