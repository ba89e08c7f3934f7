"""The gateway's TUN device: created with one ioctl, configured once with pyroute2 (never `ip`)."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import struct

from pyroute2 import IPRoute

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class TunError(Exception):
    pass


def open_tun(name: str) -> int:
    """A non-blocking file descriptor for TUN device `name` (created if missing)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TunError(
            f"cannot open /dev/net/tun ({exc.strerror}); the gateway must run as root or with CAP_NET_ADMIN"
        ) from exc
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EBUSY:
            raise TunError(
                f"TUN device {name!r} is busy: another `campusvpn serve` (or another program) holds it; "
                "stop that one first, or name another device in [gateway] tun_device"
            ) from exc
        raise TunError(f"cannot create TUN device {name!r}: {exc.strerror}") from exc
    return fd


def configure(name: str, pools: list[str], mtu: int) -> None:
    """Give the device the gateway address of each pool (which routes the pool to it), and bring it up."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=idx, mtu=mtu)
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx)}
        for pool in pools:
            net = ipaddress.ip_network(pool)
            gw = str(next(net.hosts()))
            if gw not in have:
                ipr.addr("add", index=idx, address=gw, prefixlen=net.prefixlen)
        ipr.link("set", index=idx, state="up")
