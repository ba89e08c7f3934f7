"""Tunnel addresses: which address of a pool a new session gets."""

from __future__ import annotations

import ipaddress
import socket
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
    # Integers, not address objects: with thousands of sessions live this runs on every sign-in.
    used_ints = {_as_int(a) for a in used}
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    if net.prefixlen >= net.max_prefixlen - 1:  # /31 and /32 have no network or broadcast address
        first, last = int(net.network_address), int(net.broadcast_address)
    for value in range(first, last + 1):
        if value not in used_ints:
            return str(ipaddress.ip_address(value))
    return None


def _as_int(text: str) -> int | None:
    try:
        return int.from_bytes(socket.inet_aton(text), "big")  # ten times quicker than ip_address()
    except OSError:
        try:
            return int(ipaddress.ip_address(text))
        except ValueError:
            return None  # a malformed stored address blocks nothing
