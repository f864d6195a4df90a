"""The test tree keeps the shape tests/README.md gives it."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def test_no_test_module_imports_another() -> None:
    """Helpers shared by tests live in tests/support: a test module imported by another runs
    its imports and fixtures twice and ties two layers together."""
    importing = [
        f"{path.relative_to(TESTS)}: {line.strip()}"
        for path in sorted(TESTS.rglob("test_*.py"))
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from|import) tests\.(unit|integration|e2e|browser)\b", line)
    ]
    assert importing == []
