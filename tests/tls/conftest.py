"""The TLS node (``tlsnode.py``), started once for the session when a ``tls`` test runs.

It is always stopped at the end of the session (failure and Ctrl-C too) and
its directory removed. When it cannot start, the tests skip with the reason,
or fail under ``CARROT_REQUIRE_BROKER=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tlsnode import TLSNode, TLSNodeError, tls_node, unavailable_reason

REQUIRE_BROKER = os.environ.get("CARROT_REQUIRE_BROKER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE_BROKER:
        pytest.fail(f"{reason} and CARROT_REQUIRE_BROKER=1", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tls() -> Iterator[TLSNode]:
    """The running TLS node."""
    reason = unavailable_reason()
    if reason:
        _unavailable(f"the TLS test node cannot run: {reason}")
    try:
        context = tls_node()
        node = context.__enter__()
    except TLSNodeError as exc:
        _unavailable(f"the TLS test node did not start: {exc}")
    try:
        yield node
    finally:
        context.__exit__(None, None, None)
