"""E-mail notices to a user's address: security-info changes and the account's lifecycle.

Every notice goes through the mail queue (service.mail_queue) in the transaction of the event,
keyed by that event, so each is sent once. Every text comes from the message catalogue
(texts/outbound) in the user's language; security notices to a user who has not chosen one are
sent in both, because a change the user did not make must not go unnoticed. Every e-mail ends by
saying who sent it and that nobody asks for a password or a code."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from campusvpn.core.calendar import format_local
from campusvpn.service import mail_queue
from campusvpn.service.context import Context
from campusvpn.store.models import MailMessage, User
from campusvpn.texts import outbound
from campusvpn.texts.message import Message
from campusvpn.texts.render import render as render_message

# The changes a security notice names (catalogue keys `mail.security.<change>`, each with {what}).
CHANGES = (
    "method_added",
    "method_deleted",
    "default_changed",
    "recovery_codes",
    "mfa_reset",
    "passkey_added",
    "passkey_deleted",
    "password_changed",
    "email_changed",
    "identity_linked",
    "identity_unlinked",
    "password_self_reset",
    "mfa_self_reset",
)


def helpdesk(ctx: Context, lang: str) -> str:
    """The help desk as a sentence in `lang` names it."""
    return ctx.config.portal.helpdesk_ja if lang == "ja" else ctx.config.service.helpdesk


def sender(ctx: Context) -> str:
    """Who every message says it is from: the university and the service."""
    return outbound.senders(ctx.config.portal.university, ctx.config.service.name)[0]


def footer(ctx: Context, lang: str) -> str:
    """The end of every e-mail: who sent it, and that nobody asks for a password or a code."""
    return outbound.render("mail.footer", lang, sender=sender(ctx), portal_url=ctx.config.service.portal_url)


def security_changed(
    ctx: Context,
    user: User,
    change: str,
    what: str | Mapping[str, str] | Message = "",
    source: str | None = None,
    *,
    to: str | None = None,
) -> bool:
    """Tell the user (at `to`, else their address); False when they have no address on file
    (the audit trail still has it). `what` is the same in every language, given per language, or a
    message (a method's name)."""
    address = to or user.email
    if not address:
        return False
    assert change in CHANGES, change
    now = ctx.clock.now()
    when = format_local(now, ctx.policy.zone)
    # In the language the user chose; before they chose one, in both (the default first): a change
    # they did not make must not go unread.
    langs = (
        [user.language]
        if user.language
        else sorted(("en", "ja"), key=lambda x: x != ctx.config.portal.default_language)
    )
    parts = []
    for lang in langs:
        where = outbound.render("mail.security.where", lang, source=source) if source else ""
        named = _named(what, lang)
        change_text = outbound.render(f"mail.security.{change}", lang, what=named)
        body = outbound.render(
            "mail.security.body",
            lang,
            username=user.username,
            change=change_text,
            when=when,
            where=where,
            helpdesk=helpdesk(ctx, lang),
        )
        parts.append(f"[{sender(ctx)}] {body}")
    text = "\n\n".join(parts) + "\n\n" + footer(ctx, langs[0])
    subject = " / ".join(outbound.render("mail.security.subject", lang) for lang in langs)
    s = object_session(user)
    assert s is not None, "security notices are queued in the transaction of the change"
    said = _named(what, "en")
    digest = hashlib.sha256(f"{change}\0{said}\0{source}".encode()).hexdigest()[:16]
    return mail_queue.enqueue(
        ctx,
        s,
        key=f"security:{user.username}:{now.isoformat()}:{digest}",
        to=address,
        username=user.username,
        subject=f"[{sender(ctx)}] {subject}",
        body=text,
    )
    return True


def _named(what: str | Mapping[str, str] | Message, lang: str) -> str:
    if isinstance(what, Message):
        return render_message(what, lang)
    return what if isinstance(what, str) else what[lang]


# --- lifecycle notices: in the user's language (the portal's default until they chose one) -----


def language(ctx: Context, user: User) -> str:
    return user.language or ctx.config.portal.default_language


def render(ctx: Context, user: User, kind: str, **params: str) -> tuple[str, str]:
    """(subject, body) of a notice for this user, in their language, from the operator's texts."""
    lang = language(ctx, user)
    c = ctx.config.lifecycle
    checklist = "\n".join(f"- {x}" for x in (c.backup_checklist_ja if lang == "ja" else c.backup_checklist_en))
    values = {
        "username": user.username,
        "service": ctx.config.service.name,
        "helpdesk": helpdesk(ctx, lang),
        "portal_url": ctx.config.service.portal_url,
        "checklist": checklist,
        **params,
    }
    return ctx.texts.render(kind, lang, **values)


def notify(ctx: Context, s: Session, user: User, kind: str, key: str, **params: str) -> bool:
    """Record the notice for the portal, mail it (and, with [sender] sms_notices, text it to the
    user's mobile phone), each once per `key`. True if it was new."""
    lang = language(ctx, user)
    subject, body = render(ctx, user, kind, **params)
    mail_subject = f"[{sender(ctx)}] {subject}"
    # The portal's copy: every user sees their notices, with or without an address on file.
    new = mail_queue.enqueue(
        ctx, s, key=f"portal:{key}", to="", username=user.username, subject=mail_subject, body=body, channel="portal"
    )
    if user.email:
        new |= mail_queue.enqueue(
            ctx,
            s,
            key=key,
            to=user.email,
            username=user.username,
            subject=mail_subject,
            body=f"{body}\n\n{footer(ctx, lang)}",
        )
    mobile = next(
        (m for m in user.methods if m.phone_kind == "mobile" and m.confirmed_at is not None and m.phone_number), None
    )
    if ctx.config.sender.sms_notices and mobile is not None:
        # A text message is short: the subject line says it; the mail and the portal have the details.
        new |= mail_queue.enqueue(
            ctx,
            s,
            key=f"{key}:sms",
            to=mobile.phone_number or "",
            username=user.username,
            subject="",
            body=outbound.render("sms.notice", lang, sender=sender(ctx), subject=subject),
            channel="sms",
        )
    return new


def ending_key(username: str, last_day: date, days: int) -> str:
    return f"affiliation_ending:{username}:{last_day.isoformat()}:{days}"


def affiliation_ending(ctx: Context, s: Session, user: User, *, days: int, last_day: date) -> bool:
    """ "Your affiliation ends in N days": once per user, last day and N. False if not queued now."""
    return notify(
        ctx,
        s,
        user,
        "affiliation_ending",
        ending_key(user.username, last_day, days),
        last_day=last_day.isoformat(),
        days=str(days),
        plural="" if days == 1 else "s",
    )


def account_revoked(ctx: Context, s: Session, user: User, *, last_day: date) -> bool:
    key = f"account_revoked:{user.username}:{last_day.isoformat()}"
    return notify(ctx, s, user, "account_revoked", key, last_day=last_day.isoformat())


def confirm_address(ctx: Context, s: Session, user: User, address: str, link: str, *, key: str) -> bool:
    """The link that proves the user reads `address`, in the user's language."""
    lang = language(ctx, user)
    hours = int(ctx.config.passwords.email_confirm_lifetime.total_seconds() // 3600)
    body = outbound.render(
        "mail.confirm.body", lang, service=sender(ctx), username=user.username, link=link, hours=hours
    )
    return mail_queue.enqueue(
        ctx,
        s,
        key=key,
        to=address,
        username=user.username,
        subject=f"[{sender(ctx)}] {outbound.render('mail.confirm.subject', lang)}",
        body=f"{body}\n\n{footer(ctx, lang)}",
    )


def recent(ctx: Context, username: str, limit: int = 10) -> list[dict[str, str]]:
    """The user's latest notices as the portal shows them (the portal's copy of each)."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        rows = s.scalars(
            select(MailMessage)
            .where(MailMessage.username == user.username, MailMessage.channel == "portal")
            .order_by(MailMessage.created_at.desc(), MailMessage.id.desc())
            .limit(limit)
        ).all()
        prefix = f"[{ctx.config.service.name}] "
        return [
            {"at": r.created_at.isoformat(), "subject": r.subject.removeprefix(prefix), "body": r.body} for r in rows
        ]
