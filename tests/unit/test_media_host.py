"""The media-host seam: the address guard, guarded connections and redirects, PyAV's file.

All traffic stays on this machine: refusals are tested with loopback addresses that the policy
does not allow, and a redirect from an allowed loopback host to a refused one.
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Iterator
from pathlib import Path

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
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str, kind: str) -> None:
    policy = AddressPolicy()
    assert policy.refusal(ipaddress.ip_address(address)) is not None
    with pytest.raises(MediaAddressRefusedError, match="ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS"):
        policy.check("media.example", [address])


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
    """Each block cut short by the host is fetched again (media_host.RETRY_DELAYS_SEC)."""
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
