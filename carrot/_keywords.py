"""Unknown keyword arguments: accepted as carrot 0.10 did, with a warning naming them.

carrot's constructors took ``**kwargs`` and ignored the names they did not
know, so ``Consumer(durible=True)`` silently built a durable consumer from
the class default. We keep accepting them (code written for carrot passes
options meant for other versions), but :func:`warn_unknown_keywords` emits one
:exc:`~carrot.exceptions.CarrotWarning` per call naming them, pointed at the
line of the caller's code.

The names a class knows are collected over its MRO from three places, so a
keyword added later is known as soon as it is declared:

* the parameters of each ``__init__`` signature (a keyword made explicit);
* ``_init_opts``, the keywords that override class attributes;
* ``_keywords``, a tuple of the other names read from ``**kwargs``.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from weakref import WeakKeyDictionary

from carrot.exceptions import CarrotWarning

__all__ = ["known_keywords", "nested_construction", "warn_unknown_keywords"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_known: WeakKeyDictionary[type, frozenset[str]] = WeakKeyDictionary()
#: True while a carrot object builds others from the same keywords
#: (``Messaging`` its publisher and consumer): it has checked them already.
_nested: ContextVar[bool] = ContextVar("carrot_nested_construction", default=False)


def known_keywords(cls: type) -> frozenset[str]:
    """Every keyword argument ``cls(...)`` reads: signatures, ``_init_opts``, ``_keywords``."""
    try:
        return _known[cls]
    except KeyError:
        pass
    names: set[str] = set()
    for klass in cls.__mro__:
        namespace = vars(klass)
        init = namespace.get("__init__")
        if init is not None and klass is not object:
            try:
                parameters = inspect.signature(init).parameters.values()
            except (TypeError, ValueError):  # a builtin without a signature
                parameters = ()  # type: ignore[assignment]
            names.update(p.name for p in parameters if p.kind in _KEYWORD_KINDS)
        names.update(namespace.get("_init_opts", ()))
        names.update(namespace.get("_keywords", ()))
    names.discard("self")
    known = _known[cls] = frozenset(names)
    return known


class nested_construction:  # noqa: N801 -- used as a context manager, like contextlib's
    """While active, :func:`warn_unknown_keywords` stays quiet (the outer object checked)."""

    def __enter__(self) -> None:
        self._token = _nested.set(True)

    def __exit__(self, *exc_info: object) -> None:
        _nested.reset(self._token)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the carrot package.

    That is the line that called carrot (or, for a subclass, its
    ``super().__init__(...)`` line), as Python's own ``TypeError`` would name.
    """
    frame = sys._getframe(2)  # the carrot code that called warn_unknown_keywords
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def warn_unknown_keywords(
    cls: type, kwargs: Mapping[str, object], also: Iterable[type] = ()
) -> None:
    """Warn (:exc:`~carrot.exceptions.CarrotWarning`) about keywords ``cls`` does not read.

    :param cls: the class being built (``type(self)``).
    :param kwargs: the ``**kwargs`` it received.
    :keyword also: other classes the keywords are passed on to.
    """
    if not kwargs or _nested.get():
        return
    known = known_keywords(cls).union(*(known_keywords(other) for other in also))
    unknown = kwargs.keys() - known
    if not unknown:
        return
    described = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1)
        described.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    plural = "s" if len(described) > 1 else ""
    warnings.warn(
        f"{cls.__name__}() got unknown keyword argument{plural} {', '.join(described)}: "
        f"ignored, as carrot 0.10 did",
        CarrotWarning,
        stacklevel=_caller_stacklevel(),
    )
