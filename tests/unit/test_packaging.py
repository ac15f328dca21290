"""What a packager gets: license, PEP 517 build, PEP 561 marker, sdist contents."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _setup_call() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    (call,) = (
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    )
    return {keyword.arg: keyword.value for keyword in call.keywords if keyword.arg}


def test_license_file_is_bsd_3_clause_and_declared() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "The carrot developers" in text
    setup = _setup_call()
    assert ast.literal_eval(setup["license"]) == "BSD-3-Clause"
    assert ast.literal_eval(setup["license_files"]) == ["LICENSE"]


def test_no_deprecated_license_classifier() -> None:
    classifiers = ast.literal_eval(_setup_call()["classifiers"])
    assert classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]


def test_pyproject_declares_a_pep517_setuptools_build() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    assert any(req.startswith("setuptools") for req in build["requires"])


def test_package_is_typed() -> None:
    assert (ROOT / "carrot" / "py.typed").is_file()
    assert ast.literal_eval(_setup_call()["package_data"]) == {"carrot": ["py.typed"]}


def test_sdist_manifest_carries_docs_tests_and_license() -> None:
    lines = (ROOT / "MANIFEST.in").read_text().splitlines()
    directives = {tuple(line.split()) for line in lines if line and not line.startswith("#")}
    assert ("graft", "docs") in directives
    assert ("graft", "tests") in directives
    assert ("prune", "docs/_build") in directives
    included = {word for d in directives if d[0] == "include" for word in d[1:]}
    assert {"LICENSE", "README.rst", "carrot/py.typed"} <= included


def test_gitignore_covers_build_output_and_virtualenvs() -> None:
    ignored = set((ROOT / ".gitignore").read_text().split())
    assert {"build/", "dist/", ".venv/", "*.egg-info/"} <= ignored


def test_every_test_has_a_default_timeout(pytestconfig: pytest.Config) -> None:
    # pytest-timeout is in the test extra, and tox.ini gives every test a deadline
    assert '"pytest-timeout>=' in (ROOT / "setup.py").read_text()
    assert 0 < float(pytestconfig.getini("timeout")) <= 300
