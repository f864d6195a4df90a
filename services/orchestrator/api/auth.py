"""Who may use the public API, and how much at once: API keys and per-key job slots.

With `ORCHESTRATOR_API_KEYS` (or `ORCHESTRATOR_API_KEYS_FILE`) set, every public endpoint wants
`Authorization: Bearer <key>`, as OpenAI's SDKs send it; the key is compared with every
configured key in constant time, before any byte of the request's body is read (the gate
middleware, gate.py, calls `Gate.identify`). Health checks stay open; `/internal/uploads/<id>`
takes the fleet credential instead (shared/fleet.py), never a key. `ORCHESTRATOR_MAX_JOBS_PER_KEY`
caps the jobs one key (or, without keys, everyone together) runs at once: beyond it, 429 with
Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from shared.errors import RateLimitedError, UnauthorizedError

ANONYMOUS = "anonymous"


def load_keys(keys: list[str], keys_file: Path | None) -> list[str]:
    """The configured keys: the setting's, plus one per non-empty line of the file."""
    found = [key.strip() for key in keys if key.strip()]
    if keys_file is not None:
        lines = keys_file.read_text().splitlines()
        found += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return found


class Gate:
    """Checks keys and counts each key's running jobs."""

    def __init__(self, keys: list[str], max_jobs_per_key: int) -> None:
        self._keys = [key.encode() for key in keys]
        self.max_jobs_per_key = max_jobs_per_key
        self._running: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def identify(self, authorization: str | None) -> str:
        """The caller's identity (a digest of its key), or 401."""
        if not self._keys:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError(
                "this server needs an API key: send 'Authorization: Bearer <key>'"
            )
        offered = token.strip().encode()
        # Compare with every key, always: the time taken says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(offered, key)
        if not matched:
            raise UnauthorizedError("the API key is not valid")
        return hashlib.sha256(offered).hexdigest()[:16]

    @contextlib.asynccontextmanager
    async def job_slot(self, caller: str) -> AsyncIterator[None]:
        """Hold one of the caller's job slots for the life of a job; 429 if none is free."""
        async with self._lock:
            running = self._running.get(caller, 0)
            if self.max_jobs_per_key and running >= self.max_jobs_per_key:
                raise RateLimitedError(
                    f"{running} jobs of this key are running, the most allowed at once "
                    "(ORCHESTRATOR_MAX_JOBS_PER_KEY); retry when one has finished",
                    retry_after_sec=10,
                )
            self._running[caller] = running + 1
        try:
            yield
        finally:
            self._running[caller] -= 1
            if not self._running[caller]:
                del self._running[caller]


def _gate(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


def caller(request: Request, gate: Annotated[Gate, Depends(_gate)]) -> str:
    """The dependency public routes declare: the caller's identity, or 401. The gate
    middleware (gate.py) has already identified the caller before the body was read; a route
    it does not front is identified here, by the same `Gate.identify`."""
    found: str | None = getattr(request.state, "caller", None)
    return found if found is not None else gate.identify(request.headers.get("authorization"))


Caller = Annotated[str, Depends(caller)]
GateDep = Annotated[Gate, Depends(_gate)]
