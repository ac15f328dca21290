"""carrot.backends._kombu_seam: kombu's private channel names, checked at import."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

# kombu is an extra (carrot[kombu]): without it there is nothing here to test.
pytest.importorskip("kombu", reason="kombu is not installed (pip install carrot[kombu])")

import kombu
from kombu.transport import memory as kombu_memory

from carrot.backends import _kombu_seam as seam


def test_the_installed_kombu_has_every_name_the_fixes_use() -> None:
    assert seam.missing_internals(seam.MEMORY_INTERNALS) == []
    assert seam.missing_internals(seam.REDIS_INTERNALS) == []
    assert seam.PATCHED == {"memory": True, "redis": True}
    assert seam.TRANSPORTS["memory"] is seam._MemoryTransport


class Old:
    """A kombu class as an older or newer release might have it."""

    def _put(self, queue, message):  # no **kwargs
        pass


def test_missing_and_changed_names_are_reported() -> None:
    problems = seam.missing_internals(
        [
            (Old, "_put", ("queue", "message", "kwargs")),
            (Old, "_restore", ("message",)),
            (Old, "_put", None),  # presence only: fine
        ]
    )
    assert problems == [
        f"{__name__}.Old._put takes ('queue', 'message'), carrot expects "
        "('queue', 'message', 'kwargs')",
        f"{__name__}.Old._restore is missing",
    ]


def test_a_missing_name_falls_back_to_kombus_transport_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="carrot"),
        pytest.warns(RuntimeWarning, match=rf"kombu {kombu.__version__}: .*memory") as record,
    ):
        chosen = seam.select_transport(
            "memory",
            seam._MemoryTransport,
            kombu_memory.Transport,
            [(Old, "_restore", ("message",))],
        )
    assert chosen is kombu_memory.Transport
    assert len(record) == 1
    assert "Old._restore is missing" in str(record[0].message)
    assert "runs as kombu made it" in caplog.text


def test_all_present_selects_the_patched_transport_silently(recwarn) -> None:
    chosen = seam.select_transport(
        "memory", seam._MemoryTransport, kombu_memory.Transport, [(Old, "_put", None)]
    )
    assert chosen is seam._MemoryTransport
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_an_incompatible_kombu_at_import_runs_unpatched_and_still_works() -> None:
    # A fresh interpreter whose kombu lacks a name the memory fixes override.
    code = (
        "import warnings\n"
        "from kombu.transport.virtual import base\n"
        "del base.Channel._restore_at_beginning\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from carrot.backends import _kombu_seam as seam\n"
        "from kombu.transport import memory\n"
        "assert seam.TRANSPORTS['memory'] is memory.Transport, seam.TRANSPORTS\n"
        "assert seam.PATCHED['memory'] is False\n"
        "print([str(w.message) for w in caught if w.category is RuntimeWarning])\n"
        "from carrot.connection import BrokerConnection\n"
        "from carrot.messaging import Consumer, Publisher\n"
        "conn = BrokerConnection(backend_cls='kombu')\n"
        "Consumer(conn, queue='seam.q', exchange='seam.x', routing_key='k')\n"
        "Publisher(conn, exchange='seam.x', routing_key='k').send({'ok': 1})\n"
        "print(Consumer(conn, queue='seam.q', exchange='seam.x', routing_key='k')"
        ".fetch().payload)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    warned, payload = out.stdout.strip().splitlines()
    assert "_restore_at_beginning is missing" in warned
    assert "memory transport are off" in warned
    assert payload == "{'ok': 1}"


def test_no_other_carrot_module_names_a_private_kombu_channel_attribute() -> None:
    import pathlib
    import re

    import carrot

    names = {name for _, name, _ in (*seam.MEMORY_INTERNALS, *seam.REDIS_INTERNALS)}
    private = sorted(name for name in names if name.startswith("_"))
    pattern = re.compile(r"\.(" + "|".join(map(re.escape, private)) + r")\b")
    offenders = [
        str(path)
        for path in pathlib.Path(carrot.__file__).parent.rglob("*.py")
        if path.name != "_kombu_seam.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
