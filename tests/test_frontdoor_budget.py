"""The front door's connection budget and time limits, over real loopback TLS connections."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.conftest import add_user, make_config

from campusvpn.app.serve import Gateway, build
from campusvpn.cli.setup import write_self_signed
from campusvpn.frontdoor.budget import Budget
from campusvpn.platform.clock import FixedClock
from campusvpn.service import live_sessions, mfa, phones, sessions
from campusvpn.service.context import Context, open_context

JST = ZoneInfo("Asia/Tokyo")
LIMITS = """
[gateway]
max_pending = 4
pending_reserved = 2
max_pending_per_address = 3
header_timeout = "1s"
keepalive_timeout = "1s"
handshake_timeout = "1s"
min_receive_rate = 1000
"""


def test_the_budget_counts_per_address_and_keeps_a_reserve() -> None:
    b = Budget(open_share=3, reserved=1, per_address=2)
    a1, a2 = b.admit("192.0.2.1"), b.admit("192.0.2.1")
    assert a1 and a2 and b.admit("192.0.2.1") is None  # the third from one address
    c1, c2 = b.admit("192.0.2.2"), b.admit("192.0.2.3")
    assert c1 and c2 and b.in_reserve  # four pending, three open: only live sessions now
    assert b.admit("192.0.2.4") is None  # the reserve is full too
    a1.release()
    a1.release()  # released once only
    assert b.pending == 3 and not b.in_reserve and b.by_address["192.0.2.1"] == 1


def _context(tmp_path: Path) -> Context:
    clock = FixedClock(datetime(2026, 9, 1, 9, 0, tzinfo=JST))
    ctx = open_context(make_config(tmp_path, LIMITS), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    return ctx


def _client_tls() -> ssl.SSLContext:
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    return client


def _run(ctx: Context, body: Callable[[Gateway, int], Awaitable[None]]) -> None:
    async def run() -> None:
        gw = build(ctx, tun_fd=None)
        await gw.start("127.0.0.1", 0)
        assert gw.front.server is not None
        try:
            await body(gw, gw.front.server.sockets[0].getsockname()[1])
        finally:
            await gw.stop()

    asyncio.run(run())


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closes the connection (reads until EOF)."""
    t0 = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), seconds):
        pass
    return time.monotonic() - t0


def test_one_address_cannot_hold_more_than_its_share(tmp_path: Path) -> None:
    async def body(gw: Gateway, port: int) -> None:
        held = [await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls()) for _ in range(3)]
        assert gw.front.budget.by_address["127.0.0.1"] == 3
        reader, _writer = await asyncio.open_connection("127.0.0.1", port)  # plain TCP: refused at accept
        assert await _closed_within(reader, 2) < 1
        for _r, w in held:
            w.close()

    _run(_context(tmp_path), body)


def test_a_client_trickling_its_headers_loses_the_connection_at_the_header_deadline(tmp_path: Path) -> None:
    async def body(gw: Gateway, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
        t0 = time.monotonic()
        closed = False
        for ch in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:  # one byte every 0.1 s: 6 s in all
            try:
                writer.write(bytes([ch]))
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            try:
                if await asyncio.wait_for(reader.read(100), 0.1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed and time.monotonic() - t0 < 2.5  # header_timeout is 1 s
        assert gw.front.budget.pending == 0

    _run(_context(tmp_path), body)


def test_an_idle_connection_is_closed_after_the_keepalive_timeout(tmp_path: Path) -> None:
    async def body(gw: Gateway, port: int) -> None:
        reader, _writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
        assert await _closed_within(reader, 5) < 2.5

    _run(_context(tmp_path), body)


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(tmp_path: Path) -> None:
    async def body(gw: Gateway, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Aggregate-Auth: 1\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 3)  # read to EOF: the server closes
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert answer.count(b"HTTP/1.1") == 1  # the smuggled request was never answered

    _run(_context(tmp_path), body)


def test_during_a_flood_a_live_session_still_connects_from_the_reserve(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    add_user(ctx, "1234567890", "staff")
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    assert isinstance(ctx.clock, FixedClock)
    ctx.clock.advance(timedelta(hours=1))
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="127.0.0.1", client="t"
        )
    assert live_sessions.is_resumable(ctx, opened.token)

    async def body(gw: Gateway, port: int) -> None:
        # Strangers on other loopback addresses fill the open share (4), then one more stands in the reserve.
        flood = []
        for i in range(5):
            s = socket.socket()
            s.bind((f"127.0.0.{10 + i}", 0))
            s.connect(("127.0.0.1", port))
            flood.append(await asyncio.open_connection(sock=s, ssl=_client_tls(), server_hostname="x"))
        assert gw.front.budget.in_reserve
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a stranger's page: not now
        assert (await asyncio.wait_for(reader.read(), 3)).startswith(b"HTTP/1.1 503 ")
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
        writer.write(f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: x\r\nCookie: webvpn={opened.token}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 CONNECTED")  # the user's tunnel comes back
        writer.close()
        for _r, w in flood:
            w.close()

    _run(ctx, body)
