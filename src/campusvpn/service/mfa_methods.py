"""A user's registered second-factor methods: which ones count, what they are called, and what
registering one takes (an MFA application first; once confirmed, a default and recovery codes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from campusvpn.core.phones import masked
from campusvpn.service import audit, notices, recovery_codes
from campusvpn.service.context import Context
from campusvpn.service.errors import Forbidden
from campusvpn.store.models import MfaMethod, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.texts.render import render

PHONE_NAMES = {"mobile": Code.METHOD_MOBILE, "alternate": Code.METHOD_ALTERNATE, "office": Code.METHOD_OFFICE}


def method_label(m: MfaMethod) -> Message:
    """A method's name, rendered in the reader's language (`label` in summaries is its English)."""
    if m.kind == "totp":
        return say(Code.METHOD_TOTP_NAMED, name=m.label) if m.label else say(Code.METHOD_TOTP)
    number = masked(m.phone_number or "", m.phone_extension)
    return say(PHONE_NAMES.get(m.phone_kind or "", Code.METHOD_MOBILE), number=number)


def method_summary(m: MfaMethod) -> dict[str, object]:
    return {
        "id": m.public_id,
        "kind": m.kind,
        "phone_kind": m.phone_kind,
        "label": render(method_label(m), "en"),
        "said": method_label(m).to_json(),  # JSON-safe: summaries also leave through the API
        "default": m.is_default,
        "confirmed": m.confirmed_at is not None,
        "added_at": m.created_at.isoformat(),
        "last_used_at": m.last_used_at.isoformat() if m.last_used_at else None,
    }


def confirmed(user: User) -> list[MfaMethod]:
    """Usable methods, the default first."""
    return sorted((m for m in user.methods if m.confirmed_at is not None), key=lambda m: (not m.is_default, m.id))


def require_applied(user: User) -> None:
    if user.mfa_applied_at is None:
        raise Forbidden(say(Code.ERROR_NOT_APPLIED, username=user.username))


def confirm(ctx: Context, s: Session, user: User, method: MfaMethod, now: datetime, actor: str) -> list[str] | None:
    """Make a registered method count. Returns a first set of recovery codes when this is the
    user's first method and no unused set exists, else None."""
    first = not confirmed(user)
    method.confirmed_at = now
    if first or not any(m.is_default for m in confirmed(user)):
        for m in user.methods:
            m.is_default = m is method
    user.mfa_emptied_at = None
    audit.record(
        s,
        now,
        "mfa.method.added",
        actor=actor,
        subject=user.username,
        method=method.public_id,
        kind=method.kind,
        phone_kind=method.phone_kind,
    )
    notices.security_changed(ctx, user, "method_added", method_label(method))
    if first and not recovery_codes.recovery_left(s, user):
        return recovery_codes.make(ctx, s, user, now, actor)
    return None
