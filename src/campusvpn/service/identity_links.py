"""The identity-verified self-reset: a member links, after a fresh second factor, the verified
real-world identity the [verification] provider asserts (its issuer and a stable subject claim,
kept only as their keyed hash: Context.identity_digest; neither is written to the audit trail);
later that identity alone lets them set a new password and/or register MFA again, without the help
desk. Every rule of it is here; the portal pages (portal.verify_pages) only carry the browser."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from campusvpn.service import accounts, audit, mfa, notices, portal_sessions, sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Forbidden, Invalid, NotFound
from campusvpn.service.oidc_client import OidcRefused
from campusvpn.service.self_service import password_problems, require_fresh
from campusvpn.store.models import IdentityLink, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Phrases, say

SELF_RESET = "self-reset with verified identity"


def subject_of(ctx: Context, claims: dict[str, Any]) -> tuple[str, str]:
    """(issuer, subject) of a valid ID token from the verification provider, when it asserts the
    required level of verified identity; else OidcRefused."""
    cfg = ctx.config.verification
    if cfg.required_acr and claims.get("acr") != cfg.required_acr:
        raise OidcRefused(f"the ID token's acr {claims.get('acr')!r} is not {cfg.required_acr!r}")
    subject = claims.get(cfg.subject_claim)
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise OidcRefused(f"the ID token has no usable {cfg.subject_claim} claim")
    return str(claims["iss"]), subject


def linked(ctx: Context, username: str) -> dict[str, Any] | None:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        row = s.scalars(select(IdentityLink).where(IdentityLink.user_id == user.id)).first()
        return None if row is None else {"linked_at": row.linked_at}


def link(
    ctx: Context,
    username: str,
    issuer: str,
    subject: str,
    *,
    fresh_second_factor_at: datetime | None,
    source: str | None = None,
) -> None:
    """Link the verified identity to the signed-in member (after a fresh second factor). One link
    per account (unlink first); an identity linked to another account is refused (and audited)."""
    require_fresh(ctx, fresh_second_factor_at)
    refused: Exception | None = None
    digest = ctx.identity_digest(issuer, subject)
    with ctx.tx() as s:
        user = ctx.user(s, username)
        now = ctx.clock.now()
        taken = s.scalars(select(IdentityLink).where(IdentityLink.identity_digest == digest)).first()
        mine = s.scalars(select(IdentityLink).where(IdentityLink.user_id == user.id)).first()
        if taken is not None and taken.user_id != user.id:
            refused = Conflict(say(Code.ERROR_IDENTITY_TAKEN))
            audit.record(
                s,
                now,
                "identity.link_refused",
                actor=user.username,
                subject=user.username,
                source=source,
                outcome="refused",
                note="linked to another account",
            )
        elif mine is not None and mine is not taken:
            raise Conflict(say(Code.ERROR_ALREADY_LINKED))
        elif mine is None:
            s.add(IdentityLink(user_id=user.id, identity_digest=digest, linked_at=now))
            audit.record(
                s, now, "identity.linked", actor=user.username, subject=user.username, source=source, issuer=issuer
            )
            notices.security_changed(ctx, user, "identity_linked", _label(ctx), source=source)
    if refused is not None:
        raise refused  # after the commit: the refusal stays in the audit trail


def _label(ctx: Context) -> dict[str, str]:
    """The verification service's name in each language the notice may be written in."""
    cfg = ctx.config.verification
    return {"en": cfg.label, "ja": cfg.label_ja or cfg.label}


def unlink(ctx: Context, username: str, *, fresh_second_factor_at: datetime | None, source: str | None = None) -> None:
    require_fresh(ctx, fresh_second_factor_at)
    with ctx.tx() as s:
        user = ctx.user(s, username)
        row = s.scalars(select(IdentityLink).where(IdentityLink.user_id == user.id)).first()
        if row is None:
            raise NotFound(say(Code.ERROR_NOT_LINKED))
        s.delete(row)
        now = ctx.clock.now()
        audit.record(s, now, "identity.unlinked", actor=user.username, subject=user.username, source=source)
        notices.security_changed(ctx, user, "identity_unlinked", _label(ctx), source=source)


def account_for(ctx: Context, issuer: str, subject: str, *, source: str | None = None) -> str:
    """The active account this verified identity is linked to; NotFound (nothing linked) or
    Forbidden (the account is not active) change nothing but the audit trail."""
    refused: Exception | None = None
    digest = ctx.identity_digest(issuer, subject)
    with ctx.tx() as s:
        row = s.scalars(select(IdentityLink).where(IdentityLink.identity_digest == digest)).first()
        user = s.get(User, row.user_id) if row is not None else None
        now = ctx.clock.now()
        if user is None:
            refused = NotFound(say(Code.ERROR_IDENTITY_NOT_LINKED))
            audit.record(
                s, now, "identity.reset_refused", actor="-", source=source, outcome="refused", note="not linked"
            )
        elif user.status != "active":
            refused = Forbidden(say(Code.ERROR_ACCOUNT_STATUS, status=user.status))
            audit.record(
                s,
                now,
                "identity.reset_refused",
                actor=user.username,
                subject=user.username,
                source=source,
                outcome="refused",
                note=f"account {user.status}",
            )
        else:
            audit.record(s, now, "identity.verified", actor=user.username, subject=user.username, source=source)
            return user.username
    raise refused  # after the commit: the refusal stays in the audit trail


def reset_password(ctx: Context, username: str, new: str, *, source: str | None = None) -> None:
    """A new password set with the verified identity, by the same policy as the member's own
    change; VPN and portal sessions end and trusted devices ask for a code again."""
    if ctx.config.identity.first_factor == "ldap":
        raise Invalid(say(Code.ERROR_DIRECTORY_PASSWORD))
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if user.status != "active":
            raise Forbidden(say(Code.ERROR_ACCOUNT_STATUS, status=user.status))
        problems = password_problems(ctx, user.username, new)
        if problems:
            raise Invalid(say(Code.ERROR_PASSWORD_REJECTED, problems=Phrases(tuple(problems))))
        now = ctx.clock.now()
        accounts.set_password_in(ctx, s, user, new, now, actor=user.username)
        audit.record(
            s, now, "password.reset", actor=user.username, subject=user.username, source=source, note=SELF_RESET
        )
        notices.security_changed(ctx, user, "password_self_reset", source=source)
        sessions.end_for_user(s, user, now, say(Code.SESSION_PASSWORD_RESET), actor=user.username)
        portal_sessions.end_for_user(s, user.username)


def reset_mfa(ctx: Context, username: str) -> None:
    """The same effect as an administrator's MFA reset (register again at the next sign-in), by the member."""
    mfa.reset(ctx, username, actor=username, reason=SELF_RESET, notice="mfa_self_reset")
