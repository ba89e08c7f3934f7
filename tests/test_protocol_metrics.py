"""Prometheus series labelled by protocol: one AnyConnect and one Fortinet sign-in and tunnel over
loopback TLS, read back from the registry the metrics port serves."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import pyotp
from prometheus_client import REGISTRY, generate_latest
from tests.conftest import PASSWORD, add_user, make_config
from tests.helpers import enrol_totp

from campusvpn.app.serve import build
from campusvpn.cli.setup import write_self_signed
from campusvpn.platform.clock import FixedClock
from campusvpn.service import sessions
from campusvpn.service.context import open_context

AC_USER, FN_USER = "1234567890", "2234567890"


class Http:
    """One keep-alive TLS connection; answers are read by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Http:
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        return cls(*await asyncio.open_connection("127.0.0.1", port, ssl=tls))

    def send(self, method: str, path: str, headers: dict[str, str], body: str = "") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: vpn\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body:
            head += f"Content-Length: {len(body.encode())}\r\n"
        self.writer.write((head + "\r\n" + body).encode())

    async def head(self) -> str:
        return (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)).decode()

    async def request(self, method: str, path: str, headers: dict[str, str], body: str = "") -> tuple[str, str]:
        self.send(method, path, headers, body)
        head = await self.head()
        length = re.search(r"(?im)^content-length: (\d+)", head)
        data = await self.reader.readexactly(int(length.group(1))) if length else b""
        return head, data.decode()


AC = {"User-Agent": "Open AnyConnect VPN Agent v9.01", "X-Aggregate-Auth": "1", "Content-Type": "application/xml"}
FN = {"User-Agent": "Mozilla/5.0 SV1", "Content-Type": "application/x-www-form-urlencoded"}


def _xml(kind: str, auth: str = "") -> str:
    return f'<?xml version="1.0"?><config-auth client="vpn" type="{kind}"><auth>{auth}</auth></config-auth>'


async def _anyconnect(port: int, code: str) -> Http:
    c = await Http.open(port)
    _, form = await c.request("POST", "/", AC, _xml("init"))
    assert 'name="password"' in form
    _, form = await c.request(
        "POST", "/", AC, _xml("auth-reply", f"<username>{AC_USER}</username><password>{PASSWORD}</password>")
    )
    assert 'name="secondary_password"' in form
    _, done = await c.request("POST", "/", AC, _xml("auth-reply", f"<secondary_password>{code}</secondary_password>"))
    token = re.search(r"<session-token>([^<]+)</session-token>", done)
    assert token, done
    c.send("CONNECT", "/CSCOSSLC/tunnel", {"Cookie": f"webvpn={token.group(1)}"})
    assert (await c.head()).startswith("HTTP/1.1 200 CONNECTED")
    return c


async def _fortinet(port: int, code: str) -> Http:
    c = await Http.open(port)
    _, challenge = await c.request(
        "POST", "/remote/logincheck", FN, f"username={FN_USER}&credential={PASSWORD}&realm=&ajax=1"
    )
    fields = dict(kv.split("=", 1) for kv in challenge.split(",") if "=" in kv)
    head, _ = await c.request(
        "POST",
        "/remote/logincheck",
        FN,
        f"username={FN_USER}&code={code}&reqid={fields['reqid']}&magic={fields['magic']}",
    )
    cookie = re.search(r"(?im)^set-cookie: (SVPNCOOKIE=[^;]+);", head)
    assert cookie, head
    t = await Http.open(port)
    t.send("GET", "/remote/sslvpn-tunnel", {"Cookie": cookie.group(1)})
    assert (await asyncio.wait_for(t.reader.readexactly(6), 5))[2:4] == b"\x50\x50"  # PPP framing at once
    return t


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_logins_and_tunnels_are_counted_by_protocol(tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_context(make_config(tmp_path), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    secrets = {}
    for name in (AC_USER, FN_USER):
        add_user(ctx, name)
        secrets[name], _ = enrol_totp(ctx, clock, name)
    before = {p: _value("campusvpn_logins_total", protocol=p, outcome="ok") for p in ("anyconnect", "fortinet")}

    async def run() -> str:
        gw = build(ctx, tun_fd=None)
        await gw.start("127.0.0.1", 0)
        assert gw.front.server is not None
        port = gw.front.server.sockets[0].getsockname()[1]
        at_start = generate_latest(REGISTRY).decode()
        for protocol in ("anyconnect", "fortinet"):  # every protocol's series, before anyone signs in
            assert f'campusvpn_logins_total{{outcome="refused",protocol="{protocol}"}}' in at_start
            # (present; its value may be left over from another gateway built earlier in this process)
            assert f'campusvpn_tunnels{{protocol="{protocol}"}} ' in at_start
        try:
            ac = await _anyconnect(port, pyotp.TOTP(secrets[AC_USER]).at(clock.now()))
            fn = await _fortinet(port, pyotp.TOTP(secrets[FN_USER]).at(clock.now()))
            served = generate_latest(REGISTRY).decode()  # what /metrics answers
            ac.writer.close()
            fn.writer.close()
            return served
        finally:
            await gw.stop()

    served = asyncio.run(run())
    for protocol in ("anyconnect", "fortinet"):
        assert _value("campusvpn_logins_total", protocol=protocol, outcome="ok") == before[protocol] + 1
        assert f'campusvpn_logins_total{{outcome="ok",protocol="{protocol}"}}' in served
        assert f'campusvpn_tunnels{{protocol="{protocol}"}} 1.0' in served
    assert {r["user"]: r["protocol"] for r in sessions.listing(ctx)} == {AC_USER: "anyconnect", FN_USER: "fortinet"}
    # Stopping the gateway detaches both tunnels: each protocol's gauge goes back to zero.
    assert _value("campusvpn_tunnels", protocol="anyconnect") == _value("campusvpn_tunnels", protocol="fortinet") == 0
