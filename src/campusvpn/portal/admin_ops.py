"""Admin use cases shared by the console pages and the JSON API (one set of rules for both)."""

from __future__ import annotations

import contextlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select

from campusvpn.core.codes import token_digest
from campusvpn.core.policy import AccountStatus
from campusvpn.service import accounts, audit, eligibility, mfa, recovery_pass, sessions, training
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid, NotFound
from campusvpn.store.models import ApiToken, TrainingRecord, User


def search(ctx: Context, q: str, limit: int = 50) -> list[dict[str, Any]]:
    q = q.strip()
    if not q:
        return []
    with ctx.tx() as s:
        conds: list[ColumnElement[bool]] = [User.display_name.ilike(f"%{q}%"), User.username.like(f"%{q}%")]
        with contextlib.suppress(ValueError):
            conds.append(User.username == ctx.usernames.normalise(q))  # any accepted form of a name
        rows = s.scalars(select(User).where(or_(*conds)).order_by(User.username).limit(limit)).all()
        return [{"username": u.username, "name": u.display_name, "status": u.status} for u in rows]


def user_detail(ctx: Context, username: str) -> dict[str, Any]:
    """Everything staff may see of one account: never a secret."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        out: dict[str, Any] = accounts.describe(ctx, s, user)
        out["role"] = accounts.current_role(ctx, s, user)
        out["training"] = [
            {"fiscal_year": r.fiscal_year, "completed_on": r.completed_on.isoformat()}
            for r in s.scalars(
                select(TrainingRecord).where(TrainingRecord.user_id == user.id).order_by(TrainingRecord.fiscal_year)
            )
        ]
        out["audit"] = [
            {
                "at": e.at.isoformat(),
                "event": e.event,
                "actor": e.actor,
                "outcome": e.outcome,
                "source": e.source,
                "note": e.note,
            }
            for e in audit.query(s, subject=user.username, limit=200, newest_first=True)
        ]
    out["mfa"] = mfa.show(ctx, username)
    out["eligibility"] = eligibility.as_json(eligibility.check(ctx, username))
    out["sessions"] = sessions.listing(ctx, username=username)
    return out


def set_status(ctx: Context, username: str, status: str, reason: str, *, actor: str) -> None:
    try:
        st = AccountStatus(status)
    except ValueError as exc:
        raise Invalid(f"status {status!r} is not one of active, suspended, revoked") from exc
    if st is not AccountStatus.ACTIVE and not reason.strip():
        raise Invalid("say why (the reason is shown to the user and kept in the audit trail)")
    accounts.set_status(ctx, username, st, actor=actor, reason=reason.strip() or None)


def reset_mfa(ctx: Context, username: str, reason: str, *, actor: str) -> None:
    mfa.reset(ctx, username, actor=actor, reason=reason)


def issue_pass(ctx: Context, username: str, reason: str, *, actor: str) -> tuple[str, datetime]:
    return recovery_pass.issue(ctx, username, actor=actor, reason=reason)


def kill_session(ctx: Context, session_id: str, *, actor: str) -> int:
    return sessions.kill(ctx, session_id=session_id, actor=actor, reason="Ended by the IT staff")


def import_roster(ctx: Context, text: str, *, actor: str) -> dict[str, Any]:
    r = accounts.import_users(ctx, text, actor=actor)
    return {
        "applied": r.added + r.updated,
        "added": r.added,
        "updated": r.updated,
        "errors": [{"line": n, "error": e} for n, e in r.errors],
    }


def import_training(ctx: Context, text: str, *, actor: str) -> dict[str, Any]:
    r = training.import_completions(ctx, text, actor=actor)
    return {"applied": r.recorded, "unchanged": r.unchanged, "errors": [{"line": n, "error": e} for n, e in r.errors]}


# --- API tokens ---------------------------------------------------------------------------


def create_token(ctx: Context, owner: str, label: str) -> str:
    if not label.strip():
        raise Invalid("say what the token is for")
    token = "cvpn_" + secrets.token_urlsafe(32)
    now = ctx.clock.now()
    with ctx.tx() as s:
        s.add(
            ApiToken(
                public_id=secrets.token_hex(6),
                token_digest=token_digest(token),
                owner=owner,
                label=label.strip()[:200],
                created_at=now,
                expires_at=now + ctx.config.portal.api_token_lifetime,
            )
        )
        audit.record(s, now, "api.token.created", actor=owner, subject=owner, label=label.strip()[:200])
    return token


def list_tokens(ctx: Context) -> list[dict[str, Any]]:
    now = ctx.clock.now()
    with ctx.tx() as s:
        rows = s.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > now)).all()
        return [
            {
                "id": t.public_id,
                "owner": t.owner,
                "label": t.label,
                "expires": t.expires_at.isoformat(),
                "last_used": t.last_used_at.isoformat() if t.last_used_at else None,
            }
            for t in rows
        ]


def revoke_token(ctx: Context, public_id: str, *, actor: str) -> None:
    with ctx.tx() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.public_id == public_id, ApiToken.revoked_at.is_(None))).first()
        if row is None:
            raise NotFound(f"there is no live token {public_id}")
        row.revoked_at = ctx.clock.now()
        audit.record(s, row.revoked_at, "api.token.revoked", actor=actor, subject=row.owner, token_id=public_id)


def token_owner(ctx: Context, token: str) -> str | None:
    """The admin a bearer token acts for, if it is live and its owner is still an admin."""
    if not token.startswith("cvpn_") or len(token) > 100:
        return None
    now = ctx.clock.now()
    with ctx.tx() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.token_digest == token_digest(token))).one_or_none()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        if row.owner not in ctx.config.portal.admins:
            return None
        row.last_used_at = now
        return row.owner
