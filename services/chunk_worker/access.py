"""A worker's ways to media hosts: one guarded client and range proxy per address policy.

The orchestrator says, with every chunk and silence request, which networks its media may be
on (`ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS`; anywhere for its own uploads). Each policy gets its
own `shared.media_host` client and its own `RangeProxy`, so a page cached under one policy is
never served under another; there are only ever a few (one per orchestrator setting, plus
uploads).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import httpx

from services.chunk_worker.range_proxy import RangeProxy
from shared.media_host import AddressPolicy, media_client


class MediaAccess:
    def __init__(
        self, read_timeout_sec: float, keep_bytes: int, reconnect_delay_max_sec: int = 4
    ) -> None:
        self.read_timeout_sec = read_timeout_sec
        self.keep_bytes = keep_bytes
        self.reconnect_delay_max_sec = reconnect_delay_max_sec
        self._proxies: dict[tuple[str, ...], RangeProxy] = {}
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    async def proxy(self, networks: Sequence[str]) -> RangeProxy:
        """The range proxy (and client) for media under this policy, started on first use."""
        key = tuple(sorted(networks))
        if key not in self._proxies:
            async with self._lock:
                if key not in self._proxies:
                    self._proxies[key] = await self._start(AddressPolicy.parse(key))
        return self._proxies[key]

    async def _start(self, policy: AddressPolicy) -> RangeProxy:
        timeout = httpx.Timeout(self.read_timeout_sec, connect=min(10.0, self.read_timeout_sec))
        http = await self._stack.enter_async_context(media_client(policy, timeout))
        proxy = RangeProxy(
            http,
            keep_bytes=self.keep_bytes,
            reconnect_delay_max_sec=self.reconnect_delay_max_sec,
        )
        return await self._stack.enter_async_context(proxy)

    @property
    def proxies(self) -> list[RangeProxy]:
        return list(self._proxies.values())

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._proxies.clear()
