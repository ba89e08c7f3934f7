"""Phones as a second factor: register one, send it a one-time code, check the code."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campusvpn.core.codes import new_phone_code, phone_code_digest
from campusvpn.core.phones import CHANNELS, Channel, InvalidPhone, PhoneKind, parse_phone
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Forbidden, Invalid, NotFound
from campusvpn.service.mfa_methods import confirm, method_label, require_applied
from campusvpn.service.sender import Message
from campusvpn.store.models import MfaMethod, PhoneChallenge, User
from campusvpn.texts import message as texts
from campusvpn.texts import outbound
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say


def add_phone(ctx: Context, username: str, kind: str, number: str, extension: str | None, *, actor: str) -> MfaMethod:
    """Register a phone. From the CLI the operator vouches for the number; the portal confirms
    it with a code first (begin_phone / confirm_phone)."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        method = _new_phone(ctx, s, user, kind, number, extension)
        s.flush()
        confirm(ctx, s, user, method, ctx.clock.now(), actor)
        return method


def _new_phone(ctx: Context, s: Session, user: User, kind: str, number: str, extension: str | None) -> MfaMethod:
    require_applied(user)
    try:
        pk = PhoneKind(kind)
    except ValueError as exc:
        raise Invalid(say(Code.ERROR_UNKNOWN_PHONE_KIND, kind=kind)) from exc
    try:
        phone = parse_phone(pk, number, extension, ctx.config.mfa.default_region)
    except InvalidPhone as exc:
        raise Invalid(exc.said) from exc
    existing = next((m for m in user.methods if m.phone_kind == pk.value), None)
    if existing is not None:
        if existing.confirmed_at is not None:
            raise Conflict(say(Code.ERROR_PHONE_KIND_TAKEN, username=user.username, kind=pk.value))
        # A phone added earlier and never confirmed (a lost or mistyped code): it goes first, and at
        # once, since one user has one phone of each kind (the database's unique key says so too).
        user.methods.remove(existing)
        s.flush()
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
        method = _new_phone(ctx, s, user, kind, number, extension)
        s.flush()
        send(ctx, s, user, method, channel, source)
        return method.public_id


def confirm_phone(ctx: Context, username: str, method_id: str, code: str, *, actor: str) -> list[str] | None:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        method = next((m for m in user.methods if m.public_id == method_id and m.confirmed_at is None), None)
        if method is None:
            raise NotFound(say(Code.ERROR_NO_PENDING_PHONE))
        now = ctx.clock.now()
        if not use_code(s, user, code, now, method):
            raise Invalid(say(Code.ERROR_PHONE_CODE_WRONG))
        return confirm(ctx, s, user, method, now, actor)


def send(
    ctx: Context, s: Session, user: User, method: MfaMethod, channel: str | None, source: str | None
) -> texts.Message:
    """Send a one-time code to `method` (the user's earlier codes stop working); returns what to
    tell the user."""
    allowed = CHANNELS[PhoneKind(method.phone_kind or "mobile")]
    try:
        ch = Channel(channel) if channel else allowed[0]
    except ValueError as exc:
        raise Invalid(say(Code.ERROR_UNKNOWN_CHANNEL, channel=str(channel))) from exc
    if ch not in allowed:
        raise Invalid(say(Code.ERROR_VOICE_ONLY, kind=str(method.phone_kind), channel=ch.value))
    now = ctx.clock.now()
    recent = s.scalars(
        select(PhoneChallenge.id).where(
            PhoneChallenge.user_id == user.id, PhoneChallenge.created_at > now - timedelta(hours=1)
        )
    ).all()
    if len(recent) >= ctx.config.mfa.phone_sends_per_hour:
        raise Forbidden(say(Code.ERROR_TOO_MANY_CODES))
    code = new_phone_code()
    language = user_language(ctx, user)
    # Sent before anything is stored: if the provider fails (DeliveryFailed, "try another method"),
    # the earlier code still works and the failed try does not count against the hourly limit.
    ctx.sender.send(
        Message(
            to=method.phone_number or "",
            channel=ch.value,
            text=code_text(ctx, code, ch, language),
            at=now,
            username=user.username,
            extension=method.phone_extension,
            language=language,
        )
    )
    s.execute(
        update(PhoneChallenge)
        .where(PhoneChallenge.user_id == user.id, PhoneChallenge.used_at.is_(None))
        .values(superseded=True)
    )
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
    return say(Code.SENT_SMS if ch is Channel.SMS else Code.SENT_VOICE, method=method_label(method))


def user_language(ctx: Context, user: User) -> str:
    return user.language or ctx.config.portal.default_language


def code_text(ctx: Context, code: str, channel: Channel, language: str) -> str:
    """The SMS (one segment, signed with the university's name when it fits), or the call's script
    (the code spoken digit by digit, twice); catalogue keys sms.code and voice.code."""
    minutes = int(ctx.config.mfa.phone_code_lifetime.total_seconds() // 60)
    names = outbound.senders(ctx.config.portal.university, ctx.config.service.name)
    if channel is Channel.VOICE:
        return outbound.render("voice.code", language, sender=names[0], code=" ".join(code), minutes=minutes)
    return outbound.sms("sms.code", language, names, code=code, minutes=minutes)


def use_code(s: Session, user: User, code: str, now: datetime, method: MfaMethod | None = None) -> MfaMethod | None:
    """The phone whose pending code this is (the code is used up), or None."""
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


def void_codes(s: Session, user: User) -> None:
    """Every code sent to the user's phones stops working."""
    s.execute(update(PhoneChallenge).where(PhoneChallenge.user_id == user.id).values(superseded=True))
