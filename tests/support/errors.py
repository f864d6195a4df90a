"""Checking the one error body every service answers with (shared/errors.py)."""

from __future__ import annotations

import httpx


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    """`response` is the error `code` with `status`, and its message says each of `words`."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error
