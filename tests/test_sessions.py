"""VPN sessions: addresses, limits, resumption and the one place sessions end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.conftest import add_user

from campusvpn.core.addresses import allocate, gateway_address
from campusvpn.platform.clock import FixedClock
from campusvpn.service import accounts, mfa, sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict


def test_pool_hands_out_lowest_free_host_never_the_gateway() -> None:
    assert gateway_address("172.31.0.0/16") == "172.31.0.1"
    assert allocate("172.31.0.0/16", []) == "172.31.0.2"
    assert allocate("172.31.0.0/16", ["172.31.0.2"]) == "172.31.0.3"
    assert allocate("172.31.0.0/16", [], prefer="172.31.9.9") == "172.31.9.9"
    assert allocate("172.31.0.0/16", ["172.31.9.9"], prefer="172.31.9.9") == "172.31.0.2"
    assert allocate("172.31.0.0/16", [], prefer="10.0.0.1") == "172.31.0.2"  # outside the pool
    assert allocate("192.0.2.0/30", ["192.0.2.2"]) is None  # .1 gateway, .2 taken: full
    # Thousands live, with a gap: the lowest free one, across octet boundaries.
    taken = [f"172.31.{i // 256}.{i % 256}" for i in range(2, 12_000) if i != 9_000]
    assert allocate("172.31.0.0/16", taken) == "172.31.35.40"
    assert allocate("172.31.0.0/16", [*taken, "172.31.35.40", "not an address"]) == "172.31.46.224"


def _open(ctx: Context, name: str = "1234567890", pool: str = "172.31.0.0/16") -> sessions.Opened:
    with ctx.tx() as s:
        return sessions.open_session(
            ctx, s, ctx.user(s, name), profile=None, pool=pool, source="192.0.2.9", client="test"
        )


def test_a_session_resumes_by_cookie_and_keeps_its_address(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    opened = _open(ctx)
    with ctx.tx() as s:
        row = sessions.resumable(ctx, s, opened.token)
        assert row is not None and row.address == opened.session.address
        assert sessions.resumable(ctx, s, "not-a-token") is None


def test_a_detached_session_times_out(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    opened = _open(ctx)
    sessions.mark(ctx, opened.session.public_id, connected=False)
    clock.advance(ctx.config.gateway.disconnected_timeout + timedelta(seconds=1))
    with ctx.tx() as s:
        assert sessions.resumable(ctx, s, opened.token) is None
    assert sessions.listing(ctx) == []


def test_per_user_limit_says_what_to_do(ctx: Context) -> None:
    add_user(ctx)
    for _ in range(ctx.config.gateway.max_sessions_per_user):
        _open(ctx)
    with pytest.raises(Conflict, match="already have 3 VPN sessions open"):
        _open(ctx)


def test_a_full_pool_is_reported_not_crashed(ctx: Context) -> None:
    add_user(ctx)
    add_user(ctx, "2234567890")
    _open(ctx, pool="192.0.2.0/30")
    with pytest.raises(Conflict, match="No VPN address is free"):
        _open(ctx, "2234567890", pool="192.0.2.0/30")


@pytest.mark.parametrize("action", ["suspend", "revoke", "mfa_reset", "kill_user", "kill_id"])
def test_everything_that_ends_access_ends_the_sessions(ctx: Context, action: str) -> None:
    add_user(ctx)
    opened = _open(ctx)
    if action == "suspend":
        accounts.set_status(ctx, "1234567890", accounts.AccountStatus.SUSPENDED, actor="a", reason="audit")
    elif action == "revoke":
        accounts.set_status(ctx, "1234567890", accounts.AccountStatus.REVOKED, actor="a")
    elif action == "mfa_reset":
        mfa.reset(ctx, "1234567890", actor="a", reason="lost phone")
    elif action == "kill_user":
        assert sessions.kill(ctx, username="1234567890", actor="a") == 1
    else:
        assert sessions.kill(ctx, session_id=opened.session.public_id, actor="a") == 1
    with ctx.tx() as s:
        assert sessions.resumable(ctx, s, opened.token) is None
    [ended] = sessions.listing(ctx, live_only=False)
    assert ended["ended"] is not None and ended["end_reason"]
    if action in ("kill_user", "kill_id"):  # the address is free again, and the user gets it back
        assert _open(ctx, "1234567890").session.address == opened.session.address


def test_dead_detached_sessions_do_not_count_against_the_limit(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    stale = [_open(ctx) for _ in range(ctx.config.gateway.max_sessions_per_user)]
    for o in stale:  # laptops went to sleep: connections gone, no BYE
        sessions.mark(ctx, o.session.public_id, connected=False)
    clock.advance(ctx.config.gateway.disconnected_timeout + timedelta(seconds=1))
    fresh = _open(ctx)  # allowed: the dead ones are ended first, and their addresses freed
    assert fresh.session.address == stale[0].session.address
    ended = [r for r in sessions.listing(ctx, live_only=False) if r["ended"]]
    assert len(ended) == 3 and all(r["end_reason"] == "the disconnected session timed out" for r in ended)


def test_a_restarted_gateway_detaches_its_old_sessions_so_they_can_resume(ctx: Context) -> None:
    add_user(ctx)
    o = _open(ctx)
    sessions.mark(ctx, o.session.public_id, connected=True, node="gw1")
    assert sessions.detach_node(ctx, "gw2") == 0
    assert sessions.detach_node(ctx, "gw1") == 1
    with ctx.tx() as s:
        row = sessions.resumable(ctx, s, o.token)
        assert row is not None and not row.connected
