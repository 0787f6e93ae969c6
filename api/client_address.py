"""The client's address: the peer, or what a trusted reverse proxy says in ``X-Forwarded-For``.

Only proxies listed in ``GRIDPATROL_TRUSTED_PROXIES`` are believed (nothing by default, loopback
included): anyone else could put any text there, rotating it to dodge the per-address login limit
and writing it into the audit log. A forwarded value that is not an IP address is ignored.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def parse_networks(items: tuple[str, ...]) -> tuple[Network, ...]:
    """The settings' list as networks (cached: it is asked on every request)."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(addr in net for net in trusted if addr.version == net.version)


def client_address(peer: str, forwarded_for: Sequence[str], *, trusted: Sequence[Network]) -> str:
    """The peer, unless it is a trusted proxy: then the nearest hop of ``X-Forwarded-For`` (read from
    the right) that is not itself a trusted proxy. A malformed hop ends the walk at the last good one."""
    current = _ip(peer)
    if current is None or not trusted or not _trusted(current, trusted):
        return peer[:64]
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        addr = _ip(hop)
        if addr is None:
            break  # garbage from beyond the last trusted proxy: keep the last address we can vouch for
        current = addr
        if not _trusted(addr, trusted):
            break
    return str(current)
