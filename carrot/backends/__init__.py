"""Backend lookup: aliases, dotted paths and classes.

A backend is named by an alias from :data:`BACKEND_ALIASES`, by the dotted path
of a class (``"myapp.backends.Backend"``; ``"myapp.backends:Backend"`` works
too), or given as the class itself. ``None`` means :data:`DEFAULT_BACKEND`.
As in older carrot releases, the path of a module (``"carrot.backends.pyamqplib"``)
or a bare module name under ``carrot.backends`` (``"pyamqplib"``) means that
module's ``Backend`` class.

Modules for optional clients (pika, stomp.py, kombu) are imported only when
their backend is asked for, so importing :mod:`carrot` never needs them.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any, cast

from carrot.exceptions import BackendNotFound, ClientNotInstalled

__all__ = ["BACKEND_ALIASES", "DEFAULT_BACKEND", "get_backend_cls", "resolve_backend"]

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
    "kombu": "carrot.backends.kombu_transport.Backend",
    "redis": "carrot.backends.kombu_transport.RedisBackend",
}

# compat: names older carrot releases exported from this package.
_LEGACY_NAMES = {
    "DefaultBackend": DEFAULT_BACKEND,
}


def resolve_backend(backend: str | None = None) -> str:
    """Return the dotted path for an alias (or the path itself).

    ``None`` and ``""`` mean :data:`DEFAULT_BACKEND`; aliases match in any
    case (``"AMQP"`` is ``"amqp"``).

    .. versionchanged:: 0.11
       Returns the dotted path as one string; carrot 0.10 returned a
       ``(module_name, class_name)`` pair, which ``path.rpartition(".")``
       gives back.
    """
    if not backend:
        return DEFAULT_BACKEND
    alias = BACKEND_ALIASES.get(backend) or BACKEND_ALIASES.get(backend.lower())
    return alias or backend


#: Top-level module of an optional client -> the pip package that provides it.
_CLIENT_PACKAGES = {
    "amqp": "amqp",
    "kombu": "kombu",
    "librabbitmq": "librabbitmq",
    "pika": "pika",
    "redis": "redis",
    "stomp": "stomp.py",
}


def _import_module(module_name: str, requested: object) -> ModuleType | None:
    """Import a backend module, or ``None`` if that module does not exist.

    A module that exists but needs a missing client library raises
    :exc:`~carrot.exceptions.ClientNotInstalled` naming the pip package.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            return None  # the module itself (or its package) does not exist
        package = _CLIENT_PACKAGES.get(missing.partition(".")[0])
        if package is not None:
            raise ClientNotInstalled(str(requested), package) from exc
        raise


def _backend_from_module(module: ModuleType, requested: object) -> type:
    # compat: carrot < 0.10 named a backend by its module and used the
    # module's ``Backend`` class ("carrot.backends.pyamqplib", "pyamqplib").
    try:
        return cast(type, module.Backend)
    except AttributeError:
        raise BackendNotFound(requested, f"module {module.__name__!r} has no 'Backend'") from None


def _import_class(path: str, requested: object) -> type:
    if ":" in path:
        module_name, _, cls_name = path.partition(":")
    else:
        if "." not in path:
            # compat: a bare module name was looked up in carrot.backends.
            module = _import_module(f"{__name__}.{path}", requested)
            if module is None:
                raise BackendNotFound(requested, "not an alias and not a dotted path to a class")
            return _backend_from_module(module, requested)
        module = _import_module(path, requested)
        if module is not None:
            return _backend_from_module(module, requested)
        module_name, _, cls_name = path.rpartition(".")
    if not module_name or not cls_name:
        raise BackendNotFound(requested, "not an alias and not a dotted path to a class")
    module = _import_module(module_name, requested)
    if module is None:
        raise BackendNotFound(requested, f"no module named {module_name!r}")
    try:
        return cast(type, getattr(module, cls_name))
    except AttributeError:
        raise BackendNotFound(requested, f"module {module_name!r} has no {cls_name!r}") from None


@cache
def _get_backend_cls_cached(backend: str | None) -> type:
    return _import_class(resolve_backend(backend), backend)


def get_backend_cls(backend: str | type | None = None) -> type:
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
