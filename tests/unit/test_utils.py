"""carrot.utils: the helpers carrot 0.10 exported."""

from __future__ import annotations

import inspect
import uuid

import pytest

from carrot import utils
from carrot.utils import gen_unique_id, partition, repeatlast, retry_over_time, rpartition


class Flaky:
    """Fails ``failures`` times with ``exc``, then returns ``result``."""

    def __init__(self, failures: int, exc: BaseException, result: object = "done") -> None:
        self.failures = failures
        self.exc = exc
        self.result = result
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append((args, kwargs))
        if len(self.calls) <= self.failures:
            raise self.exc
        return self.result


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the sleeps of retry_over_time instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr(utils.time, "sleep", slept.append)
    return slept


def test_gen_unique_id_is_a_uuid_string() -> None:
    ids = {gen_unique_id() for _ in range(100)}
    assert len(ids) == 100
    for value in ids:
        assert isinstance(value, str)
        assert str(uuid.UUID(value)) == value


def test_partition_and_rpartition() -> None:
    assert partition("a.b.c", ".") == ("a", ".", "b.c")
    assert rpartition("a.b.c", ".") == ("a.b", ".", "c")
    assert partition("abc", ".") == ("abc", "", "")
    assert rpartition("abc", ".") == ("", "", "abc")


def test_repeatlast_repeats_the_last_item() -> None:
    it = repeatlast(iter([1, 2, 3]))
    assert [next(it) for _ in range(6)] == [1, 2, 3, 3, 3, 3]


def test_repeatlast_of_nothing_ends_cleanly() -> None:
    # PEP 479: the generator must return, not raise StopIteration.
    assert list(repeatlast([])) == []
    assert inspect.isgenerator(repeatlast([]))


def test_retry_over_time_returns_at_once_on_success(sleeps: list[float]) -> None:
    fun = Flaky(0, OSError("x"), result=42)
    errors: list[tuple[BaseException, float]] = []
    assert retry_over_time(fun, OSError, errback=lambda e, i: errors.append((e, i))) == 42
    assert errors == []
    assert sleeps == []


def test_retry_over_time_passes_args_and_kwargs(sleeps: list[float]) -> None:
    fun = Flaky(1, OSError("x"))
    retry_over_time(fun, OSError, args=[1, 2], kwargs={"a": 3})
    assert fun.calls == [((1, 2), {"a": 3})] * 2


def test_retry_over_time_errback_and_growing_float_intervals(sleeps: list[float]) -> None:
    exc = OSError("refused")
    fun = Flaky(3, exc)
    errors: list[tuple[BaseException, float]] = []
    result = retry_over_time(
        fun,
        OSError,
        errback=lambda e, i: errors.append((e, i)),
        interval_start=0.01,
        interval_step=0.01,
        interval_max=1,
    )
    assert result == "done"
    assert [e for e, _ in errors] == [exc, exc, exc]
    assert [i for _, i in errors] == pytest.approx([0.01, 0.02, 0.03])
    assert sleeps == pytest.approx([0.01, 0.02, 0.03])


def test_retry_over_time_gives_up_after_max_retries(sleeps: list[float]) -> None:
    exc = OSError("refused")
    fun = Flaky(100, exc)
    errors: list[float] = []
    with pytest.raises(OSError) as excinfo:
        retry_over_time(
            fun,
            OSError,
            errback=lambda e, i: errors.append(i),
            max_retries=3,
            interval_start=0.01,
            interval_step=0.01,
        )
    assert excinfo.value is exc
    assert errors == pytest.approx([0.01, 0.02, 0.03])
    assert len(fun.calls) == 4  # the first try and three retries


def test_retry_over_time_max_retries_zero_retries_for_ever(sleeps: list[float]) -> None:
    # compat: carrot tested ``if max_retries and ...``, and Celery 1.x documented
    # BROKER_CONNECTION_MAX_RETRIES = 0 as "retry forever".
    fun = Flaky(7, OSError("x"))
    assert retry_over_time(fun, OSError, max_retries=0) == "done"
    assert len(fun.calls) == 8
    assert len(sleeps) == 7


def test_retry_over_time_caps_the_interval(sleeps: list[float]) -> None:
    fun = Flaky(5, OSError("x"))
    retry_over_time(fun, OSError, interval_start=2, interval_step=2, interval_max=5)
    assert sleeps == [2, 4, 5, 5, 5]


def test_retry_over_time_does_not_catch_other_errors(sleeps: list[float]) -> None:
    fun = Flaky(1, KeyError("nope"))
    with pytest.raises(KeyError):
        retry_over_time(fun, OSError, max_retries=5)
    assert len(fun.calls) == 1
    assert sleeps == []


def test_retry_over_time_accepts_a_tuple_of_errors(sleeps: list[float]) -> None:
    fun = Flaky(1, ValueError("x"))
    assert retry_over_time(fun, (OSError, ValueError)) == "done"
    assert len(sleeps) == 1


def test_retry_over_time_default_arguments_are_not_mutated(sleeps: list[float]) -> None:
    defaults = inspect.signature(retry_over_time).parameters
    retry_over_time(Flaky(1, OSError("x")), OSError)
    assert defaults["args"].default == []
    assert defaults["kwargs"].default == {}
