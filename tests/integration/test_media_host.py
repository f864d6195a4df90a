"""The media-host seam over loopback: guarded connections and redirects, names looked up once,
httpx's exceptions, PyAV's file read by ranges (the address rules alone:
tests/unit/shared/test_media_host.py).

All traffic stays on this machine: refusals are tested with loopback addresses that the policy
does not allow, and a redirect from an allowed loopback host to a refused one.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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
