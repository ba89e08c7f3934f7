"""Authenticator apps (TOTP): set up a secret, confirm it with a first code, check codes."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from campusvpn.core import totp
from campusvpn.platform.secretbox import SecretBoxError
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Forbidden, Invalid, NotFound
from campusvpn.service.mfa_methods import confirm, require_applied
from campusvpn.store.models import MfaMethod, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say


@dataclass(frozen=True)
class TotpEnrolment:
    method_id: str
    secret: str
    uri: str

    # segno (8 MB) is imported where a QR code is drawn, not by a gateway that only checks codes.
    def qr_terminal(self) -> str:
        import segno

        out = io.StringIO()
        segno.make(self.uri, error="m").terminal(out=out, compact=True)
        return out.getvalue()

    def qr_png(self, scale: int = 5) -> bytes:
        import segno

        out = io.BytesIO()
        segno.make(self.uri, error="m").save(out, kind="png", scale=scale)
        return out.getvalue()


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


def begin_totp(ctx: Context, username: str, *, actor: str) -> TotpEnrolment:
    """A new authenticator secret; it counts only after `confirm_totp` proves the app has it."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        require_applied(user)
        apps = sum(1 for m in user.methods if m.kind == "totp" and m.confirmed_at is not None)
        most = ctx.config.mfa.max_authenticators
        if apps >= most:
            raise Conflict(say(Code.ERROR_TOO_MANY_TOTP, username=user.username, n=apps, most=most))
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


def clean_label(text: str) -> str | None:
    """The user's name for an app ("iPhone", "work phone"): tidied, at most 40 characters."""
    label = " ".join("".join(c for c in text if c.isprintable()).split())
    if len(label) > 40:
        raise Invalid(say(Code.ERROR_TOTP_NAME_LONG))
    return label or None


def confirm_totp(ctx: Context, username: str, code: str, *, actor: str, label: str = "") -> list[str] | None:
    """Confirm the pending authenticator with a code from the app, under the name the user gave
    it. Returns a first set of recovery codes when this is the user's first method, else None."""
    name = clean_label(label)
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if name and any(m.kind == "totp" and m.confirmed_at and (m.label or "") == name for m in user.methods):
            raise Conflict(say(Code.ERROR_TOTP_NAME_TAKEN, name=name))
        pending = next((m for m in user.methods if m.kind == "totp" and m.confirmed_at is None), None)
        if pending is None:
            raise NotFound(say(Code.ERROR_NO_PENDING_TOTP, username=user.username))
        now = ctx.clock.now()
        check = totp.verify(_secret(ctx, user, pending), code, now, ctx.totp, pending.last_step)
        if not check.ok:
            audit.record(s, now, "mfa.totp.confirm_failed", actor=actor, subject=user.username, outcome="fail")
            raise Invalid(say(Code.ERROR_TOTP_MISMATCH, account=f"{ctx.config.mfa.issuer}:{user.username}"))
        pending.last_step = check.step
        pending.label = name
        return confirm(ctx, s, user, pending, now, actor)


def use_code(
    ctx: Context, s: Session, user: User, methods: Iterable[MfaMethod], digits: str, now: datetime
) -> tuple[MfaMethod | None, bool]:
    """The authenticator among `methods` that accepts `digits` (the code is used up), and whether
    the code was one already used (a replay)."""
    replayed = False
    for m in methods:
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
                return m, replayed
            replayed = True
    return None, replayed


def _secret(ctx: Context, user: User, m: MfaMethod) -> str:
    assert m.secret_sealed is not None
    try:
        return ctx.box.open(m.secret_sealed, _context_of(user, m.public_id)).decode()
    except SecretBoxError as exc:
        raise Forbidden(say(Code.ERROR_TOTP_UNREADABLE, username=user.username, cause=str(exc))) from exc
