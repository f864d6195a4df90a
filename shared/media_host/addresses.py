"""Which addresses a client-supplied URL may reach: the media-host seam's guard against SSRF.

`AddressPolicy` refuses every address that is not public (loopback, private, carrier-grade NAT,
link-local, documentation, benchmarking, multicast, reserved ...; an IPv6 address that carries
an IPv4 one by what that leads to) unless the policy's networks allow it. It decides; the
guarded connections (`connections.py`) ask it about every address they are about to connect to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.errors import InvalidRequestError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class MediaAddressRefusedError(InvalidRequestError):
    """A media URL (or a redirect) leads to an address the server may not reach."""

    code = "media_address_refused"


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[IPNetwork, ...] = ()
    """Networks reachable even though they are not public."""
    setting: str = ""
    """The setting that lists them, named in a refusal: each service passes its own name
    (this package knows no service's settings)."""

    @classmethod
    def parse(cls, networks: Iterable[str], setting: str = "") -> AddressPolicy:
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

    def check(
        self,
        host: str,
        addresses: Sequence[str],
        *,
        param: str = "media_url",
        doing: str = "fetches media only from",
    ) -> str:
        """The first address of `host` the policy allows; MediaAddressRefusedError (naming
        `param`, saying what the server `doing` public addresses) if none."""
        allower = self.setting or "this server's configuration"
        reasons = []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = self.refusal(address)
            if reason is None:
                return text
            reasons.append(f"{address} ({reason})")
        raise MediaAddressRefusedError(
            f"{host} resolves to {', '.join(reasons) or 'no address'}: the server {doing} "
            f"public addresses (not loopback, private, carrier-grade NAT, link-local, "
            f"documentation or other special ranges) unless {allower} allows them",
            param=param,
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
