"""carrot's annotations: mypy passes with the shipped config, and users' checkers see them."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (tox -e lint has it)")


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    # mypy finds pyproject.toml and this checkout's carrot from the current directory
    monkeypatch.chdir(ROOT)


@pytest.mark.kombu
@pytest.mark.timeout(300)
def test_mypy_passes_with_the_shipped_config() -> None:
    out, err, status = mypy_api.run([])
    assert status == 0, out + err
    assert "Success: no issues found" in out


@pytest.mark.timeout(300)
def test_a_users_script_sees_carrot_types(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(
        "from carrot.connection import BrokerConnection\n"
        "from carrot.messaging import Consumer\n"
        "conn = BrokerConnection(backend_cls='memory')\n"
        "consumer = Consumer(conn, queue='q')\n"
        "reveal_type(consumer.fetch())\n"
        "reveal_type(consumer.connection)\n"
        "consumer.fetch(no_ack='yes')\n"
    )
    # as for an installed package: carrot's own modules are not reported on
    out, _err, status = mypy_api.run(
        ["--strict", "--follow-imports=silent", "--no-incremental", str(script)]
    )
    lines = out.splitlines()
    assert any('Revealed type is "carrot.backends.base.BaseMessage | None"' in li for li in lines)
    assert any('Revealed type is "carrot.connection.BrokerConnection"' in li for li in lines)
    # a wrong argument type is caught, as a typed library allows
    assert any("fetch" in li and "incompatible type" in li for li in lines), out
    assert status == 1
