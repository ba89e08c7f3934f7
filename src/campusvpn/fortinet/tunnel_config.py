"""The tunnel configuration of `/remote/fortisslvpn_xml`, from the same `[vpn]` settings as AnyConnect.

Written as FortiGates write it: single quotes, one line. openfortivpn's scanner reads only the
first `split-tunnel-info` block, as includes, and takes every `/` for the end of an element, so
the include block comes first and masks are dotted, never prefix lengths. No include block means
a default route in both open clients (full tunnel).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from campusvpn.platform.config_schema import VpnSettings


@dataclass(frozen=True)
class Timeouts:
    idle: int  # seconds without traffic before the session ends
    session_remaining: int  # seconds until the session's time limit
    reconnect: int  # how long a dropped tunnel may come back with the same cookie


def _single(value: str) -> str:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")
    return f"'{escaped}'"


def _addrs(networks: list[str]) -> str:
    out = []
    for cidr in networks:
        net = ipaddress.ip_network(cidr, strict=False)
        out.append(f"<addr ip={_single(str(net.network_address))} mask={_single(str(net.netmask))} />")
    return "".join(out)


def tunnel_xml(settings: VpnSettings, address: str, timeouts: Timeouts, *, platform: str = "campusvpn") -> bytes:
    ipv4 = []
    for i, server in enumerate(settings.dns):
        domain = f" domain={_single(settings.domain)}" if i == 0 and settings.domain else ""
        ipv4.append(f"<dns ip={_single(server)}{domain} />")
    if not settings.dns and settings.domain:
        ipv4.append(f"<dns domain={_single(settings.domain)} />")
    if settings.domain and not settings.full_tunnel and settings.dns:
        servers = "".join(f" dnsserver{i + 1}={_single(s)}" for i, s in enumerate(settings.dns[:2]))
        ipv4.append(f"<split-dns domains={_single(settings.domain)}{servers} />")
    ipv4 += [f"<wins ip={_single(w)} />" for w in settings.wins]
    ipv4.append(f"<assigned-addr ipv4={_single(address)} />")
    if not settings.full_tunnel:
        ipv4.append(f"<split-tunnel-info>{_addrs(list(settings.split_include))}</split-tunnel-info>")
    if settings.split_exclude:
        ipv4.append(f"<split-tunnel-info negate='1'>{_addrs(list(settings.split_exclude))}</split-tunnel-info>")
    parts = [
        "<?xml version='1.0' encoding='utf-8'?>",
        "<sslvpn-tunnel ver='2' dtls='0' patch='1'>",
        "<dtls-config heartbeat-interval='10' heartbeat-fail-count='10' heartbeat-idle-timeout='10'"
        " client-hello-timeout='10' />",
        "<tunnel-method value='ppp' />",
        f"<fos platform={_single(platform)} major='7' minor='0' patch='0' build='1' branch='1' />",
        # check-src-ip 0: a client moving between networks may resume, as over AnyConnect.
        "<auth-ses check-src-ip='0' tun-connect-without-reauth='1'"
        f" tun-user-ses-timeout='{max(1, timeouts.reconnect)}' />",
        "<client-config save-password='off' keep-alive='on' auto-connect='off' />",
        "<ipv4>",
        *ipv4,
        "</ipv4>",
        f"<idle-timeout val='{timeouts.idle}' />",
        f"<auth-timeout val='{max(1, timeouts.session_remaining)}' />",
        "</sslvpn-tunnel>",
    ]
    return "".join(parts).encode("utf-8")
