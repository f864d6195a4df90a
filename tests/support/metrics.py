"""Reading the services' Prometheus metrics in tests."""

from __future__ import annotations

import re


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of `name{labels}` in a Prometheus text exposition (0 when absent)."""
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
