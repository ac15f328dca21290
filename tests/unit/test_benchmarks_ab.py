"""benchmarks/ab.py: this checkout against another, interleaved."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


@pytest.fixture
def ab(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("ab", None)
    import ab

    return ab


def test_base_must_be_another_checkout(ab: Any) -> None:
    with pytest.raises(SystemExit, match="is this checkout"):
        ab.main(["--base", str(ROOT)])


def test_base_without_the_benchmark_is_named(ab: Any, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=f"{tmp_path} has no benchmarks/run.py"):
        ab.main(["--base", str(tmp_path), "--rounds", "1"])


@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_prints_every_scenario_for_both_checkouts(
    ab: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A copy of this checkout's code stands in for "before".
    for part in ("carrot", "benchmarks"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert ab.main(["--base", str(tmp_path), "-n", "300", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 interleaved rounds of 300 messages" in out
    assert f"before: {tmp_path}" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for scenario in ab.SCENARIOS:
        row = rows[scenario]
        # before and after CPU, their ratio, before and after msg/s, their ratio, vs py-amqp x2
        assert len(row) == 9, row
        assert float(row[1]) > 0 and float(row[2]) > 0
        assert float(row[3]) == pytest.approx(float(row[2]) / float(row[1]), abs=0.002)
        assert row[7].endswith("x") and row[8].endswith("x")
