"""A missing tool skips a developer's run and fails CI's (tests/support/required.py)."""

from __future__ import annotations

import pytest

from tests.support import required


def test_a_missing_tool_skips_saying_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(required.POSTGRES, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        required.unavailable(required.POSTGRES, "PostgreSQL", "apt-get install postgresql")
    reason = str(skipped.value)
    assert required.MARK in reason  # what the summary at the end counts
    assert "apt-get install postgresql" in reason and required.POSTGRES in reason


@pytest.mark.parametrize("variable", [required.CHROMIUM, required.POSTGRES])
def test_where_ci_requires_it_a_missing_tool_fails(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(pytest.fail.Exception, match=f"required \\({variable}=1\\)"):
        required.unavailable(variable, "a tool", "apt-get install it")
