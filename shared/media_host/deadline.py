"""One time limit over a whole media check: every connection, request and read of it."""

from __future__ import annotations

import time

from shared.errors import UpstreamTimeoutError


class Deadline:
    """One overall time limit for a whole check (every connection, request and read of it):
    a read waits at most the time left, and once it has passed the next one fails. Shared
    with a blocking thread, which `expire()` stops at its next read (its caller left)."""

    def __init__(self, seconds: float, setting: str) -> None:
        self.seconds = seconds
        self.setting = setting
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    @property
    def passed(self) -> bool:
        return self.left() <= 0

    def expire(self) -> None:
        self.at = min(self.at, time.monotonic())

    def error(self) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"checking media_url took longer than {self.seconds:g} s ({self.setting}): the "
            "media host sends too slowly; serve the file from a host that answers promptly",
            param="media_url",
        )

    def check(self) -> None:
        if self.passed:
            raise self.error()

    def cap(self, timeout: float | None) -> float:
        """`timeout` (None: none), but never past the deadline (the error once it passed)."""
        self.check()
        left = self.left()
        return left if timeout is None else min(timeout, left)
