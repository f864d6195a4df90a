"""Replica discovery and choice: every address behind a name, least busy first, failures skipped."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx

from shared.replicas import ReplicaPool, Resolver
from tests.support.waiting import until


def fake_dns(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


one_address_each = fake_dns({"a": ["127.0.0.2"], "b": ["127.0.0.3"], "model-server": ["127.0.0.4"]})
"""Names with one address each are kept as they are: no real DNS lookup (slow on a busy CI)."""


async def test_a_scaled_service_name_expands_to_every_replica() -> None:
    dns = {"chunk_worker": ["10.0.0.2", "10.0.0.3"]}
    pool = ReplicaPool(["http://chunk_worker:8001"], resolver=fake_dns(dns))
    await pool.resolve()
    assert sorted(r.url for r in pool.replicas) == ["http://10.0.0.2:8001", "http://10.0.0.3:8001"]
    dns["chunk_worker"] = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]  # scaled up
    await pool.resolve()
    assert len(pool.replicas) == 3
    dns["chunk_worker"] = ["10.0.0.4"]  # scaled down to one: keep the name itself
    await pool.resolve()
    assert [r.url for r in pool.replicas] == ["http://chunk_worker:8001"]


async def test_dns_failure_keeps_the_last_known_replicas() -> None:
    dns = {"w": ["10.0.0.2", "10.0.0.3"]}
    pool = ReplicaPool(["http://w:8001"], resolver=fake_dns(dns))
    await pool.resolve()
    del dns["w"]
    await pool.resolve()
    assert len(pool.replicas) == 2


async def test_https_and_literal_addresses_are_never_rewritten() -> None:
    pool = ReplicaPool(
        ["https://api.example:443", "http://127.0.0.1:9", "http://localhost:9"],
        resolver=fake_dns({"api.example": ["1.1.1.1", "2.2.2.2"]}),
    )
    await pool.resolve()
    assert sorted(r.url for r in pool.replicas) == [
        "http://127.0.0.1:9",
        "http://localhost:9",
        "https://api.example:443",
    ]


async def test_requests_spread_evenly_across_replicas() -> None:
    pool = ReplicaPool(["http://a", "http://b", "http://c"])
    served: Counter[str] = Counter()

    async def request() -> None:
        async with pool.lease() as replica:
            served[replica.url] += 1
            await asyncio.sleep(0.01)

    await asyncio.gather(*(request() for _ in range(30)))
    assert served == Counter({"http://a": 10, "http://b": 10, "http://c": 10})


async def test_a_replica_failing_its_probe_is_skipped_until_it_recovers() -> None:
    ready = {"a": True, "b": False}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if ready[request.url.host] else 503)

    pool = ReplicaPool(["http://a", "http://b"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        await pool.probe(http)
        assert {pool.pick().url for _ in range(20)} == {"http://a"}
        ready["b"] = True
        await pool.probe(http)
        assert {pool.pick().url for _ in range(50)} == {"http://a", "http://b"}
    assert pool.readiness("peer", "PEER_URLS") is None


def test_readiness_says_why_until_a_replica_is_ready() -> None:
    pool = ReplicaPool(["http://a"])
    assert pool.readiness("chunk worker", "X_URLS") == "checking the chunk workers"
    pool.ready = 0
    assert pool.readiness("chunk worker", "X_URLS") == "no chunk worker is ready (check X_URLS)"


async def test_a_slow_probe_does_not_eject_a_busy_replica() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    pool = ReplicaPool(["http://a", "http://b"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        await pool.probe(http)
    now = 0.0
    assert all(replica.failed_until <= now for replica in pool.replicas)


async def test_replicas_start_trusted_and_a_failed_one_rejoins_once_its_probe_passes() -> None:
    ready = {"a": True, "b": False}
    probes: list[str] = []
    first_round = asyncio.Event()
    go_on = asyncio.Event()  # later rounds wait for the test to have looked at the first

    async def handle(request: httpx.Request) -> httpx.Response:
        probes.append(request.url.host)
        if len(probes) == 2:
            first_round.set()
        elif len(probes) > 2:
            await go_on.wait()
        return httpx.Response(200 if ready[request.url.host] else 503)

    pool = ReplicaPool(["http://a", "http://b"], resolver=one_address_each)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        task = asyncio.create_task(pool.maintain(http, interval_sec=0.05))
        await asyncio.wait_for(first_round.wait(), timeout=5)
        # The probe at start only counts (readiness): a peer still booting isn't ejected.
        assert sorted(probes) == ["a", "b"] and pool.ready == 1
        assert {pool.pick().url for _ in range(50)} == {"http://a", "http://b"}
        go_on.set()
        await until(lambda: {pool.pick().url for _ in range(20)} == {"http://a"}, "b ejected")
        ready["b"] = True
        await until(lambda: len({pool.pick().url for _ in range(50)}) == 2, "b taken back")
        task.cancel()


async def test_a_service_whose_peers_are_still_starting_is_ready_within_a_second_of_them() -> None:
    """Regression: with no peer ready at the first probe, the next came only after the whole
    refresh interval (10 s), so every stack took ~12 s to be ready instead of ~4 s."""
    up = False
    probed_at: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        probed_at.append(time.monotonic())
        return httpx.Response(200 if up else 503)

    pool = ReplicaPool(["http://model-server"], resolver=one_address_each)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        task = asyncio.create_task(pool.maintain(http, interval_sec=60))
        await until(lambda: pool.ready == 0, "the first probe")
        up = True
        await until(lambda: pool.ready == 1, "ready once the peer is", timeout_sec=10)
        task.cancel()
    # Probes a second apart while none is ready (a loaded machine may add a little), not 60 s.
    assert 0.9 <= probed_at[1] - probed_at[0] < 3.0, probed_at
