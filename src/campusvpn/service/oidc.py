"""A valid ID token's claims to a campusvpn account: the user name claim normalised like every
name, the account found or (with `[identity] create_accounts`) made, and the audit record that
says whether the second factor is campusvpn's or the provider's (and why)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campusvpn.core.federation import second_factor_note
from campusvpn.service import audit, external_accounts
from campusvpn.service.context import Context
from campusvpn.service.oidc_client import OidcClient, OidcRefused


@dataclass(frozen=True)
class Verified:
    username: str
    idp_mfa: str | None  # the amr/acr evidence when the provider's MFA is trusted, else None
    created: bool = False


def accept(ctx: Context, client: OidcClient, claims: dict[str, Any], *, source: str | None) -> Verified:
    """The account for a valid ID token's claims, made if allowed; OidcRefused changes nothing."""
    cfg = client.cfg
    now = ctx.clock.now()
    evidence = client.mfa_evidence(claims)
    try:
        username = external_accounts.username_from(ctx, claims.get(cfg.username_claim), f"claim {cfg.username_claim}")
        with ctx.tx() as s:
            values = claims.get(cfg.role_claim) if cfg.role_claim else None
            created = external_accounts.account_for(
                ctx,
                s,
                username,
                values=[str(v) for v in values] if isinstance(values, list) else [str(values)] if values else [],
                name=claims.get("name") if isinstance(claims.get("name"), str) else None,
                email=claims.get("email") if isinstance(claims.get("email"), str) else None,
                source="oidc",
            )
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
                second_factor=second_factor_note(evidence),
            )
    except external_accounts.NotAccepted as exc:
        raise OidcRefused(str(exc)) from exc
    return Verified(username, evidence, created)
