"""The DTLS part of CONNECT: what the client offers, the suite we pick, the MTUs and our answer headers.

The scheme is the session-resumption one Cisco clients use and openconnect offers too: the client
sends a 48-byte master secret with CONNECT, the gateway answers with a session id and one cipher
suite, and the client "resumes" that DTLS 1.2 session over UDP (abbreviated handshake, no
certificate). PSK-NEGOTIATE is not offered: it keys DTLS with the TLS session's exporter, which
Python's `ssl` (the front door's TLS) does not expose. Pure code: no crypto here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

MASTER_SECRET_LEN = 48
SESSION_ID_LEN = 32  # openconnect insists on 64 hex characters

# Bytes of a data packet's datagram besides the packet: IPv4 + UDP headers, the DTLS record header,
# AES-GCM's explicit nonce and tag, and AnyConnect's one-byte packet type inside the record.
IPV4_UDP = 20 + 8
DTLS_GCM_OVERHEAD = 13 + 8 + 16
PACKET_TYPE = 1
DEFAULT_BASE_MTU = 1500
MIN_BASE_MTU = 1280  # openconnect never reports less


class Suite(NamedTuple):
    header: str  # the header the client listed it in, and the one we answer with
    name: str  # as the client spells it
    cipher_id: bytes  # the TLS cipher-suite code point the resumed session uses


# Our preference, strongest first. All are AES-GCM (one overhead figure for the MTU). openconnect
# lists both headers; Cisco clients list only X-DTLS12-CipherSuite.
SUITES = (
    Suite("X-DTLS12-CipherSuite", "ECDHE-RSA-AES256-GCM-SHA384", b"\xc0\x30"),
    Suite("X-DTLS12-CipherSuite", "AES256-GCM-SHA384", b"\x00\x9d"),
    Suite("X-DTLS-CipherSuite", "OC-DTLS1_2-AES256-GCM", b"\x00\x9d"),
    Suite("X-DTLS12-CipherSuite", "ECDHE-RSA-AES128-GCM-SHA256", b"\xc0\x2f"),
    Suite("X-DTLS12-CipherSuite", "AES128-GCM-SHA256", b"\x00\x9c"),
    Suite("X-DTLS-CipherSuite", "OC-DTLS1_2-AES128-GCM", b"\x00\x9c"),
)


@dataclass(frozen=True)
class ClientOffer:
    master_secret: bytes
    suite: Suite


def read_offer(headers: dict[str, str]) -> ClientOffer | None:
    """The client's DTLS offer from CONNECT's (lower-cased) headers, or None: TLS only."""
    try:
        secret = bytes.fromhex(headers.get("x-dtls-master-secret", ""))
    except ValueError:
        return None
    if len(secret) != MASTER_SECRET_LEN:
        return None
    listed = {
        "X-DTLS-CipherSuite": _names(headers.get("x-dtls-ciphersuite", "")),
        "X-DTLS12-CipherSuite": _names(headers.get("x-dtls12-ciphersuite", "")),
    }
    for suite in SUITES:
        if suite.name in listed[suite.header]:
            return ClientOffer(secret, suite)
    return None


def _names(value: str) -> set[str]:
    return {n.strip() for n in value.split(":") if n.strip()}


def base_mtu(headers: dict[str, str]) -> int:
    """The client's link MTU as it reports it (X-CSTP-Base-MTU), within what we believe."""
    try:
        value = int(headers.get("x-cstp-base-mtu", ""))
    except ValueError:
        return DEFAULT_BASE_MTU
    return max(MIN_BASE_MTU, min(value, DEFAULT_BASE_MTU))


def dtls_mtu(base: int, configured: int) -> int:
    """The largest packet one datagram carries on a link of `base`, at most the configured MTU."""
    return min(configured, base - IPV4_UDP - DTLS_GCM_OVERHEAD - PACKET_TYPE)


def answer_headers(
    session_id: bytes, suite: Suite, *, port: int, mtu: int, dpd: int, keepalive: int
) -> list[tuple[str, str]]:
    """The X-DTLS-* headers of the CONNECT answer (openconnect matches them byte for byte)."""
    return [
        ("X-DTLS-Session-ID", session_id.hex().upper()),
        ("X-DTLS-Port", str(port)),
        ("X-DTLS-DPD", str(dpd)),
        ("X-DTLS-Keepalive", str(keepalive)),
        ("X-DTLS-Rekey-Method", "none"),
        (suite.header, suite.name),
        ("X-DTLS-MTU", str(mtu)),
    ]
