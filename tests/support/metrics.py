"""Reading the services' Prometheus metrics in tests."""

from __future__ import annotations

import re

import httpx

from shared import fleet


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of `name{labels}` in a Prometheus text exposition (0 when absent)."""
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def scrape(base_url: str, fleet_secret: str, timeout: float = 5.0) -> str:
    """A chunk worker's or the model server's `/metrics` (internal routes: they want the fleet
    credential, e.g. `LocalStack.fleet_secret`)."""
    response = httpx.get(
        f"{base_url}/metrics", headers=fleet.headers(fleet_secret), timeout=timeout
    )
    response.raise_for_status()
    return response.text
