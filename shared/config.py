"""Helpers the services' Settings classes share."""

from __future__ import annotations

from typing import Any


def split_list(value: Any) -> Any:
    """Accept `a,b,c` (what an environment variable holds) as well as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def split_urls(value: Any) -> Any:
    """Accept `a,b,c` (what an environment variable holds) as well as a list."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        if not value:
            raise ValueError("give at least one base URL")
        for url in value:
            if not str(url).startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) base URL")
        return [str(url).rstrip("/") for url in value]
    return value
