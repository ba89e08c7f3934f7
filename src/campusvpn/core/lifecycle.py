"""Account lifecycle rules: what is due for an account on a given day. Pure: the service asks
with the account's facts and today's date (from the injected clock) and applies the answer.

Dates are the service's local days. An affiliation's `end` is its last day.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from campusvpn.core.calendar import start_of_day
from campusvpn.core.policy import AccountStatus, Affiliation

# The reason stored with a revocation made by the lifecycle; a later roster period lifts only these.
REVOKED_REASON_PREFIX = "Your affiliation with the university ended on "


@dataclass(frozen=True)
class LifecycleRules:
    grace: timedelta = timedelta(0)  # after the last day, before the account is revoked
    retention: timedelta = timedelta(days=90)  # after revocation, before credentials are purged
    notice_days: tuple[int, ...] = (30, 7, 1)  # "your affiliation ends in N days"


@dataclass(frozen=True)
class Run:
    """Affiliations joined without a gap (a change of role the next day continues a run)."""

    start: date
    end: date | None  # None: open-ended


class Step(enum.StrEnum):
    GAP_RESET = "gap_reset"  # returned after a gap: start afresh, no old credentials
    RESTORE = "restore"  # revoked for an ended affiliation, and the roster gave a new one
    REVOKE = "revoke"
    PURGE = "purge"


@dataclass(frozen=True)
class Due:
    step: Step
    day: date  # the day the step became due
    detail: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class AccountState:
    """What the lifecycle needs to know of one account."""

    status: AccountStatus
    status_reason: str | None
    status_changed_at: datetime | None
    affiliations: tuple[Affiliation, ...]
    oldest_credential: datetime | None  # password, MFA application, method, recovery code, device
    has_credentials: bool


def runs(affiliations: Iterable[Affiliation]) -> list[Run]:
    out: list[Run] = []
    for a in sorted(affiliations, key=lambda a: a.start):
        last = out[-1] if out else None
        if last is not None and (last.end is None or a.start <= last.end + timedelta(days=1)):
            end = None if last.end is None or a.end is None else max(last.end, a.end)
            out[-1] = Run(last.start, end)
        else:
            out.append(Run(a.start, a.end))
    return out


def gap_day(affiliations: Iterable[Affiliation], today: date) -> tuple[date, date] | None:
    """The first day of the latest gap that has begun by `today` and is followed by a later
    affiliation, with the day that affiliation starts."""
    rs = runs(affiliations)
    found = None
    for before, after in itertools.pairwise(rs):
        assert before.end is not None  # runs after it exist, so it ends
        first = before.end + timedelta(days=1)
        if first <= today:
            found = (first, after.start)
    return found


def closing_day(affiliations: Iterable[Affiliation], grace: timedelta) -> date | None:
    """The day the account is revoked: after the last affiliation's last day and the grace.
    None while an affiliation is open-ended or there is none."""
    rs = runs(affiliations)
    if not rs or rs[-1].end is None:
        return None
    return rs[-1].end + timedelta(days=1) + timedelta(days=grace.days)


def revoked_reason(last_day: date) -> str:
    return f"{REVOKED_REASON_PREFIX}{last_day.isoformat()}."


def due_steps(state: AccountState, today: date, zone: ZoneInfo, rules: LifecycleRules) -> list[Due]:
    """Every step due for this account today, in the order to apply them. Idempotent by
    construction: each is due only while the account is not yet in the state it produces."""
    out: list[Due] = []
    closing = closing_day(state.affiliations, rules.grace)
    revoked_by_us = state.status is AccountStatus.REVOKED and (state.status_reason or "").startswith(
        REVOKED_REASON_PREFIX
    )
    closed = closing is not None and closing <= today
    if revoked_by_us and not closed:
        out.append(Due(Step.RESTORE, today))
    gap = gap_day(state.affiliations, today)
    if (
        gap is not None
        and state.oldest_credential is not None
        and state.oldest_credential < start_of_day(gap[0], zone)
        and not closed
    ):
        out.append(Due(Step.GAP_RESET, gap[0], {"returns_on": gap[1].isoformat()}))
    if closed and state.status is not AccountStatus.REVOKED:
        assert closing is not None
        last = runs(state.affiliations)[-1].end
        assert last is not None
        out.append(Due(Step.REVOKE, closing, {"last_day": last.isoformat()}))
    if state.status is AccountStatus.REVOKED and state.status_changed_at is not None and state.has_credentials:
        purge_on = state.status_changed_at.astimezone(zone).date() + timedelta(days=rules.retention.days)
        if purge_on <= today:
            out.append(Due(Step.PURGE, purge_on))
    return out


def ending_notice(affiliations: Iterable[Affiliation], today: date, rules: LifecycleRules) -> tuple[int, date] | None:
    """The "your affiliation ends in N days" notice due today, as (N, last day): the nearest N
    the remaining days are within. Keyed by both, so each is sent once; a notice skipped while
    the service was down is not sent late once a nearer one is due."""
    current = next((r for r in runs(affiliations) if r.start <= today and (r.end is None or today <= r.end)), None)
    if current is None or current.end is None:
        return None
    left = (current.end - today).days
    within = [n for n in rules.notice_days if left <= n]
    return (min(within), current.end) if within else None
