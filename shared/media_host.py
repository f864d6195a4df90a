"""Talking to media hosts: the one module that does, for every fetch of every service.

    AddressPolicy      which addresses a client-supplied URL may reach (SSRF guard)
    media_client()     an httpx client whose every connection (redirects included) goes through
                       the guard: the host is resolved once, each address checked, and the
                       connection made to the checked address (no second lookup, so DNS
                       rebinding can't slip past); TLS verified against $SSL_CERT_FILE or
                       certifi's roots; no environment proxies
    MediaFile          a seekable file over range requests, for PyAV (which then never opens a
                       URL itself; FFmpeg reads through the chunk worker's range proxy)
    Deadline           one time limit for a whole check: every read of a `MediaFile` and of
                       its client's connections waits at most the time left
    transfer_attempts(), async_transfer_attempts()
                       the retry rule for a transfer the host cut (reset, closed early,
                       refused): tried again after 0, 1 and 3 s; the chunk worker's range
                       proxy resumes its runs on the same schedule
    status_error(), transport_error()
                       a host's answer or failure as the service's error, with one wording
                       (a host that went silent past the timeout is a 504)

The guard refuses every address that is not public (loopback, private, carrier-grade NAT,
link-local, documentation, benchmarking, multicast, reserved ...; an IPv6 address that carries
an IPv4 one by what that leads to) unless the policy's networks allow it; only http and https
are fetched.
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import certifi
import httpcore
import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type

from shared.errors import (
    InvalidRequestError,
    MediaHostError,
    MediaUnavailableError,
    UpstreamTimeoutError,
    WhisperfleetError,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_REDIRECTS = 5
SETTING = "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS"


class MediaAddressRefusedError(InvalidRequestError):
    """A media URL (or a redirect) leads to an address the server may not reach."""

    code = "media_address_refused"


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[IPNetwork, ...] = ()
    """Networks reachable even though they are not public."""
    setting: str = SETTING
    """The setting that lists them, named in a refusal (each service has its own)."""

    @classmethod
    def parse(cls, networks: Iterable[str], setting: str = SETTING) -> AddressPolicy:
        """From CIDRs such as '127.0.0.0/8' or '::1' (ValueError on anything else)."""
        return cls(
            tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()),
            setting,
        )

    @classmethod
    def anywhere(cls) -> AddressPolicy:
        """For URLs a service makes from its own settings, never a client's: uploads, read
        from an orchestrator with the fleet credential."""
        return cls((ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))

    @property
    def networks(self) -> list[str]:
        return [str(network) for network in self.allowed]

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be reached (None: it may): every address that is not public,
        named by its kind, unless an allowed network holds it. An IPv6 address that carries an
        IPv4 one (mapped, NAT64, 6to4, Teredo) is judged by the IPv4 address it leads to."""
        if any(address in network for network in self.allowed):
            return None
        embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else []
        for kind, inner in embedded:
            reason = self.refusal(inner)
            if reason is not None:
                return f"{kind} {inner}: {reason}"
        if embedded:
            return None
        for network, kind in _NOT_PUBLIC:
            if address in network:
                return kind
        if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
            return "reserved"
        if not address.is_global:
            return "not global"
        return None

    def check(self, host: str, addresses: Sequence[str]) -> str:
        """The first address of `host` the policy allows; MediaAddressRefusedError if none."""
        reasons = []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = self.refusal(address)
            if reason is None:
                return text
            reasons.append(f"{address} ({reason})")
        raise MediaAddressRefusedError(
            f"{host} resolves to {', '.join(reasons) or 'no address'}: the server fetches "
            f"media only from public addresses (not loopback, private, carrier-grade NAT, "
            f"link-local, documentation or other special ranges) unless {self.setting} allows "
            "them",
            param="media_url",
        )


def _networks(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in pairs)


_NOT_PUBLIC = _networks(
    # IPv4: IANA's special-purpose registry (the kinds people know by name)
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    # IPv6 (mapped, NAT64, 6to4 and Teredo are judged by their IPv4 address first)
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("::ffff:0:0:0/96", "IPv4-translated"),
    ("64:ff9b:1::/48", "NAT64 local-use"),
    ("100::/64", "discard-only"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignments"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "SRv6 segment identifiers"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
"""Named refusals. Python's own `is_global` is the backstop, but its table depends on the
Python release (3.11.7 calls 64:ff9b:1::/48, fec0::/10 and 6to4 of 10.0.0.1 global), so the
ranges are listed here."""
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
"""The only IPv6 space allocated for public unicast; the rest is reserved."""
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address leads to (kind, address): empty for most."""
    if address.ipv4_mapped is not None:
        return [("IPv4-mapped", address.ipv4_mapped)]
    if address in _NAT64:
        return [("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))]
    if address in _SIX_TO_FOUR and address.sixtofour is not None:
        return [("6to4", address.sixtofour)]
    if address in _TEREDO and address.teredo is not None:
        server, client = address.teredo
        return [("Teredo client", client), ("Teredo server", server)]
    return []


def _host_only(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class _GuardedAsyncBackend(httpcore.AnyIOBackend):
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
        name = _host_only(host)
        try:
            infos = await anyio.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {name}: {exc}") from exc
        address = self.policy.check(name, [str(info[4][0]) for info in infos])
        return await super().connect_tcp(address, port, timeout, local_address, socket_options)


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


class _GuardedSyncBackend(httpcore.SyncBackend):
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
        name = _host_only(host)
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {name}: {exc}") from exc
        address = self.policy.check(name, [str(info[4][0]) for info in infos])
        if self.deadline is None:
            return super().connect_tcp(address, port, timeout, local_address, socket_options)
        timeout = self.deadline.cap(timeout)
        stream = super().connect_tcp(address, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self.deadline)


def tls_context() -> ssl.SSLContext:
    """Verified TLS: $SSL_CERT_FILE when set (a private CA), else certifi's roots."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def media_client(
    policy: AddressPolicy, timeout: httpx.Timeout | float, max_connections: int = 100
) -> httpx.AsyncClient:
    """An async client for media hosts under `policy` (see the module docstring)."""
    context = tls_context()
    transport = httpx.AsyncHTTPTransport(verify=context)
    # httpx has no parameter for the network backend; its pool is rebuilt with ours.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=max_connections,
        network_backend=_GuardedAsyncBackend(policy),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )


def sync_media_client(
    policy: AddressPolicy, timeout: float, deadline: Deadline | None = None
) -> httpx.Client:
    """The same for blocking code (PyAV's reads, in a thread); with a `deadline`, no
    connection, read or write waits past it."""
    context = tls_context()
    transport = httpx.HTTPTransport(verify=context)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context, network_backend=_GuardedSyncBackend(policy, deadline)
    )
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )


RETRY_DELAYS_SEC = (0.0, 1.0, 3.0)
"""Waits before each new try of a transfer the host cut: FFmpeg's reconnect schedule."""
DROPPED = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
"""Failures another try may not meet. A timeout is not one of them: a host that sent nothing
for the whole timeout is given up on (504), or a slow host would hold a job for minutes."""


def _retry_delay(state: RetryCallState) -> float:
    return RETRY_DELAYS_SEC[min(state.attempt_number, len(RETRY_DELAYS_SEC)) - 1]


def transfer_attempts() -> Retrying:
    """`for attempt in transfer_attempts(): with attempt: ...`: one transfer, retried while
    the host drops it (the last failure is re-raised as it was)."""
    return Retrying(
        retry=retry_if_exception_type(DROPPED),
        wait=_retry_delay,
        stop=lambda state: state.attempt_number > len(RETRY_DELAYS_SEC),
        reraise=True,
    )


def async_transfer_attempts() -> AsyncRetrying:
    """The same for async code."""
    return AsyncRetrying(
        retry=retry_if_exception_type(DROPPED),
        wait=_retry_delay,
        stop=lambda state: state.attempt_number > len(RETRY_DELAYS_SEC),
        reraise=True,
    )


def status_error(status: int) -> WhisperfleetError:
    """The error for a media host's non-2xx answer."""
    if 400 <= status < 500:
        return MediaUnavailableError(
            f"media_url answered HTTP {status}; check that the URL is correct and readable",
            param="media_url",
        )
    return MediaHostError(f"the media host answered HTTP {status}")


def transport_error(exc: Exception) -> WhisperfleetError:
    """The error for a failed connection or transfer (a refused address passes through)."""
    if isinstance(exc, WhisperfleetError):
        return exc
    if isinstance(exc, httpx.TooManyRedirects):
        return MediaUnavailableError(
            f"media_url redirects more than {MAX_REDIRECTS} times", param="media_url"
        )
    if isinstance(exc, httpx.UnsupportedProtocol):
        return MediaUnavailableError(
            "media_url (or a redirect) is not an http:// or https:// URL", param="media_url"
        )
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(
            f"the media host sent nothing for {_timeout_of(exc)} ({type(exc).__name__}); "
            "check that media_url is served promptly",
            param="media_url",
        )
    return MediaHostError(
        f"could not read from the media host ({type(exc).__name__}: {exc or 'failed'})"
    )


def _timeout_of(exc: httpx.TimeoutException) -> str:
    """'30 s': the limit the failed request ran under (httpx keeps it on the request)."""
    kind = {httpx.ConnectTimeout: "connect", httpx.WriteTimeout: "write"}.get(type(exc), "read")
    try:
        limit = exc.request.extensions.get("timeout", {}).get(kind)
    except RuntimeError:  # raised without a request
        limit = None
    return f"{limit:g} s" if isinstance(limit, int | float) else "too long"


class MediaFile(io.RawIOBase):
    """A media URL as a seekable, read-only file (range requests, read ahead in blocks), so
    PyAV can probe it without opening the URL itself. With a `deadline` (give the client the
    same one), every response is streamed and checked against it as each piece arrives, so a
    host that drips a byte at a time can't hold the reader past it."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        block: int = 256 * 1024,
        deadline: Deadline | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.url = url
        self.block = block
        self.deadline = deadline
        self.position = 0
        self.size: int | None = None
        self._buffer = b""
        self._buffer_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.position = offset
        elif whence == io.SEEK_CUR:
            self.position += offset
        else:
            self.position = (self._size() or 0) + offset
        return self.position

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        wanted = len(view)
        if wanted == 0:
            return 0
        start = self.position - self._buffer_start
        if not 0 <= start < len(self._buffer) or start + wanted > len(self._buffer):
            self._fill(self.position, max(wanted, self.block))
            start = 0
        data = self._buffer[start : start + wanted]
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _fill(self, offset: int, count: int) -> None:
        if self.size is not None and offset >= self.size:
            self._buffer, self._buffer_start = b"", offset
            return
        headers = {"Range": f"bytes={offset}-{offset + count - 1}", "Accept-Encoding": "identity"}
        try:
            for attempt in transfer_attempts():
                with attempt:
                    status, content_range, body = self._get(headers, count)
        except httpx.HTTPError as exc:
            if self.deadline is not None and self.deadline.passed:
                raise self.deadline.error() from exc
            raise transport_error(exc) from exc
        if status == 416:
            self._buffer, self._buffer_start = b"", offset
            return
        if status != 206:
            raise status_error(status)
        total = content_range.rpartition("/")[2]
        if total.isdigit():
            self.size = int(total)
        self._buffer, self._buffer_start = body, offset

    def _get(self, headers: dict[str, str], count: int) -> tuple[int, str, bytes]:
        """(status, Content-Range, body) of one request for `count` bytes, the body checked
        against the deadline piece by piece and cut at `count`: a host that sends more than
        the range it was asked for (an endless body) can't fill the orchestrator's memory."""
        if self.deadline is not None:
            self.deadline.check()
        with self.client.stream("GET", self.url, headers=headers) as response:
            if response.status_code != 206:
                return response.status_code, "", b""
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece[: count - len(body)]
                if len(body) >= count:
                    break  # the rest, if the host sends more, is never read
                if self.deadline is not None:
                    self.deadline.check()
            return 206, response.headers.get("content-range", ""), bytes(body)

    def _size(self) -> int | None:
        if self.size is None:
            self._fill(0, 1)
        return self.size
