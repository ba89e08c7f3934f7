"""Housekeeping of the hub: sessions ended elsewhere, the policy re-check, timers, traffic flushes.

Once a second the event loop takes a snapshot of the live tunnels and a worker thread asks the
database what changed for them; the answers come back to the loop, which closes tunnels. The policy
is asked again at the earliest time any connected user's decision says it may change (a training
deadline, an affiliation's last day), and at least every `policy_recheck` as a safety sweep. The
next re-check time moves forward only after a sweep succeeded, so a failed sweep is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from campusvpn.platform import logs
from campusvpn.service import live_sessions
from campusvpn.service.context import Context
from campusvpn.texts.codes import Code
from campusvpn.tunnels.hub import Hub

EXPIRY_EVERY = 10.0  # seconds between sweeps of sessions left disconnected too long
FLUSH_EVERY = 10.0  # seconds between traffic writes of busy tunnels


@dataclass
class RoundResult:
    ended: list[live_sessions.Ended] = field(default_factory=list)  # to close here
    taken_over: list[str] = field(default_factory=list)  # sessions whose client connected to another worker
    swept_at: datetime | None = None  # set when the policy re-check ran and succeeded
    next_review: datetime | None = None


class Enforcer:
    def __init__(self, ctx: Context, hub: Hub) -> None:
        self.ctx = ctx
        self.hub = hub
        now = ctx.clock.now()
        self.last_end_check = now - timedelta(seconds=5)
        self.next_policy_at = now + ctx.config.gateway.policy_recheck
        self._last_expiry = 0.0
        self._last_flush = time.monotonic()

    def review_at(self, when: datetime | None) -> None:
        """A decision says eligibility may change at `when`: re-check then, not a period later."""
        if when is not None:
            self.next_policy_at = min(self.next_policy_at, when)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.round()

    async def round(self) -> None:
        session_ids, user_ids = self.hub.snapshot()  # on the loop: threads never see live dictionaries
        try:
            result = await asyncio.to_thread(self.check_store, session_ids, user_ids)
        except Exception as exc:  # keep the gateway up; the next round retries
            logs.event("gateway.housekeeping_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            result = RoundResult()
        self.apply(result)
        g = self.ctx.config.gateway
        self.hub.check_timers(idle_timeout=g.idle_timeout.total_seconds(), dead_after=3 * g.dpd.total_seconds())
        if time.monotonic() - self._last_flush >= FLUSH_EVERY:
            self._last_flush = time.monotonic()
            self.hub.flush_traffic()

    def check_store(self, session_ids: frozenset[str], user_ids: frozenset[int]) -> RoundResult:
        """In a worker thread: what the database says about the snapshot's sessions and users."""
        now = self.ctx.clock.now()
        result = RoundResult(live_sessions.ended_since(self.ctx, self.last_end_check, session_ids))
        result.taken_over = live_sessions.taken_over(self.ctx, self.last_end_check, session_ids, self.hub.node)
        self.last_end_check = now
        if time.monotonic() - self._last_expiry >= EXPIRY_EVERY:
            self._last_expiry = time.monotonic()
            live_sessions.expire_stale(self.ctx)
        if now >= self.next_policy_at:
            recheck = live_sessions.recheck(self.ctx, user_ids)
            result.swept_at, result.next_review = now, recheck.next_review
        return result

    def apply(self, result: RoundResult) -> None:
        """On the loop: close what ended, and schedule the next policy re-check."""
        self.hub.close_sessions(result.ended)
        for sid in result.taken_over:
            t = self.hub.tunnels.get(sid)
            if t is not None:
                self.hub.close(
                    t, "session re-used by a new connection", end=False, told=self.hub.tell(t, Code.TUNNEL_REUSED)
                )
        if result.swept_at is not None:
            self.next_policy_at = result.swept_at + self.ctx.config.gateway.policy_recheck
            self.review_at(result.next_review)
