"""The Fortinet site over a real loopback TLS connection: the exact bytes the open clients parse."""

from __future__ import annotations

import asyncio
import re
import ssl
import struct
from pathlib import Path

import pyotp
from tests.conftest import PASSWORD, add_user, make_config
from tests.helpers import enrol_totp, sent_code

from campusvpn.app.serve import build
from campusvpn.cli.setup import write_self_signed
from campusvpn.fortinet.connection import CONF_REQ
from campusvpn.fortinet.login import FortiLogin
from campusvpn.platform.clock import FixedClock
from campusvpn.service import sessions
from campusvpn.service.context import Context, open_context
from campusvpn.service.sender import read_outbox

SETTINGS = """
[vpn]
dns = ["10.20.0.53", "10.20.0.54"]
wins = ["10.20.0.61", "10.20.0.62"]
domain = "inst.example.org"
split_include = ["10.20.0.0/16", "192.0.2.44/32"]
split_exclude = ["10.20.99.0/24"]
"""


class Client:
    """One TLS connection speaking HTTP/1.1 the way openfortivpn does (reads by Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(
        self, method: str, path: str, *, cookie: str = "", body: str = ""
    ) -> tuple[bytes, dict[str, list[str]], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: sslvpn\r\nUser-Agent: Mozilla/5.0 SV1\r\nCookie: {cookie}\r\n"
        if body:
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n" + body).encode())
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status, *lines = raw.decode().split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            if line:
                k, v = line.split(": ", 1)  # one space after the colon: openfortivpn expects it
                headers.setdefault(k.lower(), []).append(v)
        data = await self.reader.readexactly(int(headers["content-length"][0]))
        return status.encode(), headers, data


async def connect(port: int) -> Client:
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    return Client(*await asyncio.open_connection("127.0.0.1", port, ssl=tls))


def setup(tmp_path: Path, clock: FixedClock) -> tuple[Context, str]:
    ctx = open_context(make_config(tmp_path, SETTINGS), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    return ctx, secret


def test_login_challenge_settings_tunnel_and_logout(tmp_path: Path, clock: FixedClock) -> None:
    ctx, secret = setup(tmp_path, clock)

    async def run() -> None:
        gw = build(ctx, tun_fd=None)
        await gw.start("127.0.0.1", 0)
        assert gw.front.server is not None
        port = gw.front.server.sockets[0].getsockname()[1]
        try:
            c = await connect(port)
            status, headers, body = await c.request("GET", "/")
            assert status == b"HTTP/1.1 200 OK" and b"/remote/logincheck" in body

            status, headers, body = await c.request(
                "POST", "/remote/logincheck", body=f"username=1234567890&credential={PASSWORD}&realm=&ajax=1"
            )
            assert status == b"HTTP/1.1 200 OK" and "set-cookie" not in headers
            text = body.decode()
            assert text.startswith("ret=2,") and ",tokeninfo=," in text
            fields = dict(kv.split("=", 1) for kv in text.split(",") if "=" in kv)
            assert len(fields["magic"]) < 32 and "chal_msg" in fields

            code = pyotp.TOTP(secret).at(clock.now())
            status, headers, body = await c.request(
                "POST",
                "/remote/logincheck",
                body=f"username=1234567890&code={code}&realm=&code2=&reqid={fields['reqid']}&magic={fields['magic']}",
            )
            assert status == b"HTTP/1.1 200 OK", body
            assert body == b"ret=1,redir=/remote/fortisslvpn_xml"
            first_cookie = headers["set-cookie"][0]
            assert first_cookie.startswith("SVPNCOOKIE=") and first_cookie.endswith("; path=/; secure; httponly")
            token = first_cookie.split(";")[0].split("=", 1)[1]
            assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", token)
            cookie = f"SVPNCOOKIE={token}"

            for path in ("/remote/index", "/remote/fortisslvpn"):
                assert (await c.request("GET", path, cookie=cookie))[0] == b"HTTP/1.1 200 OK"
                assert (await c.request("GET", path, cookie="SVPNCOOKIE=forged"))[0] == b"HTTP/1.1 403 Forbidden"

            # openfortivpn: a new connection for the settings, then the tunnel request on that one.
            t = await connect(port)
            status, headers, xml = await t.request("GET", "/remote/fortisslvpn_xml", cookie=cookie)
            assert status == b"HTTP/1.1 200 OK" and headers["content-type"] == ["text/xml"]
            [address] = re.findall(rb"<assigned-addr ipv4='([0-9.]+)' />", xml)
            assert b"<dns ip='10.20.0.53' domain='inst.example.org' /><dns ip='10.20.0.54' />" in xml
            assert b"<wins ip='10.20.0.61' /><wins ip='10.20.0.62' />" in xml
            include = xml.index(b"<split-tunnel-info>")
            exclude = xml.index(b"<split-tunnel-info negate='1'>")
            assert include < exclude  # openfortivpn reads only the first block, as includes
            assert b"<addr ip='10.20.0.0' mask='255.255.0.0' /><addr ip='192.0.2.44' mask='255.255.255.255' />" in xml
            assert b"<addr ip='10.20.99.0' mask='255.255.255.0' />" in xml
            assert b"dtls='0'" in xml and b"tun-connect-without-reauth='1'" in xml
            assert b"/'" not in xml and b"'/" not in xml  # no slash inside a value (openfortivpn's scanner)

            t.writer.write(f"GET /remote/sslvpn-tunnel HTTP/1.1\r\nHost: sslvpn\r\nCookie: {cookie}\r\n\r\n".encode())
            head = await asyncio.wait_for(t.reader.readexactly(6), 5)  # no HTTP answer: PPP at once
            total, magic, size = struct.unpack(">HHH", head)
            assert magic == 0x5050 and total == size + 6
            frame = await t.reader.readexactly(size)
            assert frame[:2] == b"\xc0\x21" and frame[2] == CONF_REQ
            live = sessions.listing(ctx)
            assert live[0]["connected"] and live[0]["address"] == address.decode()

            # A second tunnel request without a valid cookie: 403, and the first tunnel goes on.
            x = await connect(port)
            status, _, body = await x.request("GET", "/remote/sslvpn-tunnel", cookie="SVPNCOOKIE=forged")
            assert status == b"HTTP/1.1 403 Forbidden" and b"sslvpn_login_permission_denied" in body

            # Garbage on the tunnel: the connection closes, the gateway does not.
            t.writer.write(b"\x00\x10\x51\x51" + bytes(12))
            assert await asyncio.wait_for(t.reader.read(), 5) == b""

            out = await connect(port)
            status, headers, _ = await out.request("GET", "/remote/logout", cookie=cookie)
            assert status == b"HTTP/1.1 200 OK" and headers["set-cookie"][0].startswith("SVPNCOOKIE=;")
            assert sessions.listing(ctx) == []
            status, _, _ = await out.request("GET", "/remote/fortisslvpn_xml", cookie=cookie)
            assert status == b"HTTP/1.1 403 Forbidden"
            for w in (c, t, x, out):
                w.writer.close()
        finally:
            await gw.stop()

    asyncio.run(run())


def test_wrong_password_is_405_and_realms_redirect(tmp_path: Path, clock: FixedClock) -> None:
    profiles = '\n[[vpn.profiles]]\nname = "staff"\n\n[[vpn.profiles]]\nname = "students"\n'
    ctx = open_context(make_config(tmp_path, profiles), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    add_user(ctx)

    async def run() -> None:
        gw = build(ctx, tun_fd=None)
        await gw.start("127.0.0.1", 0)
        assert gw.front.server is not None
        port = gw.front.server.sockets[0].getsockname()[1]
        try:
            c = await connect(port)
            status, headers, _ = await c.request("GET", "/Students")
            assert status == b"HTTP/1.1 302 Found" and headers["location"] == ["/remote/login?realm=students"]
            status, headers, body = await c.request(
                "POST", "/remote/logincheck", body="username=1234567890&credential=nope&realm=students&ajax=1"
            )
            assert status == b"HTTP/1.1 405 Method Not Allowed" and body.startswith(b"ret=0,")
            assert headers["set-cookie"][0].startswith("SVPNCOOKIE=;")
            # Two groups and no realm: the answer says how to choose, in the prompt openconnect shows.
            status, _, body = await c.request(
                "POST", "/remote/logincheck", body=f"username=1234567890&credential={PASSWORD}&realm=&ajax=1"
            )
            assert status == b"HTTP/1.1 200 OK" and b"Choose a group: connect to https://" in body  # both languages: nobody is named yet
            c.writer.close()
        finally:
            await gw.stop()

    asyncio.run(run())


def test_dialogue_sms_then_code_with_trust_and_refusals(tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_context(make_config(tmp_path), clock)
    add_user(ctx)
    from campusvpn.service import mfa, phones

    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    clock.advance(ctx.config.mfa.activation_delay)
    lg = FortiLogin(ctx, source="192.0.2.7", user_agent="Mozilla/5.0 SV1")
    first = lg.password("1234567890", PASSWORD)
    assert first.status == 200 and "Type sms or call" in first.body and not first.finished
    sent = lg.code("sms")
    assert "sent a code by text message" in sent.body and sent.body.count(",") == first.body.count(",")
    code = sent_code(read_outbox(ctx.config.path(ctx.config.sender.outbox))[-1]["text"])
    done = lg.code(f"{code} trust")
    assert done.token and done.device_token and done.outcome == "ok"
    # After a refusal every answer gets the same reason (openconnect's code generator then gives up).
    lg2 = FortiLogin(ctx, source="192.0.2.7", user_agent="Mozilla/5.0 SV1")
    lg2.refuse("Your account has been closed, so it cannot use the VPN.")
    again = lg2.code("123456")
    assert again.status == 200 and again.body.endswith(
        "chal_msg=Your account has been closed; so it cannot use the VPN."
    )
