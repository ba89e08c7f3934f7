"""Admin API tokens: created for an admin (the secret is shown once, only its digest is kept),
listed, revoked, and turned back into the admin a bearer token acts for."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.core.codes import token_digest
from campusvpn.core.policy import AccountStatus
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid, NotFound
from campusvpn.store.models import ApiToken, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say

PREFIX = "cvpn_"


def create(ctx: Context, owner: str, label: str) -> str:
    if not label.strip():
        raise Invalid(say(Code.ERROR_TOKEN_PURPOSE))
    token = PREFIX + secrets.token_urlsafe(32)
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


def listing(ctx: Context) -> list[dict[str, Any]]:
    """The live tokens (neither revoked nor expired)."""
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


def revoke(ctx: Context, public_id: str, *, actor: str) -> None:
    with ctx.tx() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.public_id == public_id, ApiToken.revoked_at.is_(None))).first()
        if row is None:
            raise NotFound(say(Code.ERROR_NO_TOKEN, token=public_id))
        row.revoked_at = ctx.clock.now()
        audit.record(s, row.revoked_at, "api.token.revoked", actor=actor, subject=row.owner, token_id=public_id)


def revoke_for_owner(s: Session, owner: str, now: datetime, *, actor: str, reason: str) -> int:
    """Revoke every live token of `owner` (their account was suspended or closed)."""
    rows = s.scalars(select(ApiToken).where(ApiToken.owner == owner, ApiToken.revoked_at.is_(None))).all()
    for row in rows:
        row.revoked_at = now
        audit.record(s, now, "api.token.revoked", actor=actor, subject=owner, token_id=row.public_id, note=reason)
    return len(rows)


def owner_of(ctx: Context, token: str) -> str | None:
    """The admin a bearer token acts for, if it is live, its owner is still an admin and the
    owner's account is active (checked at every request: a status set by any path counts)."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    now = ctx.clock.now()
    with ctx.tx() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.token_digest == token_digest(token))).one_or_none()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        if row.owner not in ctx.config.portal.admins:
            return None
        status = s.scalars(select(User.status).where(User.username == row.owner)).one_or_none()
        if status != AccountStatus.ACTIVE.value:
            return None
        row.last_used_at = now
        return row.owner
