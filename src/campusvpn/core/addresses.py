"""Tunnel addresses: which address of a pool a new session gets."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def gateway_address(pool: str) -> str:
    """The gateway's own address in the pool: the first host."""
    return str(next(ipaddress.ip_network(pool).hosts()))


def allocate(pool: str, taken: Iterable[str], prefer: str | None = None) -> str | None:
    """A free /32 of `pool`: `prefer` (the user's previous address) if free, else the lowest free one.
    None when the pool is full. The gateway's address is never handed out."""
    net = ipaddress.ip_network(pool)
    used = set(taken) | {gateway_address(pool)}
    if prefer is not None and prefer not in used:
        try:
            if ipaddress.ip_address(prefer) in net and ipaddress.ip_address(prefer) not in (
                net.network_address,
                net.broadcast_address,
            ):
                return prefer
        except ValueError:
            pass
    for host in net.hosts():
        text = str(host)
        if text not in used:
            return text
    return None
