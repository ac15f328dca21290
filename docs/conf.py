"""Sphinx configuration for carrot's documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (``tox -e docs``):
warnings are errors, so a broken reference or a bad docstring fails the build.
No extension here reaches the network.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import carrot  # noqa: E402 -- needs the checkout on sys.path first

project = "carrot"
author = carrot.__author__
copyright = "The carrot developers"  # noqa: A001 -- the name Sphinx reads
version = ".".join(map(str, carrot.VERSION[:2]))
release = carrot.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]


def _missing_module_pages() -> list[str]:
    """Reference pages (``reference/<module>.rst``) whose module is absent.

    Lets a page be written before its module lands; the reference toctree
    lists the modules every checkout has by name, so one of those going
    missing still fails the build.
    """
    missing = []
    for page in sorted((ROOT / "docs" / "reference").glob("carrot*.rst")):
        try:
            found = importlib.util.find_spec(page.stem) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(f"reference/{page.name}")
    return missing


# Offline: intersphinx is not enabled, so external names stay plain text.
exclude_patterns = ["_build", *_missing_module_pages()]
templates_path: list[str] = []
# _static holds the benchmark chart once the performance page exists.
html_static_path = ["_static"] if (ROOT / "docs" / "_static").is_dir() else []
html_theme = "alabaster"
html_theme_options = {
    "description": "carrot 0.10's API on Python 3 and py-amqp",
    "fixed_sidebar": True,
    # Room for 88-column code blocks and the long module names in the sidebar.
    "page_width": "1200px",
    "sidebar_width": "300px",
}

default_role = "py:obj"
nitpicky = False

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Types live in the annotations; show them beside the documented parameters.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
# Optional clients may be missing where the docs are built; the backends
# import them lazily, these only keep autodoc quiet about the annotations.
autodoc_mock_imports: list[str] = []


def _skip_class_aliases(app, what, name, obj, skip, options):
    """Leave out class attributes that merely name a module-level class.

    ``Backend.Message = Message`` and ``BaseMessage.MessageStateError`` are
    compat aliases; documenting them again would describe the same class
    twice (a duplicate-object warning, an error under ``-W``).
    """
    if what == "class" and isinstance(obj, type) and "." not in obj.__qualname__:
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_class_aliases)
