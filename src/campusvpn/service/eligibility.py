"""The VPN eligibility question for a stored account, answered by core.policy.decide."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from campusvpn.core.policy import Decision, Reason, decide
from campusvpn.service.accounts import facts
from campusvpn.service.context import Context
from campusvpn.store.models import User


def decision_for(ctx: Context, s: Session, user: User, at: datetime | None = None) -> Decision:
    return decide(facts(ctx, s, user), at or ctx.clock.now(), ctx.policy)


def check(ctx: Context, username: str, at: datetime | None = None) -> Decision:
    with ctx.tx() as s:
        return decision_for(ctx, s, ctx.user(s, username), at)


def as_json(d: Decision) -> dict[str, object]:
    def reason(r: Reason) -> dict[str, object]:
        return {"code": r.code, "message": r.message, "until": r.until.isoformat() if r.until else None}

    return {
        "allowed": d.allowed,
        "at": d.at.isoformat(),
        "reasons": [reason(r) for r in d.reasons],
        "notices": [reason(r) for r in d.notices],
        "changes_at": d.changes_at.isoformat() if d.changes_at else None,
    }
