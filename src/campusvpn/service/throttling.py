"""Stored throttle counters, applying core.throttle's rules to one sign-in attempt.

An attempt is counted against the account's counter for its kind of client (known or unknown),
against the account as a whole (the NIST cap), and, for unknown clients only, against the
source address. See core.throttle and docs/security.md ("Throttling")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.core import throttle
from campusvpn.core.codes import token_digest
from campusvpn.core.throttle import Client, Counter, ThrottleRule, Verdict
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.store.models import AuditEvent, ThrottleCounter, TrustedDevice, User

STEPS = ("password", "second")
KINDS = ("user", "known", "account")  # unknown clients, known clients, the account as a whole


def _load(s: Session, key: str) -> Counter:
    return _counter(s.get(ThrottleCounter, key))


def _rows(s: Session, keys: list[str]) -> dict[str, ThrottleCounter]:
    """The stored counters among `keys`, in one query (an attempt is judged by up to three)."""
    return {r.key: r for r in s.scalars(select(ThrottleCounter).where(ThrottleCounter.key.in_(keys)))}


def _counter(row: ThrottleCounter | None) -> Counter:
    return Counter() if row is None else Counter(row.failures, row.last_failure, row.locked_until)


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


def client_of(s: Session, username: str, source: str | None, device_token: str | None, now: datetime) -> Client:
    """KNOWN when the attempt comes with a live trusted device of this account, or from an address
    where this account completed a sign-in within `KNOWN_ADDRESS_FOR`; UNKNOWN otherwise
    (including every attempt on a name that is no account)."""
    user_id = s.scalars(select(User.id).where(User.username == username)).one_or_none()
    if user_id is None:
        return Client.UNKNOWN
    if device_token:
        device = s.scalars(
            select(TrustedDevice.id).where(
                TrustedDevice.token_digest == token_digest(device_token),
                TrustedDevice.user_id == user_id,
                TrustedDevice.revoked_at.is_(None),
                TrustedDevice.expires_at > now,
            )
        ).first()
        if device is not None:
            return Client.KNOWN
    if source:
        # A completed sign-in is audited as signin.decision (both factors, or a trusted device).
        done = s.scalars(
            select(AuditEvent.id)
            .where(
                AuditEvent.subject == username,
                AuditEvent.event == "signin.decision",
                AuditEvent.source == source,
                AuditEvent.at > now - throttle.KNOWN_ADDRESS_FOR,
            )
            .limit(1)
        ).first()
        if done is not None:
            return Client.KNOWN
    return Client.UNKNOWN


@dataclass(frozen=True)
class Attempt:
    """One try at a step (`password` or `second`) by a client of an account."""

    step: str
    username: str
    source: str | None
    client: Client

    def counters(self) -> list[tuple[str, str]]:
        """(key, which rule) of every counter this attempt is judged and counted by."""
        mine = "user" if self.client is Client.UNKNOWN else "known"
        out = [(f"{self.step}:{mine}:{self.username}", "step"), (f"{self.step}:account:{self.username}", "account")]
        if self.client is Client.UNKNOWN and self.source:
            out.append((f"{self.step}:src:{self.source}", "source"))
        return out


def _rule(which: str, rule: ThrottleRule, source_rule: ThrottleRule) -> ThrottleRule:
    if which == "account":
        return throttle.account_rule(rule)
    return source_rule if which == "source" else rule


def blocked(
    s: Session, a: Attempt, now: datetime, rule: ThrottleRule, source_rule: ThrottleRule
) -> tuple[Verdict, ...]:
    """The verdicts that refuse this attempt before its secret is checked (empty: go ahead)."""
    counters = a.counters()
    rows = _rows(s, [key for key, _ in counters])
    verdicts = (throttle.check(_counter(rows.get(k)), now, _rule(which, rule, source_rule)) for k, which in counters)
    return tuple(v for v in verdicts if not v.allowed)


def count_failure(
    s: Session, a: Attempt, now: datetime, rule: ThrottleRule, source_rule: ThrottleRule
) -> datetime | None:
    """Count a failed attempt everywhere it counts; the end of the lock it caused, if any."""
    locks = [failed(s, key, now, _rule(which, rule, source_rule)).locked_until for key, which in a.counters()]
    ends = [t for t in locks if t is not None]
    return max(ends) if ends else None


def count_success(s: Session, a: Attempt) -> None:
    """A success ends the run of failures of its kind of client and of the account, and clears its
    address (someone behind that address knew their secret: the address is not only an attacker)."""
    keys = {key for key, _ in a.counters()}
    if a.source:
        keys.add(f"{a.step}:src:{a.source}")
    for key in _rows(s, sorted(keys)):  # only stored counters change (their rows are loaded now)
        succeeded(s, key)


def unlock(s: Session, username: str) -> int:
    """Clear every counter of a user (help desk, after checking identity): how many there were."""
    rows = [s.get(ThrottleCounter, f"{step}:{kind}:{username}") for step in STEPS for kind in KINDS]
    for row in rows:
        if row is not None:
            s.delete(row)
    return sum(1 for r in rows if r is not None)


def unlock_account(ctx: Context, username: str, *, actor: str, reason: str | None = None) -> tuple[str, int]:
    """Lift a lock or back-off on the account (an administrator's act, audited with its reason): its
    name and how many counters were cleared."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        n = unlock(s, user.username)
        audit.record(
            s, ctx.clock.now(), "account.unlocked", actor=actor, subject=user.username, note=reason, counters=n
        )
        return user.username, n
