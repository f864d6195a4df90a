"""What some tests need from the machine (Chromium, PostgreSQL): a developer's run skips
without it and says so at the end; CI fails instead, so a missing tool never passes as green.

.ci/run exports WHISPERFLEET_REQUIRE_CHROMIUM=1 and WHISPERFLEET_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

CHROMIUM = "WHISPERFLEET_REQUIRE_CHROMIUM"
POSTGRES = "WHISPERFLEET_REQUIRE_POSTGRES"
MARK = "not installed here"
"""In every such skip's reason: how the summary at the end finds them."""


def unavailable(variable: str, what: str, install: str) -> NoReturn:
    """Fail where `variable` is 1 (CI), skip otherwise; either way saying how to install it."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{what} is required ({variable}=1) but missing: {install}", pytrace=False)
    pytest.skip(f"{what} {MARK} ({install}; CI sets {variable}=1 and fails instead)")
