"""Guarded connections: the httpx clients through which every byte from a media host comes.

Every connection (redirects included) goes through the address guard: the host is resolved
once, each address checked (`AddressPolicy`), and the connection made to the checked address
(no second lookup, so DNS rebinding can't slip past); TLS verified against $SSL_CERT_FILE or
certifi's roots; no environment proxies. With a `Deadline`, no connection, read or write of the
blocking client waits past it.

The guard sits in httpcore's network backend, which every connection of the pool is opened
by; the pool is ours and httpx reaches it through its public transport interface
(`transport.py`), no private attribute of either library touched.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import anyio
import certifi
import httpcore
import httpx

from shared.media_host.addresses import AddressPolicy
from shared.media_host.deadline import Deadline
from shared.media_host.transport import AsyncPoolTransport, PoolTransport

MAX_REDIRECTS = 5


def _checked_address(policy: AddressPolicy, host: str, infos: Iterable[Any]) -> str:
    """The address of `host` to connect to: the first of `getaddrinfo`'s the policy allows."""
    return policy.check(_host_only(host), [str(info[4][0]) for info in infos])


def _unresolved(host: str, exc: OSError) -> httpcore.ConnectError:
    return httpcore.ConnectError(f"could not resolve {_host_only(host)}: {exc}")


def _host_only(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


async def check_destination(policy: AddressPolicy, url: str, param: str, doing: str) -> None:
    """Refuse now (MediaAddressRefusedError naming `param`) a URL whose host resolves only to
    addresses `policy` refuses, rather than when it is used; a host that doesn't resolve now
    passes (its connection will say so, and may be retried). Its connection checks again."""
    parsed = httpx.URL(url)
    try:
        infos = await anyio.getaddrinfo(
            parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )  # fmt: skip
    except OSError:
        return
    policy.check(parsed.host, [str(info[4][0]) for info in infos], param=param, doing=doing)


class _GuardedAsyncBackend(httpcore.AnyIOBackend):
    """Resolves once, checks, connects to the checked address (see the module docstring)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await anyio.getaddrinfo(_host_only(host), port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise _unresolved(host, exc) from exc
        address = _checked_address(self.policy, host, infos)
        return await super().connect_tcp(address, port, timeout, local_address, socket_options)


class _GuardedSyncBackend(httpcore.SyncBackend):
    """The same for blocking code; with a `deadline`, every wait of the connection is capped."""

    def __init__(self, policy: AddressPolicy, deadline: Deadline | None = None) -> None:
        self.policy = policy
        self.deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(_host_only(host), port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise _unresolved(host, exc) from exc
        address = _checked_address(self.policy, host, infos)
        if self.deadline is None:
            return super().connect_tcp(address, port, timeout, local_address, socket_options)
        timeout = self.deadline.cap(timeout)
        stream = super().connect_tcp(address, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self.deadline)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self.stream = stream
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.cap(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.cap(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self.stream.start_tls(ssl_context, server_hostname, self.deadline.cap(timeout))
        return _DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


def tls_context() -> ssl.SSLContext:
    """Verified TLS: $SSL_CERT_FILE when set (a private CA), else certifi's roots."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def _client_options(timeout: httpx.Timeout | float) -> dict[str, Any]:
    """What both clients share: redirects followed (each hop a new, guarded connection) up to
    `MAX_REDIRECTS`, and nothing from the environment (no proxies)."""
    return {
        "timeout": timeout,
        "follow_redirects": True,
        "max_redirects": MAX_REDIRECTS,
        "trust_env": False,
    }


def media_client(
    policy: AddressPolicy, timeout: httpx.Timeout | float, max_connections: int = 100
) -> httpx.AsyncClient:
    """An async client for media hosts under `policy` (see the module docstring)."""
    pool = httpcore.AsyncConnectionPool(
        ssl_context=tls_context(),
        max_connections=max_connections,
        network_backend=_GuardedAsyncBackend(policy),
    )
    return httpx.AsyncClient(transport=AsyncPoolTransport(pool), **_client_options(timeout))


def sync_media_client(
    policy: AddressPolicy, timeout: float, deadline: Deadline | None = None
) -> httpx.Client:
    """The same for blocking code (PyAV's reads, in a thread); with a `deadline`, no
    connection, read or write waits past it."""
    pool = httpcore.ConnectionPool(
        ssl_context=tls_context(), network_backend=_GuardedSyncBackend(policy, deadline)
    )
    return httpx.Client(transport=PoolTransport(pool), **_client_options(timeout))
