"""The py-amqp seam: its self-check, each failure mode, the plain fallback, and its monopoly."""

from __future__ import annotations

import ast
import logging
import pathlib
import subprocess
import sys
import textwrap

import amqp
import pytest

import carrot
from carrot.backends import pyamqplib
from carrot.backends._amqp import connection, seam

CARROT_DIR = pathlib.Path(carrot.__file__).parent
SEAM_FILE = CARROT_DIR / "backends" / "_amqp" / "seam.py"


def test_installed_amqp_passes_the_self_check() -> None:
    # tox runs this on every amqp version setup.py allows (amqp52, amqp53, amqp5x).
    assert seam.check() == []
    assert seam.AVAILABLE and seam.PROBLEMS == []
    assert issubclass(pyamqplib.Connection, connection.Connection)


@pytest.mark.parametrize("version", ["5.1.1", "5.0.9", "5.5.0", "6.0.0", "4.9.9"])
def test_an_untested_version_is_refused(version: str) -> None:
    problems = seam.check(version=version)
    assert len(problems) == 1
    assert f"amqp {version} is outside the tested range" in problems[0]


@pytest.mark.parametrize("version", ["5.2.0", "5.3.1", "5.4.2", "5.4.9"])
def test_tested_versions_are_accepted(version: str) -> None:
    assert seam.check(version=version) == []


def test_a_missing_name_is_reported() -> None:
    problems = seam.check(
        version="5.4.2",
        signatures={"Channel._no_such_handler": ("self",), "Nowhere.thing": ("self",)},
        attributes={},
    )
    assert len(problems) == 2
    assert "Channel._no_such_handler is missing" in problems[0]
    assert "Nowhere.thing is missing" in problems[1]


def test_a_changed_signature_is_reported(monkeypatch) -> None:
    def _on_tune(self, frame_max, channel_max, server_heartbeat, argsig="BlB"):  # reordered
        raise AssertionError("never called")

    monkeypatch.setattr(amqp.Connection, "_on_tune", _on_tune)
    problems = seam.check()
    assert len(problems) == 1
    assert problems[0].startswith("Connection._on_tune(")
    assert "no longer takes ('self', 'channel_max', 'frame_max'" in problems[0]


def test_a_removed_name_is_reported(monkeypatch) -> None:
    generic_content = amqp.Message.__mro__[1]  # where py-amqp defines it
    monkeypatch.delattr(generic_content, "_serialize_properties")
    problems = seam.check()
    assert problems == [
        "Message._serialize_properties is missing "
        "(type object 'Message' has no attribute '_serialize_properties')"
    ]


def test_an_attribute_no_longer_set_is_reported(monkeypatch) -> None:
    original = amqp.Channel.__init__

    def __init__(self, *args, **kwargs):  # noqa: N807 -- stands in for Channel.__init__
        original(self, *args, **kwargs)
        self.renamed_callbacks = {}

    monkeypatch.setattr(amqp.Channel, "__init__", __init__)
    problems = seam.check()
    assert problems == ["Channel.__init__ no longer sets no_ack_consumers, callbacks"]


def test_fallback_warns_once_on_the_carrot_logger_and_as_runtime_warning(
    monkeypatch, caplog
) -> None:
    monkeypatch.setattr(seam, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="carrot"):
        with pytest.warns(RuntimeWarning, match=r"amqp 5\.1\.1.*outside the tested range"):
            seam.warn_fallback(["amqp 5.1.1 is outside the tested range"], "5.1.1")
        seam.warn_fallback(["said again"], "5.1.1")  # once only: no second warning
    records = [r for r in caplog.records if r.name == "carrot"]
    assert len(records) == 1
    assert "fast path disabled for amqp 5.1.1" in records[0].getMessage()


FALLBACK_SCRIPT = """
import contextlib
import warnings
warnings.simplefilter("always")
import amqp
{breakage}
with warnings.catch_warnings(record=True) as caught:
    from carrot.backends import pyamqplib
    from carrot.backends._amqp import connection, plain, seam
assert not seam.AVAILABLE, seam.PROBLEMS
assert [str(w.message) for w in caught if w.category is RuntimeWarning], caught
assert any(f"amqp {{amqp.__version__}}" in str(w.message) for w in caught)
assert pyamqplib.Connection.__mro__[2] is plain.PlainConnection
assert not issubclass(pyamqplib.Connection, connection.Connection)

# Publishing goes through py-amqp's basic_publish, byte for byte its own.
from amqp.method_framing import frame_handler, frame_writer

class Transport:
    connected = True
    def __init__(self):
        self.written, self.frames = [], []
    def write(self, data):
        self.written.append(bytes(data))
    def read_frame(self):
        if not self.frames:
            raise TimeoutError("timed out")
        return self.frames.pop(0)
    @contextlib.contextmanager
    def having_timeout(self, timeout):
        yield None

conn = pyamqplib.Connection(host="fake:5672")
transport = conn._transport = Transport()
conn.frame_writer = frame_writer(conn, transport)
conn.on_inbound_frame = frame_handler(conn, conn.on_inbound_method)
channel = conn.Channel(conn, 1)
channel.is_open = True
backend = pyamqplib.Backend.__new__(pyamqplib.Backend)
message = backend.prepare_message(b"body", 2, content_type="text/plain")
message.delivery_tag = 7  # carrot's tests set it
assert message.delivery_tag == 7
assert not hasattr(channel, "fast_publish")
channel.basic_publish(message, "ex", "rk")
assert transport.written, "nothing published"

# A delivery is dispatched by plain py-amqp, and drain_events ignores allowed_methods.
got = []
channel.callbacks["ctag"] = got.append
reference = amqp.Message(b"hello", content_type="text/plain")
from amqp import spec
from amqp.serialization import dumps
args = dumps("sLbss", ("ctag", 1, False, "ex", "rk"))
props = reference._serialize_properties()
import struct
transport.frames += [
    (1, 1, struct.pack(">HH", 60, 60) + args),
    (2, 1, struct.pack(">HHQ", 60, 0, 5) + props),
    (3, 1, b"hello"),
]
conn.drain_events(allowed_methods=[(60, 60)], timeout=1)
assert [m.body for m in got] == [b"hello"], got
assert got[0].delivery_info["delivery_tag"] == 1
print("fallback ok")
"""


@pytest.mark.parametrize(
    "breakage",
    [
        'amqp.__version__ = "5.1.1"',  # an untested version
        "amqp.Connection._on_tune = lambda self, *args: None",  # a changed signature
        # AbstractChannel.__init__ no longer (visibly) sets _pending.
        "from amqp.abstract_channel import AbstractChannel as A\n"
        "init = A.__init__\n"
        "A.__init__ = lambda self, *args: init(self, *args)",
    ],
    ids=["version", "signature", "attribute"],
)
def test_backend_falls_back_to_plain_py_amqp(breakage: str) -> None:
    # A fresh interpreter: the seam decides once, at import.
    script = FALLBACK_SCRIPT.format(breakage=breakage)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(CARROT_DIR.parent), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "fallback ok" in result.stdout


# -- only the seam names py-amqp's private attributes -------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _amqp_private_names() -> set[str]:
    """Every private name py-amqp defines: methods, classes, attributes it assigns."""
    names = set()
    for path in pathlib.Path(amqp.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and _private(node.name):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and _private(node.attr)
            ):
                names.add(node.attr)
            elif (
                isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _private(node.id)
            ):
                names.add(node.id)
    return names


def _names_used(tree: ast.Module) -> set[str]:
    """Attributes read or written, methods defined in classes, names imported from amqp."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            used.update(
                item.name for item in node.body if isinstance(item, ast.FunctionDef | ast.ClassDef)
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("amqp"):
            used.update(alias.name for alias in node.names)
    return used


def _own_attributes(tree: ast.Module) -> set[str]:
    """``self.X`` a module assigns itself, when it does not import py-amqp at all.

    Such a module's ``_pending`` (say) is its own field, not py-amqp's; a
    module that imports amqp gets no such benefit of the doubt.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "amqp" for a in node.names):
            return set()
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "amqp":
            return set()
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


def test_only_the_seam_names_private_py_amqp_attributes() -> None:
    amqp_private = _amqp_private_names()
    # The scan finds what it looks for: the seam itself uses several.
    seam_uses = _names_used(ast.parse(SEAM_FILE.read_text())) & amqp_private
    assert {"_on_basic_deliver", "_pending_chunks", "_pending", "_on_tune"} <= seam_uses
    offenders = {}
    for path in sorted(CARROT_DIR.rglob("*.py")):
        if path == SEAM_FILE:
            continue
        tree = ast.parse(path.read_text())
        found = (_names_used(tree) - _own_attributes(tree)) & amqp_private
        if found:
            offenders[str(path.relative_to(CARROT_DIR))] = sorted(found)
    assert offenders == {}
