"""The `HTTP/1.1 200 CONNECTED` answer with the pushed network settings, as exact bytes.

openconnect matches the header names byte for byte, so they are written here, spelled as
the protocol spells them, never through an HTTP library that might re-case them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from campusvpn import __version__
from campusvpn.platform.config_schema import VpnSettings

# "Allow local LAN access": Cisco's convention is an exclude of the all-zero host.
LOCAL_LAN_EXCLUDE = "0.0.0.0/255.255.255.255"


@dataclass(frozen=True)
class Timers:
    dpd: int
    keepalive: int
    idle_timeout: int
    session_remaining: int
    disconnected_timeout: int


def _route(cidr: str) -> str:
    net = ipaddress.ip_network(cidr)
    return f"{net.network_address}/{net.netmask}"


def _banner(text: str) -> str:
    # openconnect %-decodes the banner; newlines and non-ASCII go as %XX, readable ASCII as is.
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def connected_response(
    settings: VpnSettings,
    address: str,
    timers: Timers,
    *,
    server_name: str = "",
    mtu: int | None = None,
    dtls: Sequence[tuple[str, str]] = (),
) -> bytes:
    """`mtu` overrides the configured tunnel MTU (a DTLS tunnel's is smaller); `dtls` are the X-DTLS-* headers."""
    h: list[tuple[str, str]] = [
        ("X-CSTP-Version", "1"),
        ("X-CSTP-Server-Name", server_name or f"campusvpn {__version__}"),
        ("X-CSTP-Address", address),
        ("X-CSTP-Netmask", "255.255.255.255"),  # a /32 per client: no gateway on a shared subnet
    ]
    h += [("X-CSTP-DNS", d) for d in settings.dns]
    h += [("X-CSTP-NBNS", w) for w in settings.wins]
    if settings.domain:
        h.append(("X-CSTP-Default-Domain", settings.domain))
        if not settings.full_tunnel:
            h.append(("X-CSTP-Split-DNS", settings.domain))
    h.append(("X-CSTP-Tunnel-All-DNS", "true" if settings.full_tunnel else "false"))
    if not settings.full_tunnel:  # no Split-Include at all means a default route
        h += [("X-CSTP-Split-Include", _route(n)) for n in settings.split_include]
    if settings.allow_local_lan:
        h.append(("X-CSTP-Split-Exclude", LOCAL_LAN_EXCLUDE))
    h += [("X-CSTP-Split-Exclude", _route(n)) for n in settings.split_exclude]
    if settings.proxy_pac:
        h.append(("X-CSTP-MSIE-Proxy-PAC-URL", settings.proxy_pac))  # exact spelling: see the protocol notes
    if settings.banner:
        h.append(("X-CSTP-Banner", _banner(settings.banner)))
    h += [
        ("X-CSTP-Keepalive", str(timers.keepalive)),
        ("X-CSTP-DPD", str(timers.dpd)),
        ("X-CSTP-Idle-Timeout", str(timers.idle_timeout)),
        ("X-CSTP-Session-Timeout", str(timers.session_remaining)),
        ("X-CSTP-Session-Timeout-Remaining", str(timers.session_remaining)),
        ("X-CSTP-Disconnected-Timeout", str(timers.disconnected_timeout)),
        ("X-CSTP-Keep", "true"),
        ("X-CSTP-TCP-Keepalive", "true"),
        ("X-CSTP-License", "accept"),
        ("X-CSTP-Rekey-Method", "none"),
        ("X-CSTP-Smartcard-Removal-Disconnect", "true"),
        ("X-CSTP-Routing-Filtering-Ignore", "false"),
        ("X-CSTP-Client-Bypass-Protocol", "false" if settings.full_tunnel else "true"),
    ]
    h += dtls
    h += [
        ("X-CSTP-Base-MTU", "1500"),
        ("X-CSTP-MTU", str(mtu or settings.mtu)),
    ]
    lines = ["HTTP/1.1 200 CONNECTED"] + [f"{k}: {_clean(v)}" for k, v in h]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def refused_response(status: int, reason: str, x_reason: str | None = None) -> bytes:
    """401 (cookie not acceptable: openconnect exits) or 503 with X-Reason (it prints the reason)."""
    head = f"HTTP/1.1 {status} {_clean(reason)}\r\nContent-Length: 0\r\nConnection: close\r\n"
    if x_reason:
        head += f"X-Reason: {_clean(x_reason)}\r\n"
    return (head + "\r\n").encode("utf-8")


def _clean(value: str) -> str:
    """No CR/LF can reach a header line (header injection)."""
    return value.replace("\r", " ").replace("\n", " ")
