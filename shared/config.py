"""Helpers the services' Settings classes share."""

from __future__ import annotations

from typing import Any

from shared.media_host import AddressPolicy


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


def empty_is_unset(value: Any) -> Any:
    """`VAR=` (what Compose passes for an unset `${VAR:-}`) means not set."""
    return None if value == "" else value


def networks(value: Any) -> list[str]:
    """CIDRs, `a,b` or a list (`10.0.0.0/8,::1`), as normalised network strings."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    try:
        return AddressPolicy.parse(str(item) for item in items).networks
    except ValueError as exc:
        raise ValueError(f"not a CIDR network list ({exc}), e.g. 10.0.0.0/8,::1") from None
