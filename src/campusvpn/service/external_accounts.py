"""Accounts made at sign-in for people the university's directory or identity provider knows, and
the rules every identity provider (OpenID Connect, SAML) shares: the user name it gives normalised
like every name, the account found or made, whether its own MFA counts as the second factor.

Only with `[identity] create_accounts`; the role comes from `[identity] role_map` (the first of the
person's values that is mapped) or `default_role`. The account starts like any imported one: an
affiliation from today, no MFA yet, so the VPN policy applies exactly as for a local account."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.core.usernames import InvalidUsername
from campusvpn.service import accounts, audit
from campusvpn.service.context import Context
from campusvpn.service.errors import ServiceError
from campusvpn.store.models import User


@dataclass(frozen=True)
class Provisioned:
    user: User | None
    why: str | None = None  # why no account was made


def role_for(ctx: Context, values: Iterable[str]) -> str | None:
    mapping = ctx.config.identity.role_map
    for v in values:
        if v in mapping:
            return mapping[v]
    return ctx.config.identity.default_role or None


def provision(
    ctx: Context,
    s: Session,
    username: str,
    *,
    values: Iterable[str],
    name: str | None,
    email: str | None,
    source: str,
) -> Provisioned:
    if not ctx.config.identity.create_accounts:
        return Provisioned(None, "create_accounts is off")
    role = role_for(ctx, values)
    if role is None:
        return Provisioned(None, "no role: nothing in role_map matched and default_role is empty")
    try:
        user = accounts.add_new_in(ctx, s, accounts.NewUser(username, role, name=name, email=email), actor=source)
    except ServiceError as exc:
        return Provisioned(None, str(exc))
    audit.record(s, ctx.clock.now(), "account.provisioned", actor=source, subject=user.username, role=role)
    return Provisioned(user)


class NotAccepted(Exception):
    """The identity provider vouched for someone who cannot sign in here (not a user name here, no
    account and none may be made). Nothing was stored."""


def username_from(ctx: Context, raw: object, where: str) -> str:
    """The provider's user name (`where`: which claim or attribute) normalised like every name."""
    if not isinstance(raw, str) or not raw.strip():
        raise NotAccepted(f"user name {where}={raw!r}: no {where}")
    try:
        return ctx.usernames.normalise(raw)
    except InvalidUsername as exc:
        raise NotAccepted(f"user name {where}={raw!r}: {exc}") from exc


def account_for(
    ctx: Context,
    s: Session,
    username: str,
    *,
    values: Iterable[str],
    name: str | None,
    email: str | None,
    source: str,
) -> bool:
    """Find the account, or make it when allowed (True: made now); NotAccepted otherwise."""
    if s.scalars(select(User.id).where(User.username == username)).first() is not None:
        return False
    made = provision(ctx, s, username, values=values, name=name, email=email, source=source)
    if made.user is None:
        raise NotAccepted(f"{username} has no account here ({made.why})")
    return True
