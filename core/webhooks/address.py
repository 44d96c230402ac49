"""Where a webhook may be sent: the URL's host resolved once, and refused when any of its
addresses is loopback, private, link-local, multicast, reserved or unspecified, unless the
server allows private destinations (TRAINDOCK_WEBHOOK_ALLOW_PRIVATE). The delivery connects
to the address checked here, so a DNS answer that changes between the check and the
connection (rebinding) cannot redirect it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.net_policy import AddressRefused, NetPolicy, resolve_addresses


class RefusedDestination(ValueError):
    """The URL's host is not a destination this server sends to (the reason is the message)."""


@dataclass(frozen=True)
class Destination:
    host: str  # as the URL names it (the Host header and TLS's server name)
    address: str  # the address checked, to connect to
    port: int


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # the same rules as URL imports (core/net_policy.py), IPv4-mapped IPv6 included
    return NetPolicy().refusal(address) is None


def resolve(url: str, allow_private: bool) -> Destination:
    """The URL's destination, checked; raises RefusedDestination. Errors name the host, never
    anything a server sent."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve_addresses(host, port)  # the same resolution as URL imports
    except AddressRefused:
        raise RefusedDestination(f"{host!r} does not resolve") from None
    if not allow_private:
        for address in addresses:
            if not _public(address):
                raise RefusedDestination(
                    f"{host!r} resolves to {address}, a private, loopback or reserved "
                    "address; this server sends webhooks only to public addresses "
                    "(TRAINDOCK_WEBHOOK_ALLOW_PRIVATE)")
    return Destination(host, str(addresses[0]), port)
