"""Waiting for a state rather than for a fixed time: a loaded CI machine makes any fixed sleep
too short now and then, while a condition polled with a deadline holds on any machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], object], what: str, timeout_sec: float = 5.0) -> None:
    """Return once `condition()` is true; fail naming `what` after `timeout_sec`."""
    deadline = time.monotonic() + timeout_sec
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_sec} s"
        await asyncio.sleep(0.01)
