"""MFA use cases: apply, register methods, verify codes, recovery codes, reset."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import segno
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campusvpn.core import totp
from campusvpn.core.codes import (
    looks_like_recovery_code,
    new_phone_code,
    new_recovery_code,
    normalise_recovery_code,
    phone_code_digest,
)
from campusvpn.core.phones import CHANNELS, Channel, InvalidPhone, PhoneKind, masked, parse_phone
from campusvpn.core.policy import MfaState, mfa_state
from campusvpn.platform.secretbox import SecretBoxError
from campusvpn.service import audit, notices, sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Forbidden, Invalid, NotFound
from campusvpn.service.sender import Message
from campusvpn.service.trusted import revoke_all_devices
from campusvpn.store.models import MfaMethod, PhoneChallenge, RecoveryCode, User


def state_of(user: User) -> MfaState:
    return mfa_state(user.mfa_applied_at, sum(1 for m in user.methods if m.confirmed_at is not None))


def method_label(m: MfaMethod) -> str:
    if m.kind == "totp":
        return "Authenticator app"
    return f"{(m.phone_kind or 'phone').capitalize()} phone {masked(m.phone_number or '', m.phone_extension)}"


def method_summary(m: MfaMethod) -> dict[str, object]:
    return {
        "id": m.public_id,
        "kind": m.kind,
        "phone_kind": m.phone_kind,
        "label": method_label(m),
        "default": m.is_default,
        "confirmed": m.confirmed_at is not None,
        "added_at": m.created_at.isoformat(),
        "last_used_at": m.last_used_at.isoformat() if m.last_used_at else None,
    }


def confirmed(user: User) -> list[MfaMethod]:
    """Usable methods, the default first."""
    return sorted((m for m in user.methods if m.confirmed_at is not None), key=lambda m: (not m.is_default, m.id))


def apply(ctx: Context, username: str, *, actor: str, source: str | None = None) -> User:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if user.mfa_applied_at is not None:
            raise Conflict(
                f"{user.username} applied for MFA on {user.mfa_applied_at.isoformat()}; "
                "an application cannot be repeated or withdrawn"
            )
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


# --- TOTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TotpEnrolment:
    method_id: str
    secret: str
    uri: str

    def qr_terminal(self) -> str:
        import io

        out = io.StringIO()
        segno.make(self.uri, error="m").terminal(out=out, compact=True)
        return out.getvalue()

    def qr_png(self, scale: int = 5) -> bytes:
        import io

        out = io.BytesIO()
        segno.make(self.uri, error="m").save(out, kind="png", scale=scale)
        return out.getvalue()

    def qr_svg(self, scale: int = 5) -> str:
        import io

        out = io.BytesIO()
        segno.make(self.uri, error="m").save(out, kind="svg", scale=scale)
        return out.getvalue().decode()


def pending_totp(ctx: Context, username: str) -> TotpEnrolment | None:
    """The authenticator enrolment waiting for its first code (to show its QR code again)."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        pending = next((m for m in user.methods if m.kind == "totp" and m.confirmed_at is None), None)
        if pending is None:
            return None
        secret = _secret(ctx, user, pending)
        uri = totp.provisioning_uri(secret, ctx.config.mfa.issuer, user.username, ctx.totp)
        return TotpEnrolment(pending.public_id, secret, uri)


def _context_of(user: User, public_id: str) -> str:
    return f"totp|{user.id}|{public_id}"


def _require_applied(user: User) -> None:
    if user.mfa_applied_at is None:
        raise Forbidden(f"{user.username} has not applied for MFA; apply first (`campusvpn mfa apply`)")


def begin_totp(ctx: Context, username: str, *, actor: str) -> TotpEnrolment:
    """A new authenticator secret; it counts only after `confirm_totp` proves the app has it."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        _require_applied(user)
        if any(m.kind == "totp" and m.confirmed_at is not None for m in user.methods):
            raise Conflict(f"{user.username} already has an authenticator app; delete it first to replace it")
        for m in [m for m in user.methods if m.kind == "totp" and m.confirmed_at is None]:
            user.methods.remove(m)  # an unfinished enrolment is replaced, never left usable
        now = ctx.clock.now()
        secret = totp.new_secret()
        public_id = secrets.token_hex(8)
        method = MfaMethod(
            public_id=public_id,
            kind="totp",
            created_at=now,
            secret_sealed=ctx.box.seal(secret.encode(), _context_of(user, public_id)),
        )
        user.methods.append(method)
        s.flush()
        audit.record(s, now, "mfa.totp.started", actor=actor, subject=user.username, method=public_id)
        uri = totp.provisioning_uri(secret, ctx.config.mfa.issuer, user.username, ctx.totp)
        return TotpEnrolment(public_id, secret, uri)


def confirm_totp(ctx: Context, username: str, code: str, *, actor: str) -> list[str] | None:
    """Confirm the pending authenticator with a code from the app. Returns a first set of
    recovery codes when this is the user's first method, else None."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        pending = next((m for m in user.methods if m.kind == "totp" and m.confirmed_at is None), None)
        if pending is None:
            raise NotFound(
                f"{user.username} has no authenticator app waiting for confirmation; "
                "start with `campusvpn mfa add-totp`"
            )
        now = ctx.clock.now()
        check = totp.verify(_secret(ctx, user, pending), code, now, ctx.totp, pending.last_step)
        if not check.ok:
            audit.record(s, now, "mfa.totp.confirm_failed", actor=actor, subject=user.username, outcome="fail")
            raise Invalid(
                "that code does not match; check the app shows the account "
                f"{ctx.config.mfa.issuer}:{user.username} and that the phone's clock is right"
            )
        pending.last_step = check.step
        return _confirm(ctx, s, user, pending, now, actor)


def _confirm(ctx: Context, s: Session, user: User, method: MfaMethod, now: datetime, actor: str) -> list[str] | None:
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
    if first and not _unused_recovery(s, user):
        return _new_recovery_set(ctx, s, user, now, actor)
    return None


def _secret(ctx: Context, user: User, m: MfaMethod) -> str:
    assert m.secret_sealed is not None
    try:
        return ctx.box.open(m.secret_sealed, _context_of(user, m.public_id)).decode()
    except SecretBoxError as exc:
        raise Forbidden(
            f"the authenticator secret of {user.username} cannot be read ({exc}); "
            "the key file may be wrong. Reset this user's MFA if the key is lost."
        ) from exc


# --- phones ---------------------------------------------------------------------------------


def add_phone(ctx: Context, username: str, kind: str, number: str, extension: str | None, *, actor: str) -> MfaMethod:
    """Register a phone. From the CLI the operator vouches for the number; the portal confirms
    it with a code first (begin_phone / confirm_phone)."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        method = _new_phone(ctx, user, kind, number, extension)
        s.flush()
        _confirm(ctx, s, user, method, ctx.clock.now(), actor)
        return method


def _new_phone(ctx: Context, user: User, kind: str, number: str, extension: str | None) -> MfaMethod:
    _require_applied(user)
    try:
        pk = PhoneKind(kind)
    except ValueError as exc:
        raise Invalid(f"phone kind {kind!r} is not known; use mobile, alternate or office") from exc
    try:
        phone = parse_phone(pk, number, extension, ctx.config.mfa.default_region)
    except InvalidPhone as exc:
        raise Invalid(str(exc)) from exc
    existing = next((m for m in user.methods if m.phone_kind == pk.value), None)
    if existing is not None:
        if existing.confirmed_at is not None:
            raise Conflict(f"{user.username} already has a {pk.value} phone; delete it first to change it")
        user.methods.remove(existing)
    method = MfaMethod(
        public_id=secrets.token_hex(8),
        kind="phone",
        phone_kind=pk.value,
        phone_number=phone.e164,
        phone_extension=phone.extension,
        created_at=ctx.clock.now(),
    )
    user.methods.append(method)
    return method


def begin_phone(
    ctx: Context,
    username: str,
    kind: str,
    number: str,
    extension: str | None,
    channel: str | None,
    *,
    actor: str,
    source: str | None = None,
) -> str:
    """Add an unconfirmed phone and send it a code; `confirm_phone` makes it count."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        method = _new_phone(ctx, user, kind, number, extension)
        s.flush()
        _send(ctx, s, user, method, channel, source)
        return method.public_id


def confirm_phone(ctx: Context, username: str, method_id: str, code: str, *, actor: str) -> list[str] | None:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        method = next((m for m in user.methods if m.public_id == method_id and m.confirmed_at is None), None)
        if method is None:
            raise NotFound("no phone is waiting for confirmation; add it again")
        now = ctx.clock.now()
        if not _use_phone_code(s, user, code, now, method):
            raise Invalid("that code is wrong or has expired; ask for a new one")
        return _confirm(ctx, s, user, method, now, actor)


def send_code(
    ctx: Context, s: Session, user: User, method_id: str | None, channel: str | None, source: str | None
) -> str:
    """Send a one-time code to a registered phone; returns the sentence to show the user."""
    phones = [m for m in confirmed(user) if m.kind == "phone"]
    method = next((m for m in phones if method_id in (None, m.public_id)), None)
    if method is None:
        raise NotFound("there is no registered phone to send a code to")
    return _send(ctx, s, user, method, channel, source)


def _send(ctx: Context, s: Session, user: User, method: MfaMethod, channel: str | None, source: str | None) -> str:
    allowed = CHANNELS[PhoneKind(method.phone_kind or "mobile")]
    try:
        ch = Channel(channel) if channel else allowed[0]
    except ValueError as exc:
        raise Invalid(f"channel {channel!r} is not known; use sms or voice") from exc
    if ch not in allowed:
        raise Invalid(f"a {method.phone_kind} phone can only receive a voice call, not {ch.value}")
    now = ctx.clock.now()
    recent = s.scalars(
        select(PhoneChallenge.id).where(
            PhoneChallenge.user_id == user.id, PhoneChallenge.created_at > now - timedelta(hours=1)
        )
    ).all()
    if len(recent) >= ctx.config.mfa.phone_sends_per_hour:
        raise Forbidden("too many codes were sent in the last hour; use another method or try again later")
    s.execute(
        update(PhoneChallenge)
        .where(PhoneChallenge.user_id == user.id, PhoneChallenge.used_at.is_(None))
        .values(superseded=True)
    )
    code = new_phone_code()
    salt = secrets.token_hex(8)
    s.add(
        PhoneChallenge(
            user_id=user.id,
            method_id=method.id,
            channel=ch.value,
            salt=salt,
            code_digest=phone_code_digest(code, salt),
            created_at=now,
            expires_at=now + ctx.config.mfa.phone_code_lifetime,
        )
    )
    minutes = int(ctx.config.mfa.phone_code_lifetime.total_seconds() // 60)
    spoken = " ".join(code) if ch is Channel.VOICE else code
    text = (
        f"{ctx.config.service.name} verification code: {spoken}. It expires in {minutes} minutes. "
        "Never tell it to anyone who asks for it."
    )
    ctx.sender.send(
        Message(
            to=method.phone_number or "",
            channel=ch.value,
            text=text,
            at=now,
            username=user.username,
            extension=method.phone_extension,
        )
    )
    audit.record(
        s,
        now,
        "mfa.code_sent",
        actor=user.username,
        subject=user.username,
        source=source,
        method=method.public_id,
        channel=ch.value,
    )
    label = method_label(method)
    return (
        f"We sent a code by text message to {label}."
        if ch is Channel.SMS
        else f"We are calling {label} to read you a code."
    )


def _use_phone_code(
    s: Session, user: User, code: str, now: datetime, method: MfaMethod | None = None
) -> MfaMethod | None:
    code = code.strip()
    q = select(PhoneChallenge).where(
        PhoneChallenge.user_id == user.id,
        PhoneChallenge.used_at.is_(None),
        PhoneChallenge.superseded.is_(False),
        PhoneChallenge.expires_at > now,
    )
    if method is not None:
        q = q.where(PhoneChallenge.method_id == method.id)
    for ch in s.scalars(q):
        if hmac.compare_digest(ch.code_digest, phone_code_digest(code, ch.salt)):
            # Compare-and-set, so two nodes cannot both accept the same code.
            done = s.execute(
                update(PhoneChallenge)
                .where(PhoneChallenge.id == ch.id, PhoneChallenge.used_at.is_(None))
                .values(used_at=now)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return s.get(MfaMethod, ch.method_id)
    return None


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeCheck:
    ok: bool
    method: str | None = None  # totp | phone | recovery
    method_id: str | None = None
    replayed: bool = False
    recovery_left: int | None = None


def verify_code(ctx: Context, s: Session, user: User, code: str, method_id: str | None = None) -> CodeCheck:
    """Check a second-factor code against the user's methods. Any code is used up on success."""
    now = ctx.clock.now()
    if looks_like_recovery_code(code):
        left = use_recovery_code(ctx, s, user, code, now)
        return CodeCheck(ok=left is not None, method="recovery", recovery_left=left)
    digits = code.strip().replace(" ", "")
    if not digits.isdigit():
        return CodeCheck(ok=False)
    methods = [m for m in confirmed(user) if method_id in (None, m.public_id)]
    phone = _use_phone_code(s, user, digits, now)
    if phone is not None and phone in methods:
        phone.last_used_at = now
        return CodeCheck(ok=True, method="phone", method_id=phone.public_id)
    replayed = False
    for m in (m for m in methods if m.kind == "totp"):
        check = totp.verify(_secret(ctx, user, m), digits, now, ctx.totp, m.last_step)
        replayed = replayed or check.replayed
        if check.ok and check.step is not None:
            # Advance last_step only forwards, atomically: the same code is never accepted twice.
            done = s.execute(
                update(MfaMethod)
                .where(MfaMethod.id == m.id)
                .where((MfaMethod.last_step.is_(None)) | (MfaMethod.last_step < check.step))
                .values(last_step=check.step, last_used_at=now)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                s.refresh(m)
                return CodeCheck(ok=True, method="totp", method_id=m.public_id)
            replayed = True
    return CodeCheck(ok=False, replayed=replayed)


# --- recovery codes -------------------------------------------------------------------------


def _unused_recovery(s: Session, user: User) -> list[RecoveryCode]:
    return list(s.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))))


def recovery_left(s: Session, user: User) -> int:
    return len(_unused_recovery(s, user))


def _new_recovery_set(ctx: Context, s: Session, user: User, now: datetime, actor: str) -> list[str]:
    s.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)).values(used_at=now)
    )
    codes = [new_recovery_code() for _ in range(ctx.config.mfa.recovery_code_count)]
    for c in codes:
        s.add(RecoveryCode(user_id=user.id, code_hash=ctx.hasher.hash(c), created_at=now))
    audit.record(s, now, "mfa.recovery_codes.generated", actor=actor, subject=user.username, count=len(codes))
    return codes


def regenerate_recovery_codes(ctx: Context, username: str, *, actor: str) -> list[str]:
    """A new set; every code of the old set stops working."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        _require_applied(user)
        codes = _new_recovery_set(ctx, s, user, ctx.clock.now(), actor)
        notices.security_changed(ctx, user, "recovery_codes")
        return codes


def use_recovery_code(ctx: Context, s: Session, user: User, typed: str, now: datetime) -> int | None:
    """Spend one recovery code; returns how many are left, or None if it was not one of them."""
    code = normalise_recovery_code(typed)
    if code is None:
        return None
    unused = _unused_recovery(s, user)
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


# --- changes --------------------------------------------------------------------------------


def set_default(ctx: Context, username: str, method_id: str, *, actor: str) -> None:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        target = next((m for m in confirmed(user) if m.public_id == method_id), None)
        if target is None:
            raise NotFound(f"{user.username} has no method {method_id}")
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
            "confirm with a second factor first: changes to security info need one from the "
            f"last {int(ctx.config.mfa.step_up_max_age.total_seconds() // 60)} minutes"
        )
    with ctx.tx() as s:
        user = ctx.user(s, username)
        target = next((m for m in user.methods if m.public_id == method_id), None)
        if target is None:
            raise NotFound(f"{user.username} has no method {method_id}")
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


def clear_mfa(s: Session, user: User, now: datetime, *, actor: str, reason: str, keep_applied: bool) -> None:
    """Remove every method, recovery code, pending code and trusted device."""
    user.methods.clear()
    s.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)).values(used_at=now)
    )
    s.execute(update(PhoneChallenge).where(PhoneChallenge.user_id == user.id).values(superseded=True))
    revoke_all_devices(s, user, now, actor=actor, reason=f"MFA reset: {reason}")
    user.mfa_emptied_at = None
    if not keep_applied:
        user.mfa_applied_at = None


def reset(ctx: Context, username: str, *, actor: str, reason: str) -> None:
    """Administrator reset: the user registers a first method again at the next sign-in.
    The application stays (MFA cannot be switched off), so no new activation delay starts."""
    if not reason.strip():
        raise Invalid("say why MFA is reset (--reason); it is kept in the audit trail")
    with ctx.tx() as s:
        user = ctx.user(s, username)
        now = ctx.clock.now()
        clear_mfa(s, user, now, actor=actor, reason=reason, keep_applied=True)
        audit.record(s, now, "mfa.reset", actor=actor, subject=user.username, note=reason)
        notices.security_changed(ctx, user, "mfa_reset")
        sessions.end_for_user(s, user, now, "Your MFA was reset; register a method and sign in again.", actor=actor)
        sessions.end_portal(s, user.username)


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
