"""Which network addresses traindock may connect to on a user's behalf (URL imports today,
webhook destinations next). By default only public unicast addresses: never loopback,
private (RFC 1918, unique-local), link-local (cloud metadata at 169.254.169.254), multicast,
reserved or unspecified ones, so that a URL cannot make the server reach into its own
network. A setting widens that for a deployment that means it.

Use `resolve_checked` and connect to the address it returns: resolving again at connect
time would let a DNS answer change between the check and the connection (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(ValueError):
    """The host resolves to an address the policy refuses, or does not resolve at all."""


@dataclass(frozen=True)
class NetPolicy:
    """`allow_private`: every unicast address may be reached. `allow_networks`: these
    networks may be reached although they are not public."""

    allow_private: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, allow_private: bool, allow_networks: str) -> NetPolicy:
        """From TRAINDOCK_URL_IMPORT_ALLOW_PRIVATE and TRAINDOCK_URL_IMPORT_ALLOW_NETWORKS
        ("10.0.0.0/8,127.0.0.1/32"); ValueError names a network that does not parse."""
        networks = []
        for text in (part.strip() for part in allow_networks.split(",")):
            if text:
                try:
                    networks.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    raise ValueError(f"TRAINDOCK_URL_IMPORT_ALLOW_NETWORKS: {text!r} is not a "
                                     "network such as 10.0.0.0/8 or 127.0.0.1/32") from None
        return cls(allow_private, tuple(networks))

    def refusal(self, address: IPAddress) -> str | None:
        """None when `address` may be reached; else what kind of address it is."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in network for network in self.allow_networks):
            return None
        kind = address_kind(address)
        if kind is None:
            return None
        if self.allow_private and kind not in ("multicast", "unspecified"):
            return None
        return kind


def address_kind(address: IPAddress) -> str | None:
    """None for a public unicast address; else the reason it is not one."""
    for kind, flag in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                       ("multicast", address.is_multicast), ("link-local", address.is_link_local),
                       ("private", address.is_private), ("reserved", address.is_reserved)):
        if flag:
            return kind
    if not address.is_global:  # shared (100.64/10), documentation, 6to4 relays, ...
        return "non-public"
    return None


def resolve_addresses(host: str, port: int) -> list[IPAddress]:
    """Every address `host` is or resolves to, resolved once; AddressRefused when none."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise AddressRefused(f"the host {host!r} does not resolve") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"the host {host!r} does not resolve")
    return addresses


def resolve_checked(host: str, port: int, policy: NetPolicy) -> IPAddress:
    """The address to connect to for `host`: every address the name resolves to must be
    allowed (one refused is enough to refuse: a name that mixes public and private answers
    is a rebinding trick), and the first is returned. AddressRefused otherwise; the message
    never says which internal address a name has."""
    addresses = resolve_addresses(host, port)
    for address in addresses:
        kind = policy.refusal(address)
        if kind is not None:
            raise AddressRefused(
                f"the host {host!r} is or resolves to a {kind} address; traindock only connects "
                "to public addresses (an operator may allow others with "
                "TRAINDOCK_URL_IMPORT_ALLOW_NETWORKS "
                "or TRAINDOCK_URL_IMPORT_ALLOW_PRIVATE)")
    return addresses[0]
