"""The gateway ends live tunnels when the policy changes under them, on time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from tests.conftest import add_user, make_config

from campusvpn.platform.clock import FixedClock
from campusvpn.service import live_sessions, mfa, phones, sessions
from campusvpn.service.context import Context, open_context
from campusvpn.store.models import User, VpnSession
from campusvpn.tunnels.enforcement import Enforcer
from campusvpn.tunnels.hub import Hub
from campusvpn.tunnels.tunnel import SessionInfo, Tunnel

JST = ZoneInfo("Asia/Tokyo")


class FakeChannel:
    """The hub's side of a channel: what a protocol would have sent, and whether it closed."""

    def __init__(self) -> None:
        self.closed_with: str | None = None
        self.dropped = False
        self.ready = True

    def send_packets(self, packets: Any) -> None:
        pass

    def send_keepalive(self) -> None:
        pass

    def close(self, reason: str) -> None:
        self.closed_with = reason

    def drop(self) -> None:
        self.dropped = True


def _attach(ctx: Context, hub: Hub, enforcer: Enforcer) -> tuple[Tunnel, FakeChannel]:
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="192.0.2.1", client="t"
        )
    attached = live_sessions.attach(ctx, opened.token, hub.node)
    assert isinstance(attached, live_sessions.Attached)
    enforcer.review_at(attached.next_review)
    channel = FakeChannel()
    info = SessionInfo(
        attached.session_id,
        attached.username,
        attached.user_id,
        attached.address,
        attached.expires_at,
        "anyconnect",
        attached.language,
    )
    return hub.attach(info, channel), channel


def _staff_with_phone(tmp_path: Path, extra: str = "", trained: bool = False) -> tuple[Context, FixedClock]:
    clock = FixedClock(datetime(2026, 9, 1, 9, 0, tzinfo=JST))
    ctx = open_context(make_config(tmp_path, extra), clock)
    add_user(ctx, "1234567890", "staff", **({} if trained else {"trained_on": None}))  # staff deadline: 09-30
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    return ctx, clock


def test_training_deadline_passing_ends_a_live_tunnel_within_seconds(tmp_path: Path) -> None:
    ctx, clock = _staff_with_phone(tmp_path)
    clock.set(datetime(2026, 9, 30, 23, 59, 57, tzinfo=JST))  # three seconds before the deadline passes

    async def run() -> None:
        hub = Hub(ctx, tun_fd=None, node="gw1")
        enforcer = Enforcer(ctx, hub)
        t, channel = _attach(ctx, hub, enforcer)
        assert enforcer.next_policy_at == datetime(2026, 10, 1, 0, 0, tzinfo=JST)  # brought forward from +60 s
        closed_at = None
        for _ in range(6):  # one housekeeping round a second, the clock moving with them
            enforcer.apply(enforcer.check_store(*hub.snapshot()))
            if closed_at is None and channel.closed_with is not None:
                closed_at = clock.now()
            clock.advance(timedelta(seconds=1))
        assert closed_at is not None and closed_at - datetime(2026, 10, 1, 0, 0, tzinfo=JST) <= timedelta(seconds=2)
        assert channel.closed_with is not None and "information-security training" in channel.closed_with
        assert t.session_id not in hub.tunnels
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not hub.marks.writing:
                break

    asyncio.run(run())
    assert sessions.listing(ctx) == []


def test_a_failed_policy_sweep_is_retried_not_skipped(tmp_path: Path, monkeypatch: Any) -> None:
    ctx, clock = _staff_with_phone(tmp_path, trained=True)
    clock.advance(timedelta(minutes=41))  # past the MFA activation delay

    def broken(_ctx: Any, _users: Any) -> Any:
        raise OSError("database is locked")

    async def run() -> None:
        hub = Hub(ctx, tun_fd=None, node="gw1")
        enforcer = Enforcer(ctx, hub)
        _attach(ctx, hub, enforcer)
        due = enforcer.next_policy_at
        clock.set(due)
        with monkeypatch.context() as m:
            m.setattr(live_sessions, "recheck", broken)
            await enforcer.round()
        assert enforcer.next_policy_at == due  # still due: the next round tries again
        await enforcer.round()
        assert enforcer.next_policy_at == due + ctx.config.gateway.policy_recheck

    asyncio.run(run())


def test_a_mass_disconnect_is_written_in_a_few_transactions(tmp_path: Path, monkeypatch: Any) -> None:
    ctx, clock = _staff_with_phone(tmp_path, "[gateway]\nmax_sessions_per_user = 100\n", trained=True)
    clock.advance(timedelta(minutes=41))  # past the MFA activation delay
    calls: list[int] = []
    real = live_sessions.mark_many

    def counting(ctx_: Any, marks: list[sessions.Mark], node: str) -> None:
        calls.append(len(marks))
        real(ctx_, marks, node)

    monkeypatch.setattr(live_sessions, "mark_many", counting)

    async def everyone_drops() -> None:
        hub = Hub(ctx, tun_fd=None, node="gw1")
        enforcer = Enforcer(ctx, hub)
        tunnels = []
        for _ in range(60):
            t, _channel = _attach(ctx, hub, enforcer)
            t.bytes_in = 1000
            tunnels.append(t)
        assert all(s["connected"] for s in sessions.listing(ctx))
        for t in tunnels:  # e.g. the campus uplink flapped: every connection drops at once
            hub.channel_ended(t, "connection closed", signed_off=False)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not hub.marks.writing:
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


def test_a_reconnect_during_a_storage_outage_is_told_to_retry_and_live_tunnels_keep_running(tmp_path: Path) -> None:
    import dataclasses

    import h11

    from campusvpn.anyconnect.site import AnyConnectSite
    from campusvpn.cli.setup import write_self_signed
    from campusvpn.frontdoor.http import Answer, Peer, Request
    from campusvpn.store import db

    ctx, clock = _staff_with_phone(tmp_path, trained=True)
    clock.advance(timedelta(minutes=41))
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="192.0.2.1", client="t"
        )
    # The same database, read-only (a full disk or a read-only file system: every write fails).
    ro_engine = db.make_engine(f"sqlite:///file:{ctx.engine.url.database}?mode=ro&uri=true")
    outage = dataclasses.replace(ctx, engine=ro_engine, sessions=db.session_factory(ro_engine))

    async def run() -> None:
        hub = Hub(outage, tun_fd=None, node="gw1")
        enforcer = Enforcer(outage, hub)
        t, channel = _attach(ctx, hub, enforcer)  # connected before the outage
        site = AnyConnectSite(outage, hub, claim_everything=False)
        raw = h11.Request(
            method="CONNECT", target="/CSCOSSLC/tunnel", headers=[("Host", "x"), ("Cookie", f"webvpn={opened.token}")]
        )
        answer = await site.respond(Request.of(raw), b"", h11.Connection(h11.SERVER), Peer("192.0.2.1", None, None))
        assert isinstance(answer, Answer) and answer.close
        assert answer.data.startswith(b"HTTP/1.1 503 ") and b"temporarily unavailable" in answer.data
        await enforcer.round()  # housekeeping during the outage
        assert hub.is_live(t) and channel.closed_with is None

    asyncio.run(run())


def _with_language(ctx: Context, language: str | None) -> None:
    """The person's stored language, once their MFA is active (they may connect)."""
    assert isinstance(ctx.clock, FixedClock)
    ctx.clock.advance(timedelta(minutes=41))
    with ctx.tx() as s:
        s.scalars(select(User).where(User.username == "1234567890")).one().language = language


async def _settled(hub: Hub) -> None:
    for _ in range(200):  # the session's end is written from a worker thread
        await asyncio.sleep(0.01)
        if not hub.marks.writing:
            break


@pytest.mark.parametrize("language", ["ja", None])
def test_the_hubs_own_closes_are_told_in_the_persons_language(tmp_path: Path, language: str | None) -> None:
    ctx, clock = _staff_with_phone(tmp_path, trained=True)
    _with_language(ctx, language)

    async def run() -> tuple[str | None, str | None]:
        hub = Hub(ctx, tun_fd=None, node="gw1")
        enforcer = Enforcer(ctx, hub)
        t, idle = _attach(ctx, hub, enforcer)
        t.last_data -= 120
        hub.check_timers(idle_timeout=60, dead_after=1e9)
        await _settled(hub)
        t, late = _attach(ctx, hub, enforcer)
        clock.set(t.expires_at)
        hub.check_timers(idle_timeout=1e9, dead_after=1e9)
        await _settled(hub)
        return idle.closed_with, late.closed_with

    idle, late = asyncio.run(run())
    idle_ja, late_ja = (
        "一定時間通信がなかったため、接続を切断しました。",
        "接続時間の上限に達しました。もう一度サインインしてください。",
    )
    idle_en, late_en = "Idle timeout: the connection was unused for too long.", "Max time exceeded: sign in again."
    if language == "ja":
        assert (idle, late) == (idle_ja, late_ja)
    else:  # never chosen: both languages, the configured default (Japanese) first
        assert (idle, late) == (f"{idle_ja} / {idle_en}", f"{late_ja} / {late_en}")
    ended = sessions.listing(ctx, live_only=False)
    assert [r["end_reason"] for r in ended] == [idle_en, late_en]  # the listing reads the stored codes


def test_an_administrators_kill_reaches_the_client_in_japanese_with_their_words(tmp_path: Path) -> None:
    ctx, _clock = _staff_with_phone(tmp_path, trained=True)
    _with_language(ctx, "ja")

    async def run() -> FakeChannel:
        hub = Hub(ctx, tun_fd=None, node="gw1")
        enforcer = Enforcer(ctx, hub)
        t, channel = _attach(ctx, hub, enforcer)
        sessions.kill(ctx, session_id=t.session_id, actor="admin", reason="不審な通信の調査のため")
        enforcer.apply(enforcer.check_store(*hub.snapshot()))
        await _settled(hub)
        return channel

    channel = asyncio.run(run())
    assert channel.closed_with == "管理者がセッションを終了しました（理由: 不審な通信の調査のため）。"
    (row,) = sessions.listing(ctx, live_only=False)
    assert row["end_reason"] == "The session was ended by an administrator: 不審な通信の調査のため"
    assert row["end_reason_ja"] == channel.closed_with


def test_an_end_reason_stored_as_plain_text_still_reaches_the_client(tmp_path: Path) -> None:
    ctx, _clock = _staff_with_phone(tmp_path, trained=True)
    _with_language(ctx, None)

    async def run() -> FakeChannel:
        hub = Hub(ctx, tun_fd=None, node="gw1")
        enforcer = Enforcer(ctx, hub)
        t, channel = _attach(ctx, hub, enforcer)
        sessions.kill(ctx, session_id=t.session_id, actor="admin")
        with ctx.tx() as s:  # a row written before end reasons were messages
            s.scalars(select(VpnSession)).one().end_reason = "Administrative reset"
        enforcer.apply(enforcer.check_store(*hub.snapshot()))
        await _settled(hub)
        return channel

    channel = asyncio.run(run())
    assert channel.closed_with == "Administrative reset"
    assert sessions.listing(ctx, live_only=False)[0]["end_reason"] == "Administrative reset"
