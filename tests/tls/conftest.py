"""The TLS node (``tlsnode.py``), started once for the session when a ``tls`` test runs.

It is always stopped at the end of the session (failure and Ctrl-C too) and
its directory removed. When it cannot start, the tests skip with the reason,
or fail under ``CARROT_REQUIRE_BROKER=1``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tlsnode import TLSNode, TLSNodeError, tls_node, unavailable_reason
from unavailable import unavailable


@pytest.fixture(scope="session")
def tls() -> Iterator[TLSNode]:
    """The running TLS node."""
    reason = unavailable_reason()
    if reason:
        unavailable(f"the TLS test node cannot run: {reason}")
    try:
        context = tls_node()
        node = context.__enter__()
    except TLSNodeError as exc:
        unavailable(f"the TLS test node did not start: {exc}")
    try:
        yield node
    finally:
        context.__exit__(None, None, None)
