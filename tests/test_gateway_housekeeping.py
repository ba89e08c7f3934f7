"""The gateway ends live tunnels when the policy changes under them, on time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from tests.conftest import add_user, make_config

from campusvpn.cli.setup import write_self_signed
from campusvpn.gateway.server import Gateway, _ip4
from campusvpn.gateway.tunnel import Tunnel
from campusvpn.platform.clock import FixedClock
from campusvpn.service import mfa, phones, sessions
from campusvpn.service.context import open_context
from campusvpn.store.models import VpnSession

JST = ZoneInfo("Asia/Tokyo")


class FakeWriter:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


def test_training_deadline_passing_ends_a_live_tunnel_within_seconds(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2026, 9, 1, 9, 0, tzinfo=JST))
    ctx = open_context(make_config(tmp_path), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    add_user(ctx, "1234567890", "staff", trained_on=None)  # staff deadline: 09-30
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    clock.set(datetime(2026, 9, 30, 23, 59, 57, tzinfo=JST))  # three seconds before the deadline passes
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="192.0.2.1", client="t"
        )
    gw = Gateway(ctx, tun_fd=None)
    answer = gw._connect_session(opened.token, "192.0.2.1")
    assert not isinstance(answer, bytes)
    row, response = answer
    assert response.startswith(b"HTTP/1.1 200 CONNECTED")
    assert gw._next_policy_at == datetime(2026, 10, 1, 0, 0, tzinfo=JST)  # brought forward from +60 s
    writer: Any = FakeWriter()
    t = Tunnel(row.public_id, row.username, row.user_id, row.address, _ip4(row.address), writer, row.expires_at)
    gw.tunnels[t.session_id] = t

    assert gw._housekeeping_db() == []  # one housekeeping round a second
    clock.advance(timedelta(seconds=3))
    gw._housekeeping_db()  # the re-check ends the session...
    clock.advance(timedelta(seconds=1))
    [(sid, reason)] = gw._housekeeping_db()  # ...and the next round closes its tunnel: 1-2 s after the deadline
    assert sid == t.session_id
    assert "information-security training" in reason

    async def close_on_the_loop() -> None:  # as the gateway does: closing schedules its database write
        gw._close(t, reason, end=True)

    asyncio.run(close_on_the_loop())
    assert writer.closed and b"information-security training" in writer.sent[-1]
    assert sessions.listing(ctx) == []


def test_a_mass_disconnect_is_written_in_a_few_transactions(tmp_path: Path, monkeypatch: Any) -> None:
    clock = FixedClock(datetime(2026, 9, 1, 9, 0, tzinfo=JST))
    ctx = open_context(make_config(tmp_path, "[gateway]\nmax_sessions_per_user = 100\n"), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    add_user(ctx, "1234567890", "staff")
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    clock.advance(timedelta(minutes=41))  # past the MFA activation delay
    gw = Gateway(ctx, tun_fd=None)
    tunnels = []
    for _ in range(60):
        with ctx.tx() as s:
            opened = sessions.open_session(
                ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="192.0.2.1", client="t"
            )
        answer = gw._connect_session(opened.token, "192.0.2.1")
        assert not isinstance(answer, bytes)
        row, _ = answer
        writer: Any = FakeWriter()
        t = Tunnel(row.public_id, row.username, row.user_id, row.address, _ip4(row.address), writer, row.expires_at)
        t.bytes_in = 1000
        gw.tunnels[t.session_id] = t
        tunnels.append(t)
    assert all(s["connected"] for s in sessions.listing(ctx))
    calls: list[int] = []
    real = sessions.mark_many

    def counting(ctx_: Any, marks: list[sessions.Mark], *, node: str | None) -> None:
        calls.append(len(marks))
        real(ctx_, marks, node=node)

    monkeypatch.setattr(sessions, "mark_many", counting)

    async def everyone_drops() -> None:
        for t in tunnels:  # e.g. the campus uplink flapped: every connection drops at once
            gw._detach(t, "connection closed")
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not gw._marks_writing:
                break

    asyncio.run(everyone_drops())
    assert sum(calls) == 60 and len(calls) <= 3  # not 60 transactions queueing for the database lock
    listed = sessions.listing(ctx)
    assert len(listed) == 60 and not any(s["connected"] for s in listed)
    assert all(s["bytes_in"] == 1000 for s in listed)


def test_traffic_of_a_session_ended_elsewhere_is_counted_without_reviving_it(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2026, 9, 1, 9, 0, tzinfo=JST))
    ctx = open_context(make_config(tmp_path), clock)
    add_user(ctx, "1234567890", "staff")
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="192.0.2.1", client="t"
        )
    sessions.mark(ctx, opened.session.public_id, connected=True, node="gw1")
    with ctx.tx() as s:  # the admin ends it while its tunnel still passes traffic on the gateway
        row = s.scalars(select(VpnSession).where(VpnSession.public_id == opened.session.public_id)).one()
        sessions.end(ctx, s, row, "ended by admin", actor="admin")
    sessions.mark(ctx, opened.session.public_id, connected=True, node="gw1", bytes_in=500)  # the flush
    with ctx.tx() as s:
        row = s.scalars(select(VpnSession).where(VpnSession.public_id == opened.session.public_id)).one()
        assert row.ended_at is not None and not row.connected and row.bytes_in == 500
