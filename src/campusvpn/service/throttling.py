"""Stored throttle counters, applying core.throttle's rule per user and per source."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from campusvpn.core import throttle
from campusvpn.core.throttle import Counter, ThrottleRule, Verdict
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.store.models import ThrottleCounter


def _load(s: Session, key: str) -> Counter:
    row = s.get(ThrottleCounter, key)
    if row is None:
        return Counter()
    return Counter(row.failures, row.last_failure, row.locked_until)


def _store(s: Session, key: str, c: Counter) -> None:
    row = s.get(ThrottleCounter, key)
    if c == Counter():
        if row is not None:
            s.delete(row)
        return
    if row is None:
        row = ThrottleCounter(key=key)
        s.add(row)
    row.failures, row.last_failure, row.locked_until = c.failures, c.last_failure, c.locked_until


def verdict(s: Session, key: str, now: datetime, rule: ThrottleRule) -> Verdict:
    return throttle.check(_load(s, key), now, rule)


def failed(s: Session, key: str, now: datetime, rule: ThrottleRule) -> Counter:
    c = throttle.record_failure(_load(s, key), now, rule)
    _store(s, key, c)
    return c


def succeeded(s: Session, key: str) -> None:
    _store(s, key, throttle.record_success())


def keys(step: str, username: str, source: str | None) -> tuple[str, str | None]:
    """(per-user key, per-source key) for a step: `password` or `second`."""
    return f"{step}:user:{username}", (f"{step}:src:{source}" if source else None)


def unlock(s: Session, username: str) -> int:
    """Clear a user's password and second-factor counters (help desk, after checking identity)."""
    rows = [s.get(ThrottleCounter, keys(step, username, None)[0]) for step in ("password", "second")]
    for row in rows:
        if row is not None:
            s.delete(row)
    return sum(1 for r in rows if r is not None)


def unlock_account(ctx: Context, username: str, *, actor: str) -> tuple[str, int]:
    """Lift a lock or back-off on the account (an administrator's act, audited): its name and how
    many counters were cleared."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        n = unlock(s, user.username)
        audit.record(s, ctx.clock.now(), "account.unlocked", actor=actor, subject=user.username, counters=n)
        return user.username, n
