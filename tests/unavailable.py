"""What a live test does when the service it needs is not there: skip, or fail under CI.

``CARROT_REQUIRE_BROKER=1`` (set by ``.ci/run``) turns every such skip into
a failure, so CI cannot pass by testing nothing.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_BROKER = os.environ.get("CARROT_REQUIRE_BROKER") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``; fail it instead under ``CARROT_REQUIRE_BROKER=1``."""
    if REQUIRE_BROKER:
        pytest.fail(f"{reason} and CARROT_REQUIRE_BROKER=1", pytrace=False)
    pytest.skip(reason)
