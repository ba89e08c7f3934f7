"""VPN eligibility: one pure function that every front end asks, with every reason."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from campusvpn.core.calendar import (
    day_in_fiscal_year,
    first_minute_from,
    fiscal_year_of,
    local_day,
    month_day,
    start_of_day,
)
from campusvpn.platform.config_schema import Config
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.texts.render import render


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class MfaState(enum.StrEnum):
    NOT_APPLIED = "not_applied"
    REGISTRATION_REQUIRED = "registration_required"
    ACTIVE = "active"


@dataclass(frozen=True)
class Affiliation:
    role: str
    start: date
    end: date | None = None  # inclusive; None = open-ended

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class TrainingWindow:
    name: str
    roles: tuple[str, ...]
    opens: tuple[int, int]
    deadline: tuple[int, int]


@dataclass(frozen=True)
class PolicyRules:
    zone: ZoneInfo
    activation_delay: timedelta
    training_required: bool
    fiscal_year_start: tuple[int, int]
    windows: tuple[TrainingWindow, ...]
    portal_url: str
    training_url: str
    helpdesk: str
    notice_before_end: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class AccountFacts:
    username: str
    status: AccountStatus
    status_reason: str | None
    affiliations: tuple[Affiliation, ...]
    mfa_applied_at: datetime | None
    mfa_methods: int  # confirmed methods
    training_completed: tuple[date, ...]  # completion days


@dataclass(frozen=True)
class Reason:
    code: str
    said: Message  # what the person is told: front ends render it in their language (texts.render)
    until: datetime | None = None

    @property
    def params(self) -> dict[str, str]:
        """The facts the message is built from, as text (notices and the API use them)."""
        return {k: v.isoformat() if isinstance(v, date) else str(v) for k, v in self.said.params.items()}

    @property
    def message(self) -> str:
        """In English (the CLI, the API, logs)."""
        return render(self.said, "en")


# Reasons that lift by themselves at their time: the user only waits.
WAITING_CODES = frozenset({"mfa_activation_pending", "affiliation_not_started"})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    at: datetime
    reasons: tuple[Reason, ...] = ()
    notices: tuple[Reason, ...] = field(default=())

    @property
    def waiting(self) -> bool:
        """Refused only until a time that comes by itself (MFA activation, an affiliation not yet
        started): "not yet", not a refusal; `changes_at` is when it becomes usable."""
        return not self.allowed and bool(self.reasons) and all(r.code in WAITING_CODES for r in self.reasons)

    @property
    def changes_at(self) -> datetime | None:
        """When a refusal lifts by itself (the latest timed reason), if every reason is timed."""
        if self.allowed or any(r.until is None for r in self.reasons):
            return None
        return max(r.until for r in self.reasons if r.until is not None)

    @property
    def next_review(self) -> datetime | None:
        """For an allowed decision: the earliest moment a notice says it may change (a training
        deadline, an affiliation's last day), when live tunnels must be checked again."""
        upcoming = [n.until for n in self.notices if n.until is not None and n.until > self.at]
        return min(upcoming) if upcoming else None

    @property
    def said(self) -> tuple[Message, ...]:
        """What the person is told: allowed, or every reason."""
        return (say(Code.POLICY_ALLOWED),) if self.allowed else tuple(r.said for r in self.reasons)

    def user_message(self) -> str:
        """In English (logs, the session's end reason)."""
        return render(self.said, "en")


def mfa_state(applied_at: datetime | None, methods: int) -> MfaState:
    if applied_at is None:
        return MfaState.NOT_APPLIED
    return MfaState.ACTIVE if methods > 0 else MfaState.REGISTRATION_REQUIRED


def continuous_since(affiliations: tuple[Affiliation, ...], day: date) -> Affiliation | None:
    """The affiliation covering `day`, with `start` moved back to where its gap-free run began.

    A change of affiliation without a gap (student → staff the next day) keeps the account,
    so "when did this person join" is the start of the unbroken run.
    """
    current = next((a for a in sorted(affiliations, key=lambda a: a.start, reverse=True) if a.covers(day)), None)
    if current is None:
        return None
    start = current.start
    changed = True
    while changed:
        changed = False
        for a in affiliations:
            if a.start < start and (a.end is None or a.end >= start - timedelta(days=1)):
                start = a.start
                changed = True
    return Affiliation(role=current.role, start=start, end=current.end)


def window_for(role: str, rules: PolicyRules) -> TrainingWindow | None:
    return next((w for w in rules.windows if role in w.roles), None)


def decide(facts: AccountFacts, now: datetime, rules: PolicyRules) -> Decision:
    """May this account use the VPN at `now`? Refusals list every reason, not just the first."""
    reasons: list[Reason] = []
    notices: list[Reason] = []
    today = local_day(now, rules.zone)

    if facts.status is AccountStatus.REVOKED:
        reasons.append(Reason("account_revoked", say(Code.POLICY_ACCOUNT_REVOKED, helpdesk=rules.helpdesk)))
    elif facts.status is AccountStatus.SUSPENDED:
        said = (
            say(Code.POLICY_ACCOUNT_SUSPENDED_REASON, reason=facts.status_reason, helpdesk=rules.helpdesk)
            if facts.status_reason
            else say(Code.POLICY_ACCOUNT_SUSPENDED, helpdesk=rules.helpdesk)
        )
        reasons.append(Reason("account_suspended", said))

    aff = continuous_since(facts.affiliations, today)
    if aff is None:
        upcoming = sorted(a.start for a in facts.affiliations if a.start > today)
        if upcoming:
            starts = start_of_day(upcoming[0], rules.zone)
            reasons.append(
                Reason("affiliation_not_started", say(Code.POLICY_AFFILIATION_NOT_STARTED, start=upcoming[0]), starts)
            )
        else:
            reasons.append(Reason("affiliation_ended", say(Code.POLICY_AFFILIATION_ENDED, helpdesk=rules.helpdesk)))
    elif aff.end is not None and start_of_day(aff.end, rules.zone) - now <= rules.notice_before_end:
        notices.append(
            Reason(
                "affiliation_ending",
                say(Code.POLICY_AFFILIATION_ENDING, end=aff.end),
                until=start_of_day(aff.end + timedelta(days=1), rules.zone),
            )
        )

    state = mfa_state(facts.mfa_applied_at, facts.mfa_methods)
    delay_min = int(rules.activation_delay.total_seconds() // 60)
    if state is MfaState.NOT_APPLIED:
        reasons.append(
            Reason("mfa_not_applied", say(Code.POLICY_MFA_NOT_APPLIED, portal_url=rules.portal_url, minutes=delay_min))
        )
    else:
        assert facts.mfa_applied_at is not None
        if state is MfaState.REGISTRATION_REQUIRED:
            reasons.append(
                Reason(
                    "mfa_registration_required", say(Code.POLICY_MFA_REGISTRATION_REQUIRED, portal_url=rules.portal_url)
                )
            )
        ready = facts.mfa_applied_at + rules.activation_delay
        if now < ready:
            left = ready - now
            minutes = int(-(-left.total_seconds() // 60))
            reasons.append(
                Reason(
                    "mfa_activation_pending",
                    # The first whole minute it is possible (see first_minute_from), in the service's zone.
                    say(
                        Code.POLICY_MFA_ACTIVATION_PENDING,
                        at=first_minute_from(ready).astimezone(rules.zone),
                        n=minutes,
                    ),
                    until=ready,
                )
            )

    if rules.training_required and aff is not None:
        _training(facts, aff, today, now, rules, reasons, notices)

    return Decision(allowed=not reasons, at=now, reasons=tuple(reasons), notices=tuple(notices))


def training_deadline(role: str, fy: int, rules: PolicyRules) -> tuple[date, date] | None:
    w = window_for(role, rules)
    if w is None:
        return None
    return (
        day_in_fiscal_year(fy, w.opens, rules.fiscal_year_start),
        day_in_fiscal_year(fy, w.deadline, rules.fiscal_year_start),
    )


def training_done(completed: tuple[date, ...], fy: int, fy_start: tuple[int, int]) -> bool:
    return any(fiscal_year_of(d, fy_start) == fy for d in completed)


def _training(
    facts: AccountFacts,
    aff: Affiliation,
    today: date,
    now: datetime,
    rules: PolicyRules,
    reasons: list[Reason],
    notices: list[Reason],
) -> None:
    fy = fiscal_year_of(today, rules.fiscal_year_start)
    window = training_deadline(aff.role, fy, rules)
    if window is None or training_done(facts.training_completed, fy, rules.fiscal_year_start):
        return
    opens, deadline = window
    if aff.start > deadline:
        return  # joined after this year's window closed: exempt for this fiscal year
    if today > deadline:
        reasons.append(
            Reason(
                "training_missing",
                say(Code.POLICY_TRAINING_MISSING, fy=fy, deadline=deadline, training_url=rules.training_url),
            )
        )
    elif today >= opens:
        notices.append(
            Reason(
                "training_due",
                say(Code.POLICY_TRAINING_DUE, fy=fy, opens=opens, deadline=deadline, training_url=rules.training_url),
                until=start_of_day(deadline + timedelta(days=1), rules.zone),
            )
        )


def rules_from_config(cfg: Config) -> PolicyRules:
    """Build the rules from the configuration (kept here so the mapping exists once)."""
    return PolicyRules(
        zone=cfg.zone,
        activation_delay=cfg.mfa.activation_delay,
        training_required=cfg.training.required,
        fiscal_year_start=month_day(cfg.training.fiscal_year_start),
        windows=tuple(
            TrainingWindow(w.name, tuple(w.roles), month_day(w.opens), month_day(w.deadline))
            for w in cfg.training.windows
        ),
        portal_url=cfg.service.portal_url,
        training_url=cfg.training.url,
        helpdesk=cfg.service.helpdesk,
    )
