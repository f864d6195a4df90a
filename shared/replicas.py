"""Where a service's requests go: every replica behind its base URLs, least busy first.

Docker Compose and Kubernetes headless services put all replicas of a scaled service behind one
DNS name. A pooled HTTP client that connects to "the" name keeps reusing the first address's
connections, so extra replicas sit idle. The pool therefore resolves each plain-HTTP name to all
of its addresses and treats each as a replica, re-resolving periodically so replicas that scale
up join and ones that go away leave. An https URL, or a name with a single address, is kept as
it is (certificates and Host headers stay valid).

Each request picks the replica with the fewest requests in flight (random among ties). A replica
whose connection fails, or whose `/readyz` probe fails, sits out a cool-down and rejoins when a
probe succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_all(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in a stable order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass
class Replica:
    url: str
    in_flight: int = 0
    failed_until: float = 0.0
    served: int = 0

    def healthy(self, now: float) -> bool:
        return self.failed_until <= now


def _is_literal(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_host(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


class ReplicaPool:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        cooldown_sec: float = 5.0,
        health_path: str = "/readyz",
        resolver: Resolver = resolve_all,
    ) -> None:
        if not urls:
            raise ValueError("a replica pool needs at least one URL")
        self.urls = [url.rstrip("/") for url in urls]
        self.cooldown_sec = cooldown_sec
        self.health_path = health_path
        self._resolver = resolver
        self._replicas = {url: Replica(url) for url in self.urls}
        self.ready: int | None = None
        """Replicas that answered their last readiness probe (None: not probed yet)."""
        self._expanded: dict[str, list[str]] = {url: [url] for url in self.urls}

    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    def pick(self) -> Replica:
        now = time.monotonic()
        candidates = self.replicas
        healthy = [r for r in candidates if r.healthy(now)] or candidates
        fewest = min(r.in_flight for r in healthy)
        return random.choice([r for r in healthy if r.in_flight == fewest])

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Replica]:
        replica = self.pick()
        replica.in_flight += 1
        replica.served += 1
        try:
            yield replica
        finally:
            replica.in_flight -= 1

    def mark_failed(self, replica: Replica) -> None:
        replica.failed_until = time.monotonic() + self.cooldown_sec

    def mark_ok(self, replica: Replica) -> None:
        replica.failed_until = 0.0

    async def resolve(self) -> None:
        """Expand names to all their addresses; keep the last answer if DNS fails."""
        for url in self.urls:
            parts = urlsplit(url)
            host = parts.hostname or ""
            if parts.scheme != "http" or _is_literal(host):
                continue
            try:
                addresses = await self._resolver(host, parts.port or 80)
            except OSError as exc:
                logger.warning("could not resolve %s (%s); keeping %s", host, exc, url)
                continue
            self._expanded[url] = (
                [_with_host(url, a) for a in addresses] if len(addresses) > 1 else [url]
            )
        wanted = [concrete for urls in self._expanded.values() for concrete in urls]
        for concrete in wanted:
            self._replicas.setdefault(concrete, Replica(concrete))
        for gone in set(self._replicas) - set(wanted):
            del self._replicas[gone]  # a lease in progress keeps its own reference

    async def probe(
        self, http: httpx.AsyncClient, timeout_sec: float = 5.0, *, mark: bool = True
    ) -> None:
        """Ask each replica's readiness endpoint; count the ready ones (`ready`) and, with
        `mark`, eject the others for a cool-down and take the ready ones back.

        A probe that merely times out says nothing: a busy replica on a loaded machine answers
        late but still works, and ejecting it would pile its share onto the others.
        """

        async def check(replica: Replica) -> bool:
            try:
                response = await http.get(replica.url + self.health_path, timeout=timeout_sec)
                ok = response.status_code == 200
            except httpx.TimeoutException:
                return True  # busy, not gone
            except httpx.HTTPError:
                ok = False
            if mark:
                (self.mark_ok if ok else self.mark_failed)(replica)
            return ok

        answers = await asyncio.gather(*(check(replica) for replica in self.replicas))
        self.ready = sum(answers)

    def readiness(self, what: str, setting: str) -> str | None:
        """Why the service that calls these replicas can't take work (None: it can)."""
        if self.ready is None:
            return f"checking the {what}s"
        if self.ready == 0:
            return f"no {what} is ready (check {setting})"
        return None

    async def maintain(self, http: httpx.AsyncClient, interval_sec: float) -> None:
        """Re-resolve and probe forever (run as a task owned by the app's lifespan).

        Names are resolved and probed at once, but that first probe only counts the ready
        replicas (for this service's own readiness): replicas start out trusted (peers that
        start alongside this service would otherwise fail a probe at t=0 and sit out a job),
        and a real request that fails marks its replica anyway. While any
        replica is out, or none is ready yet (peers still starting), probes come every second,
        so a replica rejoins and this service becomes ready within a second of its peers.
        """
        first = True
        while True:
            with contextlib.suppress(Exception):
                await self.resolve()
                await self.probe(http, mark=not first)  # the first only counts, for readiness
            first = False
            now = time.monotonic()
            any_out = any(not replica.healthy(now) for replica in self.replicas)
            waiting = not self.ready  # none ready (or not probed): peers are still starting
            await asyncio.sleep(min(interval_sec, 1.0) if any_out or waiting else interval_sec)
