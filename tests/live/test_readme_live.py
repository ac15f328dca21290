"""Every Python code block of README.rst runs against RabbitMQ, as a new user would run it.

The blocks are read from README.rst itself. Each queue and exchange name a
block gives (``queue="feed"``, ``exchange="feed"``) is made unique for the run,
so parallel runs on one broker do not share them, and they are deleted after.
"""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from pathlib import Path

import amqp
import pytest

README = Path(__file__).resolve().parents[2] / "README.rst"

_BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", re.M)
_NAME = re.compile(r"\b(queue|exchange)=\"([^\"]+)\"")


def python_blocks() -> list[str]:
    """The source of each ``.. code-block:: python`` of README.rst, dedented."""
    text = README.read_text()
    blocks = []
    for match in _BLOCK.finditer(text):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[4:] for line in lines).strip() + "\n")
    return blocks


def _with_unique_names(source: str) -> tuple[str, dict[str, set[str]]]:
    """``source`` with every queue/exchange literal made unique, and those names."""
    suffix = uuid.uuid4().hex[:12]
    renamed: dict[str, str] = {}
    declared: dict[str, set[str]] = {"queue": set(), "exchange": set()}
    for kind, name in _NAME.findall(source):
        renamed.setdefault(name, f"{name}.readme.{suffix}")
        declared[kind].add(renamed[name])
    for name, unique in renamed.items():
        source = re.sub(rf"(\b(?:queue|exchange)=)\"{re.escape(name)}\"", rf'\1"{unique}"', source)
    return source, declared


def _delete(declared: dict[str, set[str]]) -> None:
    connection = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    try:
        for kind, names in declared.items():
            for name in names:
                channel = connection.channel()
                try:
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
    finally:
        connection.close()


def test_readme_has_python_blocks() -> None:
    blocks = python_blocks()
    assert blocks, "no '.. code-block:: python' in README.rst"
    assert "BrokerConnection" in blocks[0]


def test_renaming_keeps_the_code_and_finds_every_name() -> None:
    source, declared = _with_unique_names('Consumer(c, queue="feed", exchange="feed")\n')
    (queue,) = declared["queue"]
    assert declared["exchange"] == {queue}
    assert source == f'Consumer(c, queue="{queue}", exchange="{queue}")\n'


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs_on_rabbitmq(index: int) -> None:
    source, declared = _with_unique_names(python_blocks()[index])
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, f"README.rst block {index + 1}", "exec"), {"__name__": "readme"})
    finally:
        _delete(declared)
    if index == 0:
        # the first example's round trip: its callback printed the message
        assert out.getvalue() == ("Got feed import message for: http://cnn.com/rss/edition.rss\n")
