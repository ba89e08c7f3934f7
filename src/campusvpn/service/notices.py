"""E-mail notices to a user's recovery address when their security info changes.

Sent in both languages (the portal's two), because the mail is read before anyone knows which
one the user prefers, and a change the user did not make must not go unnoticed."""

from __future__ import annotations

from campusvpn.core.calendar import format_local
from campusvpn.service.context import Context
from campusvpn.service.sender import Message
from campusvpn.store.models import User

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
}


def security_changed(ctx: Context, user: User, change: str, what: str = "", source: str | None = None) -> bool:
    """Tell the user; False when they have no address on file (the audit trail still has it)."""
    if not user.email:
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
    ctx.sender.send(Message(to=user.email, channel="email", text=text, at=now, username=user.username))
    return True
