"""Small helpers carrot 0.10 exported and real code still imports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = ["gen_unique_id", "partition", "repeatlast", "retry_over_time", "rpartition"]


def gen_unique_id() -> str:
    """Return a new random UUID as a string."""
    return str(uuid.uuid4())


def partition(S: str, sep: str) -> tuple[str, str, str]:  # noqa: N803 -- compat: carrot's name
    """``S.partition(sep)``; kept because carrot shipped it for Python 2.4."""
    return S.partition(sep)


def rpartition(S: str, sep: str) -> tuple[str, str, str]:  # noqa: N803 -- compat: carrot's name
    """``S.rpartition(sep)``; kept because carrot shipped it for Python 2.4."""
    return S.rpartition(sep)


def repeatlast(it: Iterable[_T]) -> Iterator[_T]:
    """Yield every item of ``it``, then repeat the last one forever.

    An empty iterable yields nothing.
    """
    empty = True
    for item in it:
        empty = False
        yield item
    if empty:
        return
    while True:
        yield item


def retry_over_time(
    fun: Callable[..., _T],
    catch: type[BaseException] | tuple[type[BaseException], ...],
    args: Iterable[Any] = [],
    kwargs: dict[str, Any] = {},  # noqa: B006 -- compat: carrot's signature; never mutated
    errback: Callable[[BaseException, float], object] | None = None,
    max_retries: int | None = None,
    interval_start: float = 2,
    interval_step: float = 2,
    interval_max: float = 30,
) -> _T:
    """Call ``fun(*args, **kwargs)`` until it stops raising ``catch``.

    :param fun: the function to call.
    :param catch: the exception class (or tuple of classes) that means "try again".
    :keyword errback: called as ``errback(exc, interval)`` before each sleep.
    :keyword max_retries: give up and re-raise after this many retries
        (``None`` or ``0``: retry for ever).
    :keyword interval_start: seconds to sleep after the first failure.
    :keyword interval_step: seconds added to the sleep after each failure.
    :keyword interval_max: the longest sleep.
    :returns: what ``fun`` returned.

    Intervals may be floats.

    .. versionchanged:: 0.11
       Exactly ``max_retries`` retries are made (carrot 0.10 made one more),
       and the sleep never exceeds ``interval_max`` (carrot's could, by up to
       ``interval_step``).
    """
    args = tuple(args)
    interval = interval_start
    retries = 0
    while True:
        try:
            return fun(*args, **kwargs)
        except catch as exc:
            # compat: 0 means for ever, as carrot's ``if max_retries and ...``;
            # Celery 1.x documented BROKER_CONNECTION_MAX_RETRIES = 0 so.
            if max_retries and retries >= max_retries:
                raise
            sleep_for = min(interval, interval_max)
            if errback is not None:
                errback(exc, sleep_for)
            time.sleep(sleep_for)
            interval = min(interval + interval_step, interval_max)
            retries += 1
