"""A valid ID token's claims to a campusvpn account: the user name claim normalised like every
name, the account found or (with `[identity] create_accounts`) made, and the audit record that
says whether the second factor is campusvpn's or the provider's (and why)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from campusvpn.core.usernames import InvalidUsername
from campusvpn.service import audit, external_accounts
from campusvpn.service.context import Context
from campusvpn.service.oidc_client import OidcClient, OidcRefused
from campusvpn.store.models import User


@dataclass(frozen=True)
class Verified:
    username: str
    idp_mfa: str | None  # the amr/acr evidence when the provider's MFA is trusted, else None
    created: bool = False


def accept(ctx: Context, client: OidcClient, claims: dict[str, Any], *, source: str | None) -> Verified:
    """The account for a valid ID token's claims, made if allowed; OidcRefused changes nothing."""
    cfg = client.cfg
    raw = claims.get(cfg.username_claim)
    now = ctx.clock.now()
    try:
        if not isinstance(raw, str):
            raise InvalidUsername(f"the ID token has no {cfg.username_claim} claim")
        username = ctx.usernames.normalise(raw)
    except InvalidUsername as exc:
        raise OidcRefused(f"user name claim {cfg.username_claim}={raw!r}: {exc}") from exc
    evidence = client.mfa_evidence(claims)
    with ctx.tx() as s:
        user = s.scalars(select(User).where(User.username == username)).one_or_none()
        created = False
        if user is None:
            values = claims.get(cfg.role_claim) if cfg.role_claim else None
            made = external_accounts.provision(
                ctx,
                s,
                username,
                values=[str(v) for v in values] if isinstance(values, list) else [str(values)] if values else [],
                name=claims.get("name") if isinstance(claims.get("name"), str) else None,
                email=claims.get("email") if isinstance(claims.get("email"), str) else None,
                source="oidc",
            )
            if made.user is None:
                raise OidcRefused(f"{username} has no account here ({made.why})")
            created = True
        audit.record(
            s,
            now,
            "signin.oidc",
            actor=username,
            subject=username,
            source=source,
            issuer=cfg.issuer,
            sub=str(claims.get("sub")),
            created=created,
            second_factor=f"skipped: the provider's MFA is trusted ({evidence})" if evidence else "campusvpn's",
        )
    return Verified(username, evidence, created)
