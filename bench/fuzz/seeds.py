"""Writes the seed corpus (`corpus/<target>/`): real exchanges from the tests and the protocol references.

Run it again after changing a seed here; the files are small and kept in git. What the fuzzer
finds later goes to the run's own folder (see run.py), never here.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent

INIT = b"""<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="init" aggregate-auth-version="2">
  <version who="vpn">v9.01-3</version>
  <device-id>linux-64</device-id>
  <capabilities>
    <auth-method>single-sign-on-v2</auth-method>
  </capabilities>
  <group-access>https://vpn.campus.example/</group-access>
  <group-select>staff</group-select>
</config-auth>
"""
REPLY = b"""<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2">
  <version who="vpn">v9.01-3</version>
  <device-id>linux-64</device-id>
  <opaque is-for="sg"><auth-handle>7f3c2a</auth-handle></opaque>
  <auth>
    <username>alice</username>
    <password>secret</password>
  </auth>
  <group-select>staff</group-select>
</config-auth>
"""
CODE = REPLY.replace(
    b"<username>alice</username>\n    <password>secret</password>", b"<secondary_password>123456</secondary_password>"
)
LOGOUT = b'<?xml version="1.0"?><config-auth type="logout"><session-token>abc@def</session-token></config-auth>'
BOMB = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "a"><!ENTITY b "&a;">]><config-auth type="init">&b;</config-auth>'


def cstp(ftype: int, payload: bytes = b"") -> bytes:
    return b"STF\x01" + struct.pack(">HBB", len(payload), ftype, 0) + payload


def ppp_frame(protocol: int, info: bytes, hdlc: bool = True) -> bytes:
    body = (b"\xff\x03" if hdlc else b"") + protocol.to_bytes(2, "big") + info
    return struct.pack(">HHH", 6 + len(body), 0x5050, len(body)) + body


def control(protocol: int, code: int, ident: int, data: bytes = b"", hdlc: bool = True) -> bytes:
    return ppp_frame(protocol, bytes((code, ident)) + (4 + len(data)).to_bytes(2, "big") + data, hdlc)


def opt(kind: int, value: bytes) -> bytes:
    return bytes((kind, 2 + len(value))) + value


LCP, IPCP = 0xC021, 0x8021
CLIENT_MAGIC = b"\xaa\xbb\xcc\xdd"
OUR_REQUEST = opt(1, (1354).to_bytes(2, "big")) + opt(5, b"\x12\x34\x56\x78")  # ppp_link.py's fixed magic
IPV4 = bytes.fromhex("4500001c0001000040010000" + "0a140007" + "0a140001") + bytes(8)


def bring_up(hdlc: bool) -> bytes:
    """openconnect's negotiation (tests/test_fortinet_ppp.py), then one IPv4 packet."""
    return b"".join(
        (
            control(LCP, 1, 1, opt(1, b"\xff\xbc") + opt(5, CLIENT_MAGIC), hdlc),
            control(LCP, 3, 1, opt(1, b"\xff\xbc"), hdlc),
            control(LCP, 2, 2, OUR_REQUEST, hdlc),
            control(IPCP, 1, 1, opt(3, bytes(4)) + opt(129, bytes(4)) + opt(131, bytes(4)), hdlc),
            control(IPCP, 1, 2, opt(3, bytes.fromhex("0a140007")) + opt(129, bytes.fromhex("0a140035")), hdlc),
            control(IPCP, 2, 1, b"", hdlc),
            ppp_frame(0x0021, IPV4, hdlc),
            control(LCP, 9, 7, CLIENT_MAGIC + b"hi", hdlc),
            ppp_frame(0x8057, bytes((1, 1, 0, 4)), hdlc),  # IPv6CP: Protocol-Rejected
            control(LCP, 5, 8, b"user ended", hdlc),
        )
    )


HTTP_INIT = (
    b"POST / HTTP/1.1\r\nHost: vpn.example.ac.jp\r\nUser-Agent: Open AnyConnect VPN Agent v9.01\r\n"
    b"X-Aggregate-Auth: 1\r\nX-Transcend-Version: 1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: %d\r\n\r\n" % len(INIT)
) + INIT
HTTP_CONNECT = (
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn.example.ac.jp\r\nUser-Agent: Open AnyConnect VPN Agent v9.01\r\n"
    b"Cookie: webvpn=abc123\r\nX-CSTP-Version: 1\r\nX-CSTP-MTU: 1399\r\n\r\n"
)
FORTI_LOGIN = b"username=1234567890&credential=correct+horse&realm=&ajax=1"
HTTP_FORTI = (
    (
        b"GET /remote/login?realm=staff HTTP/1.1\r\nHost: sslvpn\r\nUser-Agent: Mozilla/5.0 SV1\r\n\r\n"
        b"POST /remote/logincheck HTTP/1.1\r\nHost: sslvpn\r\nUser-Agent: Mozilla/5.0 SV1\r\nCookie: \r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(FORTI_LOGIN)
    )
    + FORTI_LOGIN
    + b"GET /remote/sslvpn-tunnel HTTP/1.1\r\nHost: sslvpn\r\nCookie: SVPNCOOKIE=abc\r\n\r\n"
)
HTTP_BROWSER = (
    b"GET /staff HTTP/1.1\r\nHost: vpn\r\nUser-Agent: Mozilla/5.0 SV1\r\n\r\n"
    b"GET /signin?next=/ HTTP/1.1\r\nHost: vpn\r\nUser-Agent: Mozilla/5.0 (X11; Linux) Firefox/128.0\r\n"
    b"Cookie: campusvpn-session=x; campusvpn-device=y\r\n\r\n"
    b"POST /signin HTTP/1.1\r\nHost: vpn\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nuser=\r\n0\r\n\r\n"
)
HTTP_SMUGGLE = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
HTTP_BIG = b"POST / HTTP/1.1\r\nHost: a\r\nX-Aggregate-Auth: 1\r\nContent-Length: 99999999\r\n\r\nxx"

ROSTER = b"username,name,role,email,from,until\n1234567890,Hanako Yamada,staff,h@example.ac.jp,2020-04-01,\n"
ROSTER += b"2234567890,,student,,2024-04-01,2028-03-31\n3234567890,x,nobody,bad,2025-13-01,\n"
TRAINING = b"username,completed_on\n1234567890,2026-07-15\n2234567890,2030-01-01\nnobody,yesterday\n"
EXCEL = b'\xef\xbb\xbfUsername,Role\r\n1234567890,staff\r\n"2234567890","staff",extra\r\n'

CONFIG = b"""[service]
name = "Campus VPN"

[passwords]
argon2_time_cost = 1
argon2_memory_kib = 8192

[gateway]
listen = "0.0.0.0:443"
idle_timeout = "30m"

[vpn]
dns = ["10.20.0.53", "10.20.0.54"]
split_include = ["10.20.0.0/16"]

[[vpn.profiles]]
name = "staff"
settings = { pool = "10.30.0.0/24" }

[[vpn.profiles]]
name = "x"
settings = { pool = "10.0.0.1/8" }
"""

SEEDS: dict[str, list[bytes]] = {
    "anyconnect_xml": [INIT, REPLY, CODE, LOGOUT, BOMB, b"<config-auth type='init'/>"],
    "cstp": [
        b"\x07" + cstp(0, IPV4) + cstp(3, b"dpd") + cstp(7) + cstp(4) + cstp(0, IPV4) + cstp(5, b"\xb0bye"),
        b"\x00" + cstp(0, IPV4) * 3 + cstp(5, b"\x91reconnecting"),
        b"\x02" + cstp(0, bytes(1500)) + cstp(9),
    ],
    "ppp_framing": [bring_up(True), bring_up(False), struct.pack(">HHH", 9, 0x5050, 3) + b"\x21ab"],
    "ppp_link": [b"\x00" + bring_up(True), b"\x06" + bring_up(False), b"\x01" + bring_up(True)],
    "fortinet_login": [FORTI_LOGIN, b"magic=1-abcdef&code=123456+trust&ajax=1", b"magic=1-ab&code=sms", b"code=+call+"],
    "csv_rows": [
        b"\x00" + ROSTER,
        b"\x01" + TRAINING,
        b"\x00" + EXCEL,
        b'\x01username,completed_on\n"a\nb",2026-01-01\n',
    ],
    "imports": [b"\x00" + ROSTER, b"\x01" + TRAINING, b"\x00" + EXCEL],
    "config_loader": [CONFIG, b"[gateway]\nlisten = 443\n", b"[vpn\n", b"[nope]\nx=1\n"],
    "http_request": [
        b"\xff" + HTTP_INIT,
        b"\x07" + HTTP_CONNECT,
        b"\x20" + HTTP_FORTI,
        b"\xff" + HTTP_BROWSER,
        b"\xff" + HTTP_SMUGGLE,
        b"\x03" + HTTP_BIG,
    ],
}


def write() -> None:
    for target, seeds in SEEDS.items():
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            (folder / hashlib.sha1(seed, usedforsecurity=False).hexdigest()).write_bytes(seed)  # libFuzzer's naming


if __name__ == "__main__":
    write()
