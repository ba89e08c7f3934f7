"""Help-desk one-time recovery pass: for a user who lost every method and every recovery code.

Staff check the person's identity, then issue a pass (same shape as a recovery code, hashed,
short-lived, single use). The pass resets the user's MFA so they register a new method at the
next sign-in; it is never a sign-in factor by itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campusvpn.core.codes import new_recovery_code, normalise_recovery_code
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid
from campusvpn.service.mfa import clear_mfa
from campusvpn.store.models import RecoveryPass, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say


def issue(ctx: Context, username: str, *, actor: str, reason: str) -> tuple[str, datetime]:
    """A new pass (any earlier unused one stops working). Returns (pass, expiry)."""
    if not reason.strip():
        raise Invalid(say(Code.ERROR_IDENTITY_CHECK))
    code = new_recovery_code()
    now = ctx.clock.now()
    expires = now + ctx.config.portal.recovery_pass_lifetime
    with ctx.tx() as s:
        user = ctx.user(s, username)
        s.execute(
            update(RecoveryPass)
            .where(RecoveryPass.user_id == user.id, RecoveryPass.used_at.is_(None))
            .values(used_at=now)
        )
        s.add(
            RecoveryPass(
                user_id=user.id,
                pass_hash=ctx.hasher.hash(code),
                issued_by=actor,
                reason=reason.strip(),
                created_at=now,
                expires_at=expires,
            )
        )
        audit.record(
            s,
            now,
            "mfa.recovery_pass.issued",
            actor=actor,
            subject=user.username,
            note=reason.strip(),
            expires=expires.isoformat(),
        )
    return code, expires


def redeem(ctx: Context, s: Session, user: User, typed: str) -> bool:
    """Use a pass: True once, for a live unused pass of this user."""
    code = normalise_recovery_code(typed)
    if code is None:
        return False
    now = ctx.clock.now()
    live = s.scalars(
        select(RecoveryPass).where(
            RecoveryPass.user_id == user.id, RecoveryPass.used_at.is_(None), RecoveryPass.expires_at > now
        )
    ).all()
    for p in live:
        if ctx.hasher.verify(p.pass_hash, code):
            # Compare-and-set: two requests racing with the same pass cannot both win.
            won = s.execute(
                update(RecoveryPass).where(RecoveryPass.id == p.id, RecoveryPass.used_at.is_(None)).values(used_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if won:
                audit.record(s, now, "mfa.recovery_pass.used", actor=user.username, subject=user.username)
                return True
    return False


def redeem_for(ctx: Context, username: str, typed: str) -> bool:
    """Use a pass of `username` in place of a recovery code (registering a first method again)."""
    with ctx.tx() as s:
        return redeem(ctx, s, ctx.user(s, username), typed)


def redeem_and_clear(ctx: Context, username: str, typed: str) -> bool:
    """Use a pass to start over: the user's methods go, the MFA application stays, and the next
    step is registering a method."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if not redeem(ctx, s, user, typed):
            return False
        clear_mfa(s, user, ctx.clock.now(), actor=username, reason="help-desk one-time pass", keep_applied=True)
        return True
