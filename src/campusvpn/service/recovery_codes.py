"""Recovery codes: a set made at once (the old set stops working), spent one at a time, counted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campusvpn.core.codes import new_recovery_code, normalise_recovery_code
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.store.models import RecoveryCode, User


def _unused(s: Session, user: User) -> list[RecoveryCode]:
    return list(s.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))))


def was_used(ctx: Context, s: Session, user: User, typed: str) -> bool:
    """Whether `typed` is one of the user's recovery codes that no longer works: spent, or of a set
    that was replaced (checked only after it matched no unused code: only a failure pays for it)."""
    code = normalise_recovery_code(typed)
    if code is None:
        return False
    spent = s.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_not(None))
    )
    return any(ctx.hasher.verify(rc.code_hash, code) for rc in spent)


def recovery_left(s: Session, user: User) -> int:
    return len(_unused(s, user))


def void(s: Session, user: User, now: datetime) -> None:
    """Every unused code of the user stops working."""
    s.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)).values(used_at=now)
    )


def make(ctx: Context, s: Session, user: User, now: datetime, actor: str) -> list[str]:
    """A new set; every code of the old set stops working. Only digests are stored."""
    void(s, user, now)
    codes = [new_recovery_code() for _ in range(ctx.config.mfa.recovery_code_count)]
    for c in codes:
        s.add(RecoveryCode(user_id=user.id, code_hash=ctx.hasher.hash(c), created_at=now))
    audit.record(s, now, "mfa.recovery_codes.generated", actor=actor, subject=user.username, count=len(codes))
    return codes


def use_recovery_code(ctx: Context, s: Session, user: User, typed: str, now: datetime) -> int | None:
    """Spend one recovery code; returns how many are left, or None if it was not one of them."""
    code = normalise_recovery_code(typed)
    if code is None:
        return None
    unused = _unused(s, user)
    for rc in unused:
        if ctx.hasher.verify(rc.code_hash, code):
            done = s.execute(
                update(RecoveryCode).where(RecoveryCode.id == rc.id, RecoveryCode.used_at.is_(None)).values(used_at=now)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None
            left = len(unused) - 1
            audit.record(s, now, "mfa.recovery_code.used", actor=user.username, subject=user.username, left=left)
            return left
    return None
