"""MFA as a whole: the application, the state it puts a user in, checking and sending codes
over whichever methods the user has, the default method, deleting methods, reset.

Each kind of method has its own module: authenticator (apps), phones, recovery_codes;
mfa_methods holds what registering any method takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from campusvpn.core.codes import looks_like_recovery_code
from campusvpn.core.policy import MfaState, mfa_state
from campusvpn.service import audit, authenticator, notices, phones, portal_sessions, recovery_codes, sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Forbidden, Invalid, NotFound
from campusvpn.service.mfa_methods import confirmed as confirmed
from campusvpn.service.mfa_methods import method_label as method_label
from campusvpn.service.mfa_methods import method_summary, require_applied
from campusvpn.service.recovery_codes import recovery_left as recovery_left
from campusvpn.service.recovery_codes import use_recovery_code as use_recovery_code
from campusvpn.service.trusted import revoke_all_devices
from campusvpn.store.models import User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say


def state_of(user: User) -> MfaState:
    return mfa_state(user.mfa_applied_at, sum(1 for m in user.methods if m.confirmed_at is not None))


def apply(ctx: Context, username: str, *, actor: str, source: str | None = None) -> User:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if user.mfa_applied_at is not None:
            raise Conflict(say(Code.ERROR_ALREADY_APPLIED, username=user.username, at=user.mfa_applied_at.isoformat()))
        now = ctx.clock.now()
        user.mfa_applied_at = now
        audit.record(
            s,
            now,
            "mfa.applied",
            actor=actor,
            subject=user.username,
            source=source,
            vpn_from=(now + ctx.config.mfa.activation_delay).isoformat(),
        )
        return user


# --- checking and sending codes -------------------------------------------------------------


@dataclass(frozen=True)
class CodeCheck:
    ok: bool
    method: str | None = None  # totp | phone | recovery
    method_id: str | None = None
    replayed: bool = False
    recovery_left: int | None = None
    spent_recovery: bool = False  # a recovery code that was already used (or replaced)


def verify_code(ctx: Context, s: Session, user: User, code: str, method_id: str | None = None) -> CodeCheck:
    """Check a second-factor code against the user's methods. Any code is used up on success."""
    now = ctx.clock.now()
    if looks_like_recovery_code(code):
        left = use_recovery_code(ctx, s, user, code, now)
        if left is None:
            return CodeCheck(ok=False, method="recovery", spent_recovery=recovery_codes.was_used(ctx, s, user, code))
        return CodeCheck(ok=True, method="recovery", recovery_left=left)
    digits = code.strip().replace(" ", "")
    if not digits.isdigit():
        return CodeCheck(ok=False)
    methods = [m for m in confirmed(user) if method_id in (None, m.public_id)]
    phone = phones.use_code(s, user, digits, now)
    if phone is not None and phone in methods:
        phone.last_used_at = now
        return CodeCheck(ok=True, method="phone", method_id=phone.public_id)
    app, replayed = authenticator.use_code(ctx, s, user, (m for m in methods if m.kind == "totp"), digits, now)
    if app is not None:
        return CodeCheck(ok=True, method="totp", method_id=app.public_id)
    return CodeCheck(ok=False, replayed=replayed)


def send_code(
    ctx: Context, s: Session, user: User, method_id: str | None, channel: str | None, source: str | None
) -> Message:
    """Send a one-time code to a registered phone; returns what to tell the user."""
    registered = [m for m in confirmed(user) if m.kind == "phone"]
    method = next((m for m in registered if method_id in (None, m.public_id)), None)
    if method is None:
        raise NotFound(say(Code.ERROR_NO_PHONE))
    return phones.send(ctx, s, user, method, channel, source)


# --- changes --------------------------------------------------------------------------------


def regenerate_recovery_codes(ctx: Context, username: str, *, actor: str) -> list[str]:
    """A new set; every code of the old set stops working."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        require_applied(user)
        codes = recovery_codes.make(ctx, s, user, ctx.clock.now(), actor)
        notices.security_changed(ctx, user, "recovery_codes")
        return codes


def set_default(ctx: Context, username: str, method_id: str, *, actor: str) -> None:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        target = next((m for m in confirmed(user) if m.public_id == method_id), None)
        if target is None:
            raise NotFound(say(Code.ERROR_NO_METHOD, username=user.username, method=method_id))
        for m in user.methods:
            m.is_default = m is target
        audit.record(s, ctx.clock.now(), "mfa.default_changed", actor=actor, subject=user.username, method=method_id)
        notices.security_changed(ctx, user, "default_changed", method_label(target))


def delete_method(
    ctx: Context, username: str, method_id: str, *, actor: str, fresh_second_factor_at: datetime | None
) -> MfaState:
    """Delete a method. Needs a second factor proven within `mfa.step_up_max_age` (an operator
    acting for the user passes the time of their own check). Deleting the last one leaves the
    user to register again, behind a recovery code."""
    now = ctx.clock.now()
    if fresh_second_factor_at is None or now - fresh_second_factor_at > ctx.config.mfa.step_up_max_age:
        raise Forbidden(
            say(Code.ERROR_STEP_UP_SECURITY, minutes=int(ctx.config.mfa.step_up_max_age.total_seconds() // 60))
        )
    with ctx.tx() as s:
        user = ctx.user(s, username)
        target = next((m for m in user.methods if m.public_id == method_id), None)
        if target is None:
            raise NotFound(say(Code.ERROR_NO_METHOD, username=user.username, method=method_id))
        was_default = target.is_default
        user.methods.remove(target)
        s.flush()
        rest = confirmed(user)
        if was_default and rest:
            rest[0].is_default = True
        audit.record(
            s,
            now,
            "mfa.method.deleted",
            actor=actor,
            subject=user.username,
            method=method_id,
            kind=target.kind,
            remaining=len(rest),
        )
        notices.security_changed(ctx, user, "method_deleted", method_label(target))
        if not rest and user.mfa_applied_at is not None:
            user.mfa_emptied_at = now
        return state_of(user)


def may_reregister_freely(ctx: Context, user: User) -> bool:
    """The user deleted their own last method (a step-up is needed for that) within
    [mfa] reregister_window: they set up again at sign-in without a recovery code."""
    window = ctx.config.mfa.reregister_window
    at = user.mfa_emptied_at
    return at is not None and bool(window) and ctx.clock.now() - at <= window


def clear_mfa(s: Session, user: User, now: datetime, *, actor: str, reason: str, keep_applied: bool) -> None:
    """Remove every method, recovery code, pending code and trusted device."""
    user.methods.clear()
    recovery_codes.void(s, user, now)
    phones.void_codes(s, user)
    revoke_all_devices(s, user, now, actor=actor, reason=f"MFA reset: {reason}")
    user.mfa_emptied_at = None
    if not keep_applied:
        user.mfa_applied_at = None


def reset(ctx: Context, username: str, *, actor: str, reason: str, notice: str = "mfa_reset") -> None:
    """Administrator reset (or the member's own, with a verified identity: service.identity_links):
    the user registers a first method again at the next sign-in. The application stays (MFA cannot
    be switched off), so no new activation delay starts."""
    if not reason.strip():
        raise Invalid(say(Code.ERROR_MFA_RESET_REASON))
    with ctx.tx() as s:
        user = ctx.user(s, username)
        now = ctx.clock.now()
        clear_mfa(s, user, now, actor=actor, reason=reason, keep_applied=True)
        audit.record(s, now, "mfa.reset", actor=actor, subject=user.username, note=reason)
        notices.security_changed(ctx, user, notice)
        sessions.end_for_user(s, user, now, say(Code.SESSION_MFA_RESET), actor=actor)
        portal_sessions.end_for_user(s, user.username)


def show(ctx: Context, username: str) -> dict[str, object]:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        applied = user.mfa_applied_at
        return {
            "username": user.username,
            "state": state_of(user).value,
            "applied_at": applied.isoformat() if applied else None,
            "vpn_from": (applied + ctx.config.mfa.activation_delay).isoformat() if applied else None,
            "methods": [method_summary(m) for m in confirmed(user)],
            "pending": [method_summary(m) for m in user.methods if m.confirmed_at is None],
            "recovery_codes_left": recovery_left(s, user),
            "recovery_codes_total": ctx.config.mfa.recovery_code_count,
            "reregistration_needs_recovery_code": user.mfa_emptied_at is not None,
        }
