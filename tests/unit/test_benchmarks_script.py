"""benchmarks/run.py writes its JSON where asked, never over the tracked results by default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("run", "chart", "clients"):
        sys.modules.pop(name, None)
    import run

    return run


def _args(run: Any, argv: list[str]) -> argparse.Namespace:
    return run.build_parser().parse_args(argv)


def test_default_is_a_new_temporary_file_not_the_tracked_results(run: Any) -> None:
    first = run.results_path(_args(run, ["-n", "200"]))
    second = run.results_path(_args(run, ["-n", "200"]))
    try:
        assert first != run.SAVED_RESULTS
        assert first != second
        assert first.name.startswith("carrot-bench-") and first.suffix == ".json"
        assert first.exists()  # created, so no other run picks the name
    finally:
        first.unlink()
        second.unlink()


@pytest.mark.parametrize("option", ["--json", "--output"])
def test_json_or_output_names_the_file(run: Any, option: str, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    assert run.results_path(_args(run, [option, str(target)])) == target


def test_save_writes_the_tracked_results(run: Any) -> None:
    assert run.SAVED_RESULTS == BENCH / "results.json"
    assert run.results_path(_args(run, ["--save"])) == run.SAVED_RESULTS


def test_save_and_json_together_are_a_usage_error(run: Any, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--save", "--json", str(tmp_path / "x.json")])
    assert exc.value.code == 2
