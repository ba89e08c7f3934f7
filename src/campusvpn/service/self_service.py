"""What members change themselves: their password (the current one and a fresh second factor)
and the e-mail address notices go to (confirmed by a link mailed to it through the queue)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import select, update

from campusvpn.service import accounts, audit, notices
from campusvpn.service.context import Context
from campusvpn.service.errors import Forbidden, Invalid, NotFound
from campusvpn.store.models import EmailConfirmation, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, Phrases, say

# A plain shape check: the address is proven by the link that reaches it, not by a pattern.
ADDRESS = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")


@dataclass(frozen=True)
class Profile:
    email: str | None
    language: str | None
    has_methods: bool


def profile(ctx: Context, username: str) -> Profile:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        return Profile(user.email, user.language, any(m.confirmed_at is not None for m in user.methods))


def set_language(ctx: Context, username: str, lang: str) -> None:
    """The language of the user's notices (mail, SMS, the VPN banner) and phone codes."""
    if lang not in ("en", "ja"):
        raise Invalid(say(Code.ERROR_LANGUAGE))
    with ctx.tx() as s:
        ctx.user(s, username).language = lang


def require_fresh(ctx: Context, fresh_second_factor_at: datetime | None) -> None:
    if fresh_second_factor_at is None or ctx.clock.now() - fresh_second_factor_at > ctx.config.mfa.step_up_max_age:
        raise Forbidden(
            say(Code.ERROR_STEP_UP_CHANGE, minutes=int(ctx.config.mfa.step_up_max_age.total_seconds() // 60))
        )


def password_problems(ctx: Context, username: str, new: str) -> list[Message]:
    """The policy, checked: each rule broken, as a phrase (empty: good)."""
    out = []
    if len(new) < ctx.config.passwords.min_length:
        out.append(say(Code.PASSWORD_RULE_MIN_LENGTH, n=ctx.config.passwords.min_length))
    if len(new) > 1024:
        out.append(say(Code.PASSWORD_RULE_MAX_LENGTH, n=1024))
    if username and username in new:
        out.append(say(Code.PASSWORD_RULE_USERNAME))
    if new and len(set(new)) < 4:
        out.append(say(Code.PASSWORD_RULE_FEW_CHARACTERS))
    return out


def change_password(
    ctx: Context,
    username: str,
    current: str,
    new: str,
    *,
    fresh_second_factor_at: datetime | None,
    source: str | None = None,
) -> None:
    """The member's own change: the current password, a new one that keeps the policy, and a
    second factor within [mfa] step_up_max_age when the user has MFA."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if any(m.confirmed_at is not None for m in user.methods):
            require_fresh(ctx, fresh_second_factor_at)
        now = ctx.clock.now()
        if not ctx.hasher.verify(user.password_hash, current):
            audit.record(s, now, "password.change_failed", actor=user.username, subject=user.username, source=source)
            raise Invalid(say(Code.ERROR_CURRENT_PASSWORD))
        problems = password_problems(ctx, user.username, new)
        if ctx.hasher.verify(user.password_hash, new):
            problems.append(say(Code.PASSWORD_RULE_SAME))
        if problems:
            raise Invalid(say(Code.ERROR_PASSWORD_REJECTED, problems=Phrases(tuple(problems))))
        accounts.set_password_in(ctx, s, user, new, now, actor=user.username)
        notices.security_changed(ctx, user, "password_changed", source=source)


# --- the address notices go to -----------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def begin_email(
    ctx: Context, username: str, address: str, *, lang: str, fresh_second_factor_at: datetime | None
) -> None:
    """Mail a confirmation link to `address`; the address counts once the link is opened."""
    address = address.strip()
    if len(address) > 254 or not ADDRESS.match(address):
        raise Invalid(say(Code.ERROR_EMAIL_BAD))
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if any(m.confirmed_at is not None for m in user.methods):
            require_fresh(ctx, fresh_second_factor_at)
        if user.email and user.email.lower() == address.lower():
            raise Invalid(say(Code.ERROR_EMAIL_SAME))
        now = ctx.clock.now()
        # One link at a time: an older one stops working.
        s.execute(
            update(EmailConfirmation)
            .where(EmailConfirmation.user_id == user.id, EmailConfirmation.used_at.is_(None))
            .values(expires_at=now)
        )
        token = secrets.token_urlsafe(32)
        s.add(
            EmailConfirmation(
                user_id=user.id,
                address=address,
                token_digest=_digest(token),
                created_at=now,
                expires_at=now + ctx.config.passwords.email_confirm_lifetime,
            )
        )
        if user.language is None and lang in ("en", "ja"):
            user.language = lang  # the language they read the portal in, until they choose one
        link = f"{ctx.config.service.portal_url.rstrip('/')}/email/confirm?token={quote(token)}&lang={lang}"
        notices.confirm_address(ctx, s, user, address, link, key=f"email_confirm:{_digest(token)}")
        audit.record(s, now, "email.confirm_sent", actor=user.username, subject=user.username)


def confirm_email(ctx: Context, token: str) -> str:
    """Open the link: the address becomes the user's. Returns the user name."""
    with ctx.tx() as s:
        now = ctx.clock.now()
        row = s.scalars(select(EmailConfirmation).where(EmailConfirmation.token_digest == _digest(token))).first()
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise NotFound(say(Code.ERROR_LINK_EXPIRED_RETRY))
        user = s.get(User, row.user_id)
        if user is None or user.status != "active":
            raise NotFound(say(Code.ERROR_LINK_EXPIRED))
        row.used_at = now
        old = user.email
        user.email = row.address
        audit.record(s, now, "email.changed", actor=user.username, subject=user.username, note=row.address)
        if old and old.lower() != row.address.lower():
            # The old address hears of it: a change nobody asked for must not go unnoticed.
            notices.security_changed(ctx, user, "email_changed", row.address, to=old)
        return user.username
