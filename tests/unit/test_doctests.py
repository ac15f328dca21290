"""Every example in a docstring of the package runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import carrot


def _modules() -> list[str]:
    names = ["carrot"]
    for info in pkgutil.walk_packages(carrot.__path__, "carrot."):
        names.append(info.name)
    return sorted(names)


#: Modules that import kombu (the kombu extra) at the top.
_NEED_KOMBU = {"carrot.backends._kombu_seam", "carrot.backends.kombu_transport"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.kombu) if name in _NEED_KOMBU else name
        for name in _modules()
    ],
)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found():
    # The modules known to carry examples; a rename must not silently skip them.
    attempted = {
        name: doctest.testmod(importlib.import_module(name), verbose=False).attempted
        for name in ("carrot.urls", "carrot.serialization")
    }
    assert all(count > 0 for count in attempted.values()), attempted
