"""The gateway's answer to CONNECT, over a real loopback TLS connection."""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.conftest import add_user, make_config

from campusvpn.anyconnect import cstp
from campusvpn.anyconnect.cstp import FrameType
from campusvpn.app.serve import build
from campusvpn.cli.setup import write_self_signed
from campusvpn.platform.clock import FixedClock
from campusvpn.service import mfa, phones, sessions
from campusvpn.service.context import open_context

JST = ZoneInfo("Asia/Tokyo")


def test_a_keepalive_follows_the_connect_answer_so_openconnect_sets_up_its_tunnel_at_once(tmp_path: Path) -> None:
    # openconnect without DTLS sleeps up to a second before its tunnel device comes up unless a frame
    # arrives; the gateway sends one unasked right after the answer (keepalives otherwise only come
    # from the client, and the first DPD is many seconds away).
    clock = FixedClock(datetime(2026, 9, 1, 9, 0, tzinfo=JST))
    ctx = open_context(make_config(tmp_path), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    add_user(ctx, "1234567890", "staff")
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    clock.advance(timedelta(hours=1))
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="127.0.0.1", client="t"
        )

    async def run() -> bytes:
        gw = build(ctx, tun_fd=None)
        await gw.start("127.0.0.1", 0)
        assert gw.front.server is not None
        port = gw.front.server.sockets[0].getsockname()[1]
        client = ssl.create_default_context()
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        try:
            writer.write(
                f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: x\r\nCookie: webvpn={opened.token}\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 CONNECTED"), head
            return await asyncio.wait_for(reader.readexactly(8), 2)
        finally:
            writer.close()
            await gw.stop()

    assert asyncio.run(run()) == cstp.encode(FrameType.KEEPALIVE)
