"""The first factor: one rule for the VPN form and the portal alike.

`[identity] first_factor` says who checks a password: campusvpn's own Argon2id hash (`local`) or
the university's LDAP directory (`ldap`). Either way the account itself is campusvpn's (MFA,
affiliation, training, policy); a directory user without one gets it here only when
`[identity] create_accounts` is on (`external_accounts.provision`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.service import external_accounts
from campusvpn.service.context import Context
from campusvpn.store.models import User


@dataclass(frozen=True)
class Checked:
    user: User | None  # None: unknown user or wrong password (never told apart to the user)
    unavailable: bool = False  # the backend could not be asked: not a failure of the user's
    detail: dict[str, object] = field(default_factory=dict)  # for the audit trail


def check(ctx: Context, s: Session, username: str, password: str) -> Checked:
    user = s.scalars(select(User).where(User.username == username)).one_or_none()
    if ctx.config.identity.first_factor == "local" or ctx.directory is None:
        ok = ctx.hasher.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            return Checked(None, detail={"known_user": user is not None})
        if user.password_hash and ctx.hasher.needs_rehash(user.password_hash):
            user.password_hash = ctx.hasher.hash(password)  # Argon2 parameters changed in config
        return Checked(user)
    # Here only: ldap3 is loaded when a directory is configured (a gateway worker starts without it).
    from campusvpn.service.ldap_directory import DirectoryUnavailable

    try:
        entry = ctx.directory.authenticate(username, password)
    except DirectoryUnavailable as exc:
        return Checked(None, unavailable=True, detail={"backend": "ldap", "why": str(exc)[:200]})
    if entry is None:
        return Checked(None, detail={"backend": "ldap", "known_user": user is not None})
    if user is None:
        ldap = ctx.config.ldap
        made = external_accounts.provision(
            ctx,
            s,
            username,
            values=entry.attributes.get(ldap.role_attribute.lower(), []) if ldap.role_attribute else [],
            name=entry.first(ldap.name_attribute),
            email=entry.first(ldap.email_attribute),
            source="ldap",
        )
        if made.user is None:
            return Checked(None, detail={"backend": "ldap", "known_user": False, "not_created": made.why})
        return Checked(made.user, detail={"backend": "ldap", "created": True})
    return Checked(user, detail={"backend": "ldap"})
