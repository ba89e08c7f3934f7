"""What a VPN client's own error box says (AnyConnect, openconnect, FortiClient).

A VPN client states no language, so the text is in the person's stored language (chosen in the
portal, `users.language`); for someone not named yet (a wrong password, the directory down) or
who never chose one, it is in both languages, the configured default first: a student who reads
only one of them must not be left with a refusal they cannot read."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from campusvpn.service.context import Context
from campusvpn.service.errors import ServiceError
from campusvpn.store.models import User
from campusvpn.texts.message import Message
from campusvpn.texts.render import render, render_both


def stored_language(ctx: Context, username: str | None) -> str | None:
    if not username:
        return None
    try:
        with ctx.tx() as s:
            return s.scalars(select(User.language).where(User.username == username)).one_or_none()
    except ServiceError:  # storage down: say it in both languages rather than fail again
        return None


def in_language(ctx: Context, said: Message | Iterable[Message], language: str | None) -> str:
    """`said` for the client box of a person whose stored language is `language` (None: not known)."""
    zone, helpdesk = ctx.policy.zone, (ctx.config.service.helpdesk, ctx.config.portal.helpdesk_ja)
    if language is not None and language in ("en", "ja"):
        return render(said, language, tz=zone, helpdesk=helpdesk)
    return render_both(said, ctx.config.portal.default_language, tz=zone, helpdesk=helpdesk)


def for_anyone(ctx: Context, said: Message | Iterable[Message]) -> str:
    """`said` for a client or page that names nobody: both languages, the configured default first."""
    return in_language(ctx, said, None)


def for_client(ctx: Context, said: Message | Iterable[Message], username: str | None) -> str:
    """`said` for `username`'s client box (None: the person is not known)."""
    return in_language(ctx, said, stored_language(ctx, username))
