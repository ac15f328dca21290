"""Backend lookup: aliases, dotted paths and classes.

A backend is named by an alias from :data:`BACKEND_ALIASES`, by the dotted path
of a class (``"myapp.backends.Backend"``; ``"myapp.backends:Backend"`` works
too), or given as the class itself. ``None`` means :data:`DEFAULT_BACKEND`.

Modules for optional clients (pika, stomp.py, kombu) are imported only when
their backend is asked for, so importing :mod:`carrot` never needs them.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

from carrot.exceptions import BackendNotFound

__all__ = ["DEFAULT_BACKEND", "BACKEND_ALIASES", "resolve_backend", "get_backend_cls"]

#: The backend used when none is named: py-amqp.
DEFAULT_BACKEND = "carrot.backends.pyamqplib.Backend"

_PIKA = "carrot.backends.pikachu.AsyncoreBackend"
_SYNCPIKA = "carrot.backends.pikachu.SyncBackend"
_STOMP = "carrot.backends.pystomp.Backend"
_MEMORY = "carrot.backends.queue.Backend"

#: Short names accepted wherever a backend is named.
BACKEND_ALIASES = {
    "amqp": DEFAULT_BACKEND,
    "amqplib": DEFAULT_BACKEND,
    "pyamqplib": DEFAULT_BACKEND,
    "librabbitmq": "carrot.backends.librabbitmq.Backend",
    "memory": _MEMORY,
    "mem": _MEMORY,
    "queue": _MEMORY,
    "pika": _PIKA,
    "pikachu": _PIKA,
    "syncpika": _SYNCPIKA,
    "stomp": _STOMP,
    "stompy": _STOMP,
    "kombu": "carrot.backends.kombu.Backend",
    "redis": "carrot.backends.kombu.RedisBackend",
}

# compat: names older carrot releases exported from this package.
_LEGACY_NAMES = {
    "DefaultBackend": DEFAULT_BACKEND,
}


def resolve_backend(backend: str | None = None) -> str:
    """Return the dotted path for an alias (or the path itself)."""
    if backend is None:
        return DEFAULT_BACKEND
    return BACKEND_ALIASES.get(backend, backend)


def _import_class(path: str, requested: Any) -> type:
    if ":" in path:
        module_name, _, cls_name = path.partition(":")
    else:
        module_name, _, cls_name = path.rpartition(".")
    if not module_name or not cls_name:
        raise BackendNotFound(requested, "not an alias and not a dotted path to a class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            # The module itself is missing, not something it imports.
            raise BackendNotFound(requested, f"no module named {module_name!r}") from exc
        raise
    try:
        return getattr(module, cls_name)
    except AttributeError:
        raise BackendNotFound(requested, f"module {module_name!r} has no {cls_name!r}") from None


@lru_cache(maxsize=None)
def _get_backend_cls_cached(backend: str | None) -> type:
    return _import_class(resolve_backend(backend), backend)


def get_backend_cls(backend: Any = None) -> type:
    """Return the backend class for an alias, a dotted path, a class or ``None``.

    :raises carrot.exceptions.BackendNotFound: naming what could not be found
        (an ``ImportError`` too, as carrot raised).
    :raises carrot.exceptions.ClientNotInstalled: the backend's client library
        is missing; the message names the pip package.
    """
    if isinstance(backend, type):
        return backend
    if backend is not None and not isinstance(backend, str):
        raise BackendNotFound(backend, "expected an alias, a dotted path or a class")
    return _get_backend_cls_cached(backend)


def __getattr__(name: str) -> Any:
    # compat: ``from carrot.backends import DefaultBackend`` (carrot < 0.10).
    if name in _LEGACY_NAMES:
        return get_backend_cls(_LEGACY_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
