"""E-mail notices to a user's address: security-info changes and the account's lifecycle.

Every notice goes through the mail queue (service.mail_queue) in the transaction of the event,
keyed by that event, so each is sent once. Security notices are sent in both languages (the
portal's two), because the mail is read before anyone knows which one the user prefers, and a
change the user did not make must not go unnoticed."""

from __future__ import annotations

import hashlib
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from campusvpn.core.calendar import format_local
from campusvpn.service import mail_queue
from campusvpn.service.context import Context
from campusvpn.store.models import MailMessage, User

CHANGES: dict[str, tuple[str, str]] = {
    "method_added": ("A verification method was added: {what}.", "確認方法が追加されました：{what}"),
    "method_deleted": ("A verification method was deleted: {what}.", "確認方法が削除されました：{what}"),
    "default_changed": ("Your default verification method is now: {what}.", "既定の確認方法が変更されました：{what}"),
    "recovery_codes": (
        "A new set of recovery codes was made; the old codes no longer work.",
        "リカバリーコードが再発行されました。以前のコードは使えません。",
    ),
    "mfa_reset": (
        "Your MFA was reset by the IT staff; register a method at your next sign-in.",
        "IT 担当者により MFA がリセットされました。次回サインイン時に確認方法を登録してください。",
    ),
    "passkey_added": ("A passkey was added: {what}.", "パスキーが追加されました：{what}"),
    "passkey_deleted": ("A passkey was deleted: {what}.", "パスキーが削除されました：{what}"),
    "password_changed": ("Your password was changed.", "パスワードが変更されました。"),
    "email_changed": (
        "Notices now go to another e-mail address: {what}.",
        "通知の送信先メールアドレスが変更されました：{what}",
    ),
    "identity_linked": (
        "A verified identity ({what}) was linked to your account; it can now reset your password and MFA.",
        "本人確認済みの ID（{what}）がアカウントに連携されました。パスワードと MFA のリセットに使えます。",
    ),
    "identity_unlinked": (
        "The verified identity ({what}) was unlinked from your account.",
        "本人確認済みの ID（{what}）とアカウントの連携が解除されました。",
    ),
    "password_self_reset": (
        "Your password was reset with your verified identity.",
        "本人確認済みの ID によりパスワードがリセットされました。",
    ),
    "mfa_self_reset": (
        "Your MFA was reset with your verified identity; register a method at your next sign-in.",
        "本人確認済みの ID により MFA がリセットされました。次回サインイン時に確認方法を登録してください。",
    ),
}


def security_changed(
    ctx: Context, user: User, change: str, what: str = "", source: str | None = None, *, to: str | None = None
) -> bool:
    """Tell the user (at `to`, else their address); False when they have no address on file
    (the audit trail still has it)."""
    address = to or user.email
    if not address:
        return False
    now = ctx.clock.now()
    en, ja = CHANGES[change]
    when = format_local(now, ctx.policy.zone)
    where = f" from {source}" if source else ""
    text = (
        f"[{ctx.config.service.name}] {user.username}: {en.format(what=what)} ({when}{where})\n"
        f"If this was not you, contact {ctx.config.service.helpdesk} at once.\n\n"
        f"[{ctx.config.service.name}] {user.username}：{ja.format(what=what)}（{when}）\n"
        f"心当たりがない場合は、すぐに {ctx.config.service.helpdesk} に連絡してください。"
    )
    s = object_session(user)
    assert s is not None, "security notices are queued in the transaction of the change"
    digest = hashlib.sha256(f"{change}\0{what}\0{source}".encode()).hexdigest()[:16]
    return mail_queue.enqueue(
        ctx,
        s,
        key=f"security:{user.username}:{now.isoformat()}:{digest}",
        to=address,
        username=user.username,
        subject=f"[{ctx.config.service.name}] Your security info changed / セキュリティ情報が変更されました",
        body=text,
    )
    return True


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
        "helpdesk": ctx.config.service.helpdesk,
        "portal_url": ctx.config.service.portal_url,
        "checklist": checklist,
        **params,
    }
    return ctx.texts.render(kind, lang, **values)


def notify(ctx: Context, s: Session, user: User, kind: str, key: str, **params: str) -> bool:
    """Record the notice for the portal, mail it (and, with [sender] sms_notices, text it to the
    user's mobile phone), each once per `key`. True if it was new."""
    subject, body = render(ctx, user, kind, **params)
    subject = f"[{ctx.config.service.name}] {subject}"
    # The portal's copy: every user sees their notices, with or without an address on file.
    new = mail_queue.enqueue(
        ctx, s, key=f"portal:{key}", to="", username=user.username, subject=subject, body=body, channel="portal"
    )
    if user.email:
        new |= mail_queue.enqueue(ctx, s, key=key, to=user.email, username=user.username, subject=subject, body=body)
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
            body=subject,
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


CONFIRM = (
    "Open this link to have {service} notices for {username} sent to this address:\n{link}\n\n"
    "The link works once, for {hours} hours. If you did not ask for this, ignore this mail.",
    "{service} のアカウント {username} の通知をこのアドレスで受け取るには、次のリンクを開いてください：\n{link}\n\n"
    "リンクは 1 回だけ、{hours} 時間有効です。心当たりがない場合は、このメールを無視してください。",
)


def confirm_address(ctx: Context, s: Session, user: User, address: str, link: str, *, key: str) -> bool:
    """The link that proves the user reads `address`, in the user's language."""
    lang = 1 if (user.language or ctx.config.portal.default_language) == "ja" else 0
    hours = int(ctx.config.passwords.email_confirm_lifetime.total_seconds() // 3600)
    body = CONFIRM[lang].format(service=ctx.config.service.name, username=user.username, link=link, hours=hours)
    subject = ("Confirm your e-mail address", "メールアドレスの確認")[lang]
    return mail_queue.enqueue(
        ctx,
        s,
        key=key,
        to=address,
        username=user.username,
        subject=f"[{ctx.config.service.name}] {subject}",
        body=body,
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
