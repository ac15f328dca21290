"""carrot.backends: the alias table, dotted paths, classes and errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import carrot.backends
from carrot.backends import (
    BACKEND_ALIASES,
    DEFAULT_BACKEND,
    get_backend_cls,
    resolve_backend,
)
from carrot.backends.base import BaseBackend
from carrot.backends.pyamqplib import Backend as AMQPBackend
from carrot.exceptions import BackendNotFound, ClientNotInstalled

#: SPEC's alias table: alias -> the module (and class prefix) it must name.
SPEC_ALIASES = {
    "amqp": "carrot.backends.pyamqplib.Backend",
    "amqplib": "carrot.backends.pyamqplib.Backend",
    "pyamqplib": "carrot.backends.pyamqplib.Backend",
    "memory": "carrot.backends.queue.Backend",
    "mem": "carrot.backends.queue.Backend",
    "queue": "carrot.backends.queue.Backend",
    "pika": "carrot.backends.pikachu.",
    "pikachu": "carrot.backends.pikachu.",
    "syncpika": "carrot.backends.pikachu.",
    "stomp": "carrot.backends.pystomp.Backend",
    "stompy": "carrot.backends.pystomp.Backend",
    "librabbitmq": "carrot.backends.librabbitmq.Backend",
    "kombu": "carrot.backends.kombu_transport.",
    "redis": "carrot.backends.kombu_transport.",
}


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write modules of a throwaway package; return (package name, writer)."""
    name = f"carrot_fake_{uuid.uuid4().hex[:10]}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(module: str, source: str) -> str:
        (pkg / f"{module}.py").write_text(textwrap.dedent(source))
        return f"{name}.{module}"

    yield name, write
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def test_default_backend_is_py_amqp() -> None:
    assert DEFAULT_BACKEND == "carrot.backends.pyamqplib.Backend"
    assert get_backend_cls() is AMQPBackend
    assert get_backend_cls(None) is AMQPBackend


@pytest.mark.parametrize(("alias", "target"), sorted(SPEC_ALIASES.items()))
def test_spec_alias_in_table(alias: str, target: str) -> None:
    assert BACKEND_ALIASES[alias].startswith(target)
    assert resolve_backend(alias) == BACKEND_ALIASES[alias]


@pytest.mark.parametrize("alias", sorted(SPEC_ALIASES))
def test_alias_gives_a_backend_or_a_clear_error(alias: str) -> None:
    # Backends for optional clients are written elsewhere; each alias must give
    # a BaseBackend subclass or an ImportError that says what is missing.
    try:
        cls = get_backend_cls(alias)
    except BackendNotFound as exc:
        assert repr(alias) in str(exc)
    except ClientNotInstalled as exc:
        assert "pip install" in str(exc)
    else:
        assert issubclass(cls, BaseBackend)


@pytest.mark.parametrize("alias", ["amqp", "amqplib", "pyamqplib", "AMQP", "Amqplib"])
def test_amqp_aliases(alias: str) -> None:
    assert get_backend_cls(alias) is AMQPBackend


def test_resolve_backend() -> None:
    assert resolve_backend() == DEFAULT_BACKEND
    assert resolve_backend(None) == DEFAULT_BACKEND
    assert resolve_backend("") == DEFAULT_BACKEND
    assert resolve_backend("amqp") == DEFAULT_BACKEND
    assert resolve_backend("myapp.backends.Backend") == "myapp.backends.Backend"


def test_empty_name_is_the_default() -> None:
    # compat: carrot did ``backend or DEFAULT_BACKEND`` (CARROT_BACKEND = "").
    assert get_backend_cls("") is AMQPBackend


def test_class_passes_through() -> None:
    class Custom(BaseBackend):
        pass

    assert get_backend_cls(Custom) is Custom


@pytest.mark.parametrize(
    "path",
    [
        "carrot.backends.pyamqplib.Backend",
        "carrot.backends.pyamqplib:Backend",
        "carrot.backends.pyamqplib",  # compat: a module means its Backend
    ],
)
def test_dotted_paths(path: str) -> None:
    assert get_backend_cls(path) is AMQPBackend


def test_lookups_are_cached() -> None:
    assert get_backend_cls("amqp") is get_backend_cls("amqp")


def test_legacy_default_backend_name() -> None:
    assert carrot.backends.DefaultBackend is AMQPBackend
    from carrot.backends import DefaultBackend

    assert DefaultBackend is AMQPBackend


def test_unknown_module_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        carrot.backends.NoSuchThing  # noqa: B018 -- the lookup is the test


@pytest.mark.parametrize(
    "name",
    [
        "rabbitmqq",
        "nosuchpackage_xyz.Backend",
        "carrot.backends.nosuch_xyz",
        "carrot.backends.nosuch_xyz.Backend",
        "carrot.backends.pyamqplib.NoSuchClass",
        "carrot.backends.base",  # a module without a Backend class
    ],
)
def test_unknown_backend_error_names_it_and_lists_aliases(name: str) -> None:
    with pytest.raises(BackendNotFound) as excinfo:
        get_backend_cls(name)
    text = str(excinfo.value)
    assert repr(name) in text
    for alias in ("amqp", "memory", "pika", "stomp"):
        assert alias in text
    # carrot raised ImportError here; old except clauses still work.
    assert isinstance(excinfo.value, ImportError)


def test_unknown_backend_through_connection() -> None:
    from carrot.connection import BrokerConnection

    conn = BrokerConnection(backend_cls="no-such-transport")
    with pytest.raises(BackendNotFound, match="no-such-transport"):
        conn.create_backend()


def test_not_a_name_or_class() -> None:
    with pytest.raises(BackendNotFound, match="42"):
        get_backend_cls(42)


def test_third_party_backend_by_dotted_path(fake_package) -> None:
    _, write = fake_package
    module = write(
        "mybackend",
        """
        from carrot.backends.base import BaseBackend

        class Backend(BaseBackend):
            default_port = 1234
        """,
    )
    cls = get_backend_cls(f"{module}.Backend")
    assert issubclass(cls, BaseBackend)
    assert cls.default_port == 1234
    assert get_backend_cls(module) is cls

    from carrot.connection import BrokerConnection

    conn = BrokerConnection(hostname="h", backend_cls=f"{module}.Backend")
    assert conn.host == "h:1234"
    assert isinstance(conn.create_backend(), cls)


def test_missing_client_names_the_pip_package(fake_package, monkeypatch) -> None:
    _, write = fake_package
    monkeypatch.setitem(sys.modules, "stomp", None)  # make ``import stomp`` fail
    module = write(
        "needs_stomp",
        """
        import stomp

        class Backend:
            pass
        """,
    )
    with pytest.raises(ClientNotInstalled) as excinfo:
        get_backend_cls(f"{module}.Backend")
    assert "pip install stomp.py" in str(excinfo.value)
    assert isinstance(excinfo.value, ImportError)


def test_unrelated_import_error_inside_a_backend_propagates(fake_package) -> None:
    _, write = fake_package
    module = write("broken", "import carrot_definitely_missing_dependency_xyz\n")
    with pytest.raises(ImportError, match="carrot_definitely_missing_dependency_xyz"):
        get_backend_cls(f"{module}.Backend")


def test_importing_carrot_needs_no_optional_client() -> None:
    code = (
        "import sys, carrot, carrot.connection, carrot.backends, carrot.backends.base,"
        " carrot.backends.pyamqplib, carrot.utils\n"
        "print(','.join(m for m in ('pika', 'stomp', 'kombu', 'redis', 'librabbitmq')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
