"""The Sphinx docs build without warnings, and their broker-free examples run.

The build runs in a subprocess: autodoc imports (and reloads) carrot's
modules, which must not happen inside the test process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: Modules that must have a reference page in the built docs.
REFERENCE_MODULES = [
    "carrot",
    "carrot.connection",
    "carrot.messaging",
    "carrot.serialization",
    "carrot.utils",
    "carrot.exceptions",
    "carrot.backends",
    "carrot.backends.base",
    "carrot.backends.pyamqplib",
    "carrot.backends.queue",
    "carrot.backends.librabbitmq",
    "carrot.backends.kombu_transport",
    "carrot.backends.pikachu",
    "carrot.backends.pystomp",
    "carrot.cli",
]

_CODE_BLOCK = re.compile(r"^\.\. code-block:: python\n((?:[ \t]*\n|   .*\n)+)", re.M)


def python_blocks(page: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of a docs page, dedented."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = []
    for body in _CODE_BLOCK.findall(text):
        lines = [
            line[4:] if line.startswith("    ") else line.strip() for line in body.splitlines()
        ]
        blocks.append("\n".join(lines).strip() + "\n")
    return blocks


def run_blocks(page: str, blocks: list[str]) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"docs_{page.replace('.', '_')}"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page} (block {number})", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def built_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install '.[docs]')")
    # The reference pages document the kombu backend from its module.
    pytest.importorskip("kombu", reason="kombu is not installed (pip install carrot[kombu])")
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stderr}{result.stdout}"
    return out


def test_docs_build_with_warnings_as_errors(built_html: Path) -> None:
    index = (built_html / "index.html").read_text(encoding="utf-8")
    for page in ("migration", "backends", "cli", "performance", "changelog", "reference/index"):
        assert (built_html / f"{page}.html").is_file(), page
        assert f'href="{page}.html"' in index, f"{page} is not in the index toctree"


@pytest.mark.parametrize("module", REFERENCE_MODULES)
def test_reference_page_documents_module(built_html: Path, module: str) -> None:
    page = built_html / "reference" / f"{module}.html"
    assert page.is_file(), f"no reference page for {module}"
    html = page.read_text(encoding="utf-8")
    # automodule produced the module's target, and the page is in the toctree.
    assert f'id="module-{module}"' in html
    assert f'href="{module}.html"' in (built_html / "reference" / "index.html").read_text(
        encoding="utf-8"
    )


def test_reference_documents_public_names(built_html: Path) -> None:
    html = (built_html / "reference" / "carrot.messaging.html").read_text(encoding="utf-8")
    for name in ("Consumer", "Publisher", "ConsumerSet", "Messaging", "Consumer.discard_all"):
        assert f'id="carrot.messaging.{name}"' in html, name


def test_backends_page_examples_run() -> None:
    blocks = python_blocks("backends.rst")
    assert len(blocks) >= 3
    namespace = run_blocks("backends.rst", blocks)
    backend_cls = namespace["DirectBackend"]
    from carrot.backends.base import BaseBackend

    assert issubclass(backend_cls, BaseBackend)
    # The example's last block left the queues empty and nothing unacked.
    assert not any(backend_cls.queues.values())
    assert backend_cls.unacked == {}


def test_custom_backend_example_routes_by_key() -> None:
    namespace = run_blocks("backends.rst", python_blocks("backends.rst"))
    from carrot.connection import BrokerConnection
    from carrot.messaging import Consumer, Publisher

    conn = BrokerConnection(backend_cls=namespace["DirectBackend"])
    consumer = Consumer(conn, queue="q.a", exchange="x", routing_key="a")
    Publisher(conn, exchange="x", routing_key="b").send("to nobody")
    Publisher(conn, exchange="x", routing_key="a").send("to q.a")
    message = consumer.fetch()
    assert message.payload == "to q.a"
    message.ack()
    assert consumer.fetch() is None
    assert consumer.discard_all() == 0


def test_migration_memory_example_runs() -> None:
    from carrot.backends import queue

    blocks = [b for b in python_blocks("migration.rst") if 'backend_cls="memory"' in b]
    assert len(blocks) == 1
    queue.reset()
    try:
        namespace = run_blocks("migration.rst", blocks)
        assert namespace["message"].acknowledged
        assert namespace["consumer"].fetch() is None
    finally:
        queue.reset()


def _documented_options() -> dict[str, set[str]]:
    """``.. program::`` name -> the long options documented under it in cli.rst."""
    documented: dict[str, set[str]] = {}
    program = None
    for line in (DOCS / "cli.rst").read_text(encoding="utf-8").splitlines():
        if line.startswith(".. program:: "):
            program = line.removeprefix(".. program:: ").strip()
            documented.setdefault(program, set())
        elif line.startswith(".. option:: ") and program is not None:
            spec = line.removeprefix(".. option:: ")
            documented[program].update(
                word.split()[0] for word in spec.split(", ") if word.startswith("--")
            )
    return documented


def test_cli_page_documents_every_option() -> None:
    import argparse

    from carrot import cli

    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    documented = _documented_options()
    assert set(subparsers.choices) == {p.split()[1] for p in documented if " " in p}
    for name, subparser in subparsers.choices.items():
        options = {
            option
            for action in subparser._actions
            for option in action.option_strings
            if option.startswith("--") and option not in ("--help", "--debug")
        }
        assert options == documented[f"carrot {name}"], name
