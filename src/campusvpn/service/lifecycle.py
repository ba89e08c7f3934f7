"""The scheduled lifecycle job: affiliation gaps reset accounts on their day, ended affiliations
revoke them, revoked accounts lose their credentials after the retention, and people are told.

`run` is restart-safe and idempotent: what is due is computed from the stored state and the
injected clock (core.lifecycle), each account is changed in its own transaction after checking
again, and a step is due only while its result is not yet there. Running it twice, or on two
nodes at once, changes nothing more than running it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from campusvpn.core.calendar import local_day
from campusvpn.core.lifecycle import (
    AccountState,
    Due,
    LifecycleRules,
    Step,
    closing_day,
    due_steps,
    ending_notice,
    revoked_reason,
)
from campusvpn.core.policy import AccountStatus
from campusvpn.core.policy import Affiliation as Period
from campusvpn.service import audit, eligibility_notices, notices, sessions
from campusvpn.service.accounts import apply_status
from campusvpn.service.context import Context
from campusvpn.service.mfa import clear_mfa
from campusvpn.store.models import (
    MailMessage,
    MfaMethod,
    Passkey,
    PhoneChallenge,
    RecoveryCode,
    RecoveryPass,
    TrustedDevice,
    User,
)
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say

ACTOR = "lifecycle"


@dataclass
class Report:
    """What one run did (the purge report): one line per account and step, and the notices queued."""

    at: datetime
    day: date
    done: list[dict[str, str]] = field(default_factory=list)
    notices: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "day": self.day.isoformat(), "done": self.done, "notices": self.notices}


def rules_of(ctx: Context) -> LifecycleRules:
    c = ctx.config.lifecycle
    return LifecycleRules(grace=c.grace, retention=c.retention, notice_days=tuple(sorted(set(c.notice_days))))


def run(ctx: Context) -> Report:
    now = ctx.clock.now()
    zone = ctx.policy.zone
    today = local_day(now, zone)
    rules = rules_of(ctx)
    report = Report(now, today)
    with ctx.tx() as s:
        states = _states(s)
        names = dict(s.execute(select(User.id, User.username)).tuples().all())
        # Notices queued lately, so an account whose notice is out needs no transaction of its own.
        queued = set(
            s.scalars(
                select(MailMessage.key).where(
                    MailMessage.key.like("affiliation_ending:%"), MailMessage.created_at >= now - timedelta(days=400)
                )
            )
        )
    for user_id, state in states.items():
        if due_steps(state, today, zone, rules) or _notice_due(state, names[user_id], today, rules, queued):
            with ctx.tx() as s:  # one account, one transaction: a failure leaves the others done
                _apply(ctx, s, user_id, now, today, rules, report)
    report.notices.extend(eligibility_notices.run(ctx))
    return report


def _notice_due(state: AccountState, username: str, today: date, rules: LifecycleRules, queued: set[str]) -> bool:
    if state.status is AccountStatus.REVOKED:
        return False
    ending = ending_notice(state.affiliations, today, rules)
    return ending is not None and notices.ending_key(username, ending[1], ending[0]) not in queued


def _states(s: Session, user_ids: list[int] | None = None) -> dict[int, AccountState]:
    q = select(User).options(selectinload(User.affiliations))
    if user_ids is not None:
        q = q.where(User.id.in_(user_ids))
    users = s.scalars(q).all()
    oldest: dict[int, list[datetime]] = {u.id: [] for u in users}
    for model, col, cond in (
        (MfaMethod, MfaMethod.created_at, MfaMethod.id.is_not(None)),
        (RecoveryCode, RecoveryCode.created_at, RecoveryCode.used_at.is_(None)),
        (TrustedDevice, TrustedDevice.created_at, TrustedDevice.revoked_at.is_(None)),
    ):
        q2 = select(model.user_id, func.min(col)).where(cond).group_by(model.user_id)
        if user_ids is not None:
            q2 = q2.where(model.user_id.in_(user_ids))
        for uid, at in s.execute(q2):
            if uid in oldest and at is not None:
                oldest[uid].append(at)
    others = _with_other_secrets(s, user_ids)
    out = {}
    for u in users:
        times = list(oldest[u.id])
        if u.password_hash is not None:
            times.append(u.password_changed_at or u.created_at)
        if u.mfa_applied_at is not None:
            times.append(u.mfa_applied_at)
        out[u.id] = AccountState(
            status=AccountStatus(u.status),
            status_reason=u.status_reason,
            status_changed_at=u.status_changed_at,
            affiliations=tuple(Period(a.role, a.start, a.end) for a in u.affiliations),
            oldest_credential=min(times) if times else None,
            has_credentials=bool(times) or u.id in others,
        )
    return out


def _with_other_secrets(s: Session, user_ids: list[int] | None) -> set[int]:
    """Accounts with rows a purge removes that are not live credentials (used codes, revoked
    devices, passkeys, recovery passes, sent codes): one query per table, not per account."""
    found: set[int] = set()
    for model in (RecoveryCode, TrustedDevice, Passkey, RecoveryPass, PhoneChallenge):
        q = select(model.user_id).distinct()
        if user_ids is not None:
            q = q.where(model.user_id.in_(user_ids))
        found.update(s.scalars(q))
    return found


def _apply(
    ctx: Context, s: Session, user_id: int, now: datetime, today: date, rules: LifecycleRules, report: Report
) -> None:
    user = s.get(User, user_id)
    if user is None:
        return
    state = _states(s, [user_id])[user_id]  # again, inside this transaction
    for due in due_steps(state, today, ctx.policy.zone, rules):
        _do(ctx, s, user, due, now)
        report.done.append({"username": user.username, "step": due.step.value, "due": due.day.isoformat()})
    if user.status != AccountStatus.REVOKED.value:
        ending = ending_notice(state.affiliations, today, rules)
        if ending is not None and notices.affiliation_ending(ctx, s, user, days=ending[0], last_day=ending[1]):
            report.notices.append({"username": user.username, "notice": f"ending_in_{ending[0]}_days"})


def _do(ctx: Context, s: Session, user: User, due: Due, now: datetime) -> None:
    if due.step is Step.RESTORE:
        apply_status(s, user, AccountStatus.ACTIVE, now, actor=ACTOR, reason=None)
    elif due.step is Step.GAP_RESET:
        # The returning person starts afresh: no password, MFA or devices from their earlier time.
        clear_mfa(s, user, now, actor=ACTOR, reason="returned after a gap in affiliation", keep_applied=False)
        user.password_hash = None
        user.password_changed_at = None
        sessions.end_for_user(s, user, now, say(Code.SESSION_AFFILIATION_ENDED), actor=ACTOR)
        audit.record(
            s,
            now,
            "account.reset_after_gap",
            actor=ACTOR,
            subject=user.username,
            gap_from=due.day.isoformat(),
            returns_on=due.detail.get("returns_on"),
        )
    elif due.step is Step.REVOKE:
        last_day = date.fromisoformat(due.detail["last_day"])
        apply_status(s, user, AccountStatus.REVOKED, now, actor=ACTOR, reason=revoked_reason(last_day))
        notices.account_revoked(ctx, s, user, last_day=last_day)
    elif due.step is Step.PURGE:
        _purge(s, user, now)


def _purge(s: Session, user: User, now: datetime) -> None:
    """Credentials and MFA data go; the account row (user name, affiliations) and audit stay."""
    methods = len(user.methods)
    codes = s.scalar(select(func.count()).where(RecoveryCode.user_id == user.id)) or 0
    devices = s.scalar(select(func.count()).where(TrustedDevice.user_id == user.id)) or 0
    passkeys = s.scalar(select(func.count()).where(Passkey.user_id == user.id)) or 0
    for model in (PhoneChallenge, RecoveryCode, TrustedDevice, Passkey, RecoveryPass):
        s.execute(delete(model).where(model.user_id == user.id))
    user.methods.clear()  # after the codes sent to them
    had_password = user.password_hash is not None
    user.password_hash = None
    user.password_changed_at = None
    user.mfa_applied_at = None
    user.mfa_emptied_at = None
    audit.record(
        s,
        now,
        "account.purged",
        actor=ACTOR,
        subject=user.username,
        had_password=had_password,
        methods=methods,
        recovery_codes=codes,
        devices=devices,
        passkeys=passkeys,
    )


def upcoming(ctx: Context, days: int = 60) -> list[dict[str, str]]:
    """Accounts the job will revoke within `days` (for the admin console), soonest first."""
    today = local_day(ctx.clock.now(), ctx.policy.zone)
    grace = ctx.config.lifecycle.grace
    out = []
    with ctx.tx() as s:
        users = s.scalars(
            select(User).where(User.status != AccountStatus.REVOKED.value).options(selectinload(User.affiliations))
        ).all()
        for u in users:
            periods = tuple(Period(a.role, a.start, a.end) for a in u.affiliations)
            closes = closing_day(periods, grace)
            if closes is not None and today <= closes <= today + timedelta(days=days):
                last = closes - timedelta(days=1 + grace.days)
                out.append(
                    {
                        "username": u.username,
                        "role": periods[-1].role if periods else "",
                        "last_day": last.isoformat(),
                        "closes_on": closes.isoformat(),
                        "email": "yes" if u.email else "no",
                    }
                )
    return sorted(out, key=lambda r: (r["closes_on"], r["username"]))
