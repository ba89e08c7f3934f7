"""Throttling of failed attempts: a few free failures, then exponential back-off, then a lock.

Counters are kept per user and per source address, and separately for the password and the
second factor, so that guessing codes cannot lock someone out of the password step and a
flood from one address does not lock every account it names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThrottleRule:
    free_failures: int
    backoff_base: timedelta
    backoff_max: timedelta
    lock_after: int
    lock_duration: timedelta


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
    quiet = counter.last_failure is not None and now - counter.last_failure >= rule.lock_duration
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
