"""The media-host seam without a connection: the address guard's rules, failures as media
errors, a file that reads no further than its range (tests/integration/test_media_host.py
connects: guarded connections, redirects, DNS rebinding, PyAV's file over HTTP)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import httpx
import pytest

from shared.errors import MediaHostError, MediaUnavailableError
from shared.media_host import (
    AddressPolicy,
    MediaAddressRefusedError,
    MediaFile,
    transport_error,
)

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
