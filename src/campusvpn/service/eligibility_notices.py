"""Notices that follow VPN eligibility, run with the lifecycle job: the training window opened,
the training deadline is N days away, VPN use is suspended (training missed, account suspended).

What is due comes from the policy's own decision (its notices and refusals, core.policy), so the
notices say exactly what the VPN would do. Each is keyed by its event (user, fiscal year, days
before; or the suspension's start), so it is sent once however often the job runs. A notice
missed while the service was down is sent at the next run, but only the nearest reminder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from campusvpn.core.calendar import local_day
from campusvpn.core.policy import AccountStatus, Decision
from campusvpn.service import eligibility, notices
from campusvpn.service.context import Context
from campusvpn.store.models import MailMessage, User


@dataclass(frozen=True)
class Due:
    kind: str
    key: str
    params: dict[str, str]


def due(username: str, decision: Decision, today: date, deadline_days: tuple[int, ...], vpn_user: bool) -> list[Due]:
    """The notices this decision calls for today (pure: the caller checks which were sent)."""
    out = []
    for n in decision.notices:
        if n.code != "training_due":
            continue
        fy, deadline = n.params["fy"], date.fromisoformat(n.params["deadline"])
        left = (deadline - today).days
        within = [d for d in deadline_days if left <= d]
        params = {k: n.params[k] for k in ("fy", "deadline", "training_url")}
        if within:
            days = min(within)
            out.append(
                Due("training_deadline", f"training_deadline:{username}:{fy}:{days}", {**params, "days": str(left)})
            )
        else:
            out.append(Due("training_opens", f"training_opens:{username}:{fy}", {**params, "opens": n.params["opens"]}))
    for r in decision.reasons:
        if r.code == "training_missing" and vpn_user:
            params = {k: r.params[k] for k in ("fy", "deadline", "training_url")}
            out.append(Due("vpn_suspended_training", f"vpn_suspended:{username}:training:{params['fy']}", params))
    return out


def run(ctx: Context) -> list[dict[str, str]]:
    """Queue what is due for every account that is not closed; returns what was queued now."""
    now = ctx.clock.now()
    today = local_day(now, ctx.policy.zone)
    days = tuple(sorted(set(ctx.config.notices.training_deadline_days)))
    queued: list[dict[str, str]] = []
    with ctx.tx() as s:
        ids = list(s.scalars(select(User.id).where(User.status != AccountStatus.REVOKED.value)))
        # Notices of the last 400 days (a fiscal year's and a bit): a shortcut only, as queueing
        # checks the key again, so an older one found missing here is still not sent twice.
        sent = set(
            s.scalars(
                select(MailMessage.key).where(
                    MailMessage.key.like("portal:%"), MailMessage.created_at >= now - timedelta(days=400)
                )
            )
        )
    for start in range(0, len(ids), 200):  # a transaction per batch: a long run does not hold one lock
        with ctx.tx() as s:
            users = s.scalars(
                select(User).where(User.id.in_(ids[start : start + 200])).options(selectinload(User.methods))
            ).all()
            for user in users:
                wanted = _for_user(ctx, s, user, today, days)
                for d in wanted:
                    if f"portal:{d.key}" in sent:
                        continue
                    if notices.notify(ctx, s, user, d.kind, d.key, **d.params):
                        queued.append({"username": user.username, "notice": d.kind})
    return queued


def _for_user(ctx: Context, s: Session, user: User, today: date, days: tuple[int, ...]) -> list[Due]:
    if user.status == AccountStatus.SUSPENDED.value:
        since = (user.status_changed_at or user.created_at).isoformat()
        return [
            Due(
                "vpn_suspended_account",
                f"vpn_suspended:{user.username}:account:{since}",
                {"reason": user.status_reason or "-"},
            )
        ]
    decision = eligibility.decision_for(ctx, s, user)
    return due(user.username, decision, today, days, vpn_user=user.mfa_applied_at is not None)
