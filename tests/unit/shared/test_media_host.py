"""The media-host seam: the address guard, guarded connections and redirects, PyAV's file.

All traffic stays on this machine: refusals are tested with loopback addresses that the policy
does not allow, and a redirect from an allowed loopback host to a refused one.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.errors import MediaHostError, MediaUnavailableError
from shared.media_host import (
    AddressPolicy,
    MediaAddressRefusedError,
    MediaFile,
    media_client,
    sync_media_client,
    transport_error,
)
from tests.support.media_server import MediaServer

ONLY_127_0_0_1 = AddressPolicy.parse(["127.0.0.1/32"])


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("169.254.169.254", "link-local"),
        ("192.0.0.1", "IETF protocol assignments"),
        ("192.0.0.170", "IETF protocol assignments"),  # NAT64 discovery
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.1", "benchmarking"),
        ("192.88.99.1", "6to4 relay anycast"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("100::1", "discard-only"),
        ("5f00::1", "SRv6 segment identifiers"),
        ("2001:2::1", "IETF protocol assignments"),
        ("4000::1", "reserved"),  # outside 2000::/3, the only global unicast space
        ("::8.8.8.8", "IPv4-compatible"),
        ("::ffff:0:808:808", "IPv4-translated"),
        ("64:ff9b:1::808:808", "NAT64 local-use"),
        # an IPv6 address that leads to an IPv4 one is judged by where it leads
        ("::ffff:127.0.0.1", "IPv4-mapped 127.0.0.1: loopback"),
        ("::ffff:100.64.0.1", "IPv4-mapped 100.64.0.1: carrier-grade NAT"),
        ("64:ff9b::a9fe:a9fe", "NAT64 169.254.169.254: link-local"),
        ("64:ff9b::6440:1", "NAT64 100.64.0.1: carrier-grade NAT"),
        ("2002:a00:1::1", "6to4 10.0.0.1: private"),
        ("2002:c612:1::1", "6to4 198.18.0.1: benchmarking"),
        ("2001:0:5db8:d822:0:f227:f5ff:fffe", "Teredo client 10.0.0.1: private"),
        ("2001:0:c000:201:0:f227:f7f7:f7f7", "Teredo server 192.0.2.1: documentation"),
    ],
)
def test_every_address_that_is_not_public_is_refused_naming_its_kind(
    address: str, kind: str
) -> None:
    """Pure: no connection is made. Python's own `is_global` varies by release (3.11.7 calls
    fec0::/10, 64:ff9b:1::/48 and 6to4 of a private address global)."""
    policy = AddressPolicy(setting="EXAMPLE_ALLOWED_NETWORKS")
    assert policy.refusal(ipaddress.ip_address(address)) == kind
    with pytest.raises(MediaAddressRefusedError, match="unless EXAMPLE_ALLOWED_NETWORKS") as e:
        policy.check("media.example", [address])
    assert f"{ipaddress.ip_address(address)} ({kind})" in str(e.value)
    assert "only from public addresses" in str(e.value)


def test_a_policy_names_the_setting_it_was_given_and_no_other() -> None:
    """Each service names its own setting; this package knows none of them."""
    with pytest.raises(MediaAddressRefusedError) as unnamed:
        AddressPolicy().check("media.example", ["10.0.0.1"])
    assert "unless this server's configuration allows them" in str(unnamed.value)
    assert "ORCHESTRATOR" not in str(unnamed.value)
    named = AddressPolicy.parse(["127.0.0.1"], "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS")
    with pytest.raises(MediaAddressRefusedError, match="unless CHUNK_WORKER_ALLOWED_MEDIA_NET"):
        named.check("media.example", ["10.0.0.1"])


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "100.63.255.255",  # just below carrier-grade NAT
        "100.128.0.0",  # just above
        "198.20.0.1",  # just above benchmarking
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped public
        "64:ff9b::808:808",  # NAT64 of a public address
        "2002:808:808::1",  # 6to4 of a public address
        "2001:0:808:808:0:f227:f7f7:f7f7",  # Teredo: public server and client
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("network", "address"),
    [
        ("100.64.0.0/10", "100.64.12.34"),
        ("198.18.0.0/15", "198.18.0.1"),
        ("64:ff9b::/96", "64:ff9b::a00:1"),  # the NAT64 network itself
        ("10.0.0.0/8", "64:ff9b::a00:1"),  # or the network it leads to
        ("127.0.0.0/8", "::ffff:127.0.0.1"),
        ("fc00::/7", "fd00::1"),
    ],
)
def test_a_configured_network_allows_what_it_holds(network: str, address: str) -> None:
    policy = AddressPolicy.parse([network])
    assert policy.refusal(ipaddress.ip_address(address)) is None
    assert policy.check("media.internal", [address]) == address


def test_public_addresses_and_allowed_networks_pass() -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address("93.184.216.34")) is None
    policy = AddressPolicy.parse(["10.0.0.0/8", "::1"])
    assert policy.check("nas.local", ["10.9.8.7"]) == "10.9.8.7"
    assert policy.check("localhost", ["127.0.0.1", "::1"]) == "::1"  # the allowed one is used
    assert policy.networks == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError):
        AddressPolicy.parse(["not-a-network"])


@pytest.fixture(scope="module")
def host(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


async def test_an_allowed_host_is_fetched_and_a_refused_one_never_contacted(
    host: MediaServer,
) -> None:
    url = host.url("speech_40s.wav")
    async with media_client(ONLY_127_0_0_1, 10) as http:
        response = await http.get(url, headers={"Range": "bytes=0-3"})
        assert response.status_code == 206 and response.content == b"RIFF"
    host.traffic.reset()
    async with media_client(AddressPolicy(), 10) as http:
        with pytest.raises(MediaAddressRefusedError, match=r"127\.0\.0\.1 \(loopback\)"):
            await http.get(url)
    assert host.traffic.requests_by_path == {}  # refused before connecting


async def test_every_redirect_hop_is_checked(host: MediaServer) -> None:
    elsewhere = "http://127.0.0.2:9/secret"  # loopback, but not allowed: never reached
    async with media_client(ONLY_127_0_0_1, 10) as http:
        with pytest.raises(MediaAddressRefusedError, match=r"127\.0\.0\.2"):
            await http.get(f"{host.base_url}/redirect", params={"to": elsewhere})


async def test_a_name_is_resolved_once_and_its_checked_address_used(host: MediaServer) -> None:
    url = host.url("speech_40s.wav").replace("127.0.0.1", "localhost")
    async with media_client(ONLY_127_0_0_1, 10) as http:
        assert (await http.get(url, headers={"Range": "bytes=0-3"})).status_code == 206


@pytest.fixture
def rebinding_name(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`media.test` resolves to 127.0.0.1 (allowed) the first time and to 127.0.0.2 (refused,
    and nothing listens there) after that: DNS rebinding. The list records each lookup."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes bytes
        if name != "media.test":
            return real(host, port, *args, **kwargs)
        lookups.append(name)
        address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return lookups


async def test_a_name_is_looked_up_once_per_connection_and_the_checked_address_dialled(
    host: MediaServer, rebinding_name: list[str]
) -> None:
    """A second lookup (httpcore's own, if the guard only checked) would meet 127.0.0.2."""
    url = host.url("speech_40s.wav").replace("127.0.0.1", "media.test")
    async with media_client(ONLY_127_0_0_1, 10) as http:
        response = await http.get(url, headers={"Range": "bytes=0-3"})
    assert response.status_code == 206 and response.content == b"RIFF"
    assert rebinding_name == ["media.test"]


def test_the_blocking_client_looks_a_name_up_once_too(
    host: MediaServer, rebinding_name: list[str]
) -> None:
    url = host.url("speech_40s.wav").replace("127.0.0.1", "media.test")
    with sync_media_client(ONLY_127_0_0_1, 10) as http:
        response = http.get(url, headers={"Range": "bytes=0-3"})
    assert response.status_code == 206 and response.content == b"RIFF"
    assert rebinding_name == ["media.test"]


async def test_a_new_connection_looks_again_and_a_rebound_name_is_refused(
    host: MediaServer, rebinding_name: list[str]
) -> None:
    url = host.url("speech_40s.wav").replace("127.0.0.1", "media.test")
    async with media_client(ONLY_127_0_0_1, 10) as http:
        assert (await http.get(url, headers={"Range": "bytes=0-3"})).status_code == 206
    async with media_client(ONLY_127_0_0_1, 10) as http:  # a new pool: a new connection
        with pytest.raises(MediaAddressRefusedError, match=r"127\.0\.0\.2 \(loopback\)"):
            await http.get(url)
    assert rebinding_name == ["media.test", "media.test"]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_connection_failures_are_httpxs_exceptions(
    closed_port: int, silent_port: int
) -> None:
    """Our transport maps httpcore's exceptions to httpx's as httpx's own does: the retry rule
    and `transport_error` know only httpx's."""
    async with media_client(ONLY_127_0_0_1, 0.3) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{closed_port}/a.mp3")
        with pytest.raises(httpx.ReadTimeout) as timed_out:
            await http.get(f"http://127.0.0.1:{silent_port}/a.mp3")
    assert "sent nothing for 0.3 s" in transport_error(timed_out.value).message


def test_the_blocking_clients_failures_are_httpxs_exceptions(
    closed_port: int, silent_port: int
) -> None:
    with sync_media_client(ONLY_127_0_0_1, 0.3) as http:
        with pytest.raises(httpx.ConnectError):
            http.get(f"http://127.0.0.1:{closed_port}/a.mp3")
        with pytest.raises(httpx.ReadTimeout):
            http.get(f"http://127.0.0.1:{silent_port}/a.mp3")


async def test_a_body_cut_mid_transfer_is_httpxs_remote_protocol_error(host: MediaServer) -> None:
    """Errors while the body streams (after the transport returned) are mapped too."""
    async with media_client(ONLY_127_0_0_1, 10) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(host.url("speech_200s.mp3", route="drop") + "?at=0.3")


def test_pyav_reads_a_media_file_by_ranges(host: MediaServer) -> None:
    import av

    with sync_media_client(ONLY_127_0_0_1, 10) as http:
        media = MediaFile(http, host.url("speech_40s.cbr.mp3"))
        with av.open(media, mode="r") as container:
            assert container.streams.audio
        data = (host.root / "speech_40s.cbr.mp3").read_bytes()
        media.seek(0, io.SEEK_END)
        assert media.tell() == len(data)
        media.seek(1000)
        assert media.read(4096) == data[1000:5096]


def test_pyavs_file_reads_through_a_host_that_drops_connections(host: MediaServer) -> None:
    """Each block cut short by the host is fetched again (media_host.failures.TRANSFER_RETRIES)."""
    data = (host.root / "speech_200s.mp3").read_bytes()
    with sync_media_client(ONLY_127_0_0_1, 10) as http:
        media = MediaFile(http, host.url("speech_200s.mp3", route="flaky") + "?every=300000")
        assert b"".join(iter(lambda: media.read(65536), b"")) == data


def test_failures_read_as_media_errors() -> None:
    assert isinstance(transport_error(httpx.ConnectError("refused")), MediaHostError)
    request = httpx.Request("GET", "http://media", extensions={"timeout": {"read": 2.5}})
    timed_out = transport_error(httpx.ReadTimeout("slow", request=request))
    assert timed_out.status_code == 504 and "sent nothing for 2.5 s" in timed_out.message
    assert isinstance(transport_error(httpx.TooManyRedirects("loop")), MediaUnavailableError)
    assert "http:// or https://" in transport_error(httpx.UnsupportedProtocol("ftp")).message


def test_a_host_that_sends_more_than_the_range_asked_for_is_read_no_further() -> None:
    """Regression: the probe kept every byte of a 206 answer, so a host sending an endless
    body buffered 2.6 GB in 4 s in the orchestrator. Now a read stops at what it asked for."""
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            assert sent < 16 << 20, "the probe read 16 MiB of a 256 KiB range"
            yield bytes(65536)

    def handle(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Range": "bytes 0-262143/262144"}
        return httpx.Response(206, headers=headers, content=endless())

    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        media = MediaFile(client, "http://media.example/a.mp3", block=262144)
        assert len(media.read(1000)) == 1000
    assert sent <= 262144 + 65536
