"""Throttling of failed attempts: a few free failures, then exponential back-off, then a lock.

Counters are kept separately for the password and the second factor (guessing codes cannot
lock someone out of the password step), and so that strangers cannot lock the owner out:

- per account and *kind of client*: failures from clients the account does not know (no trusted
  device of it, no sign-in completed from that address lately) are counted apart from failures
  from its known clients, so a stranger's guesses never slow or lock the owner's own devices;
- per account as a whole: at most `ACCOUNT_CAP` consecutive failures from anywhere (NIST SP
  800-63B §5.2.2), then a lock; a success anywhere ends the run;
- per source address, for unknown clients only: sized for a NAT that hides many people
  (`SOURCE_FREE_FAILURES` free, waits capped at `SOURCE_BACKOFF_MAX`), and cleared by a success
  from that address, so it stops an address where nobody succeeds (spraying), not a campus NAT.

docs/security.md ("Throttling") gives the numbers and what they mean for an attacker.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

# NIST SP 800-63B §5.2.2: no more than 100 consecutive failed attempts on one account.
ACCOUNT_CAP = 100
# An address from which the account completed a sign-in within this time is one of its known clients.
KNOWN_ADDRESS_FOR = timedelta(days=30)
# One address may stand for a whole campus or carrier NAT: many free failures, short waits.
SOURCE_FREE_FAILURES = 20
SOURCE_BACKOFF_MAX = timedelta(minutes=1)
# The account's run of failures lasts until a success, unless nobody failed for this long.
ACCOUNT_RUN_KEPT = timedelta(days=7)


class Client(enum.Enum):
    """Who is trying, as the account sees it."""

    KNOWN = "known"  # one of its trusted devices, or an address of a recent completed sign-in
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ThrottleRule:
    free_failures: int
    backoff_base: timedelta
    backoff_max: timedelta
    lock_after: int
    lock_duration: timedelta
    # Failures followed by this much quiet are forgotten (None: `lock_duration`).
    forget_after: timedelta | None = None


@dataclass(frozen=True)
class Counter:
    failures: int = 0
    last_failure: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    locked: bool = False
    retry_at: datetime | None = None


def account_rule(rule: ThrottleRule) -> ThrottleRule:
    """The account-wide cap: no waits of its own, a lock after `ACCOUNT_CAP` consecutive failures."""
    return replace(rule, free_failures=ACCOUNT_CAP, lock_after=ACCOUNT_CAP, forget_after=ACCOUNT_RUN_KEPT)


def source_rule(rule: ThrottleRule) -> ThrottleRule:
    """The per-address rule made from the configured one: sized for NAT (see module doc)."""
    return replace(
        rule,
        free_failures=min(max(rule.free_failures, SOURCE_FREE_FAILURES), rule.lock_after),
        backoff_max=min(rule.backoff_max, SOURCE_BACKOFF_MAX),
        backoff_base=min(rule.backoff_base, SOURCE_BACKOFF_MAX),
    )


def wait_after(failures: int, rule: ThrottleRule) -> timedelta:
    """How long to wait after `failures` consecutive failures: 0, …, base, 2·base, 4·base, … ≤ max."""
    over = failures - rule.free_failures
    if over <= 0:
        return timedelta(0)
    # Cap the exponent; 2**40 seconds overflows nothing but is already far past any max.
    wait: timedelta = min(rule.backoff_base * (2 ** min(over - 1, 40)), rule.backoff_max)
    return wait


def _forgotten(counter: Counter, now: datetime, rule: ThrottleRule) -> Counter:
    """Failures older than a lock's length are forgotten, so a shared address (a campus NAT)
    does not pile up failures over days."""
    window = rule.forget_after or rule.lock_duration
    quiet = counter.last_failure is not None and now - counter.last_failure >= window
    unlocked = counter.locked_until is None or now >= counter.locked_until
    return Counter() if quiet and unlocked else counter


def check(counter: Counter, now: datetime, rule: ThrottleRule) -> Verdict:
    counter = _forgotten(counter, now, rule)
    if counter.locked_until is not None and now < counter.locked_until:
        return Verdict(allowed=False, locked=True, retry_at=counter.locked_until)
    if counter.last_failure is None:
        return Verdict(allowed=True)
    ready = counter.last_failure + wait_after(counter.failures, rule)
    if now < ready:
        return Verdict(allowed=False, retry_at=ready)
    return Verdict(allowed=True)


def record_failure(counter: Counter, now: datetime, rule: ThrottleRule) -> Counter:
    counter = _forgotten(counter, now, rule)
    lock_expired = counter.locked_until is not None and now >= counter.locked_until
    failures = 1 if lock_expired else counter.failures + 1
    locked_until = now + rule.lock_duration if failures >= rule.lock_after else None
    return replace(counter, failures=failures, last_failure=now, locked_until=locked_until)


def record_success() -> Counter:
    return Counter()
