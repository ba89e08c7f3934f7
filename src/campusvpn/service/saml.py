"""A valid SAML assertion to a campusvpn account: used once only (the assertion IDs seen are kept
in the database until they expire, so every worker process agrees), the user name from the
configured attribute or the NameID normalised like every name, the account found or (with
`[identity] create_accounts`) made, and the audit record that says whose second factor follows."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy import exc as sa_exc

from campusvpn.core.federation import second_factor_note
from campusvpn.service import audit, external_accounts
from campusvpn.service.context import Context
from campusvpn.service.saml_sp import Asserted, SamlRefused, SamlServiceProvider
from campusvpn.store.models import SeenAssertion

MAX_ID = 256


@dataclass(frozen=True)
class Verified:
    username: str
    idp_mfa: str | None  # the AuthnContext evidence when the provider's MFA is trusted, else None
    created: bool = False


def accept(ctx: Context, sp: SamlServiceProvider, asserted: Asserted, *, source: str | None) -> Verified:
    """The account for a valid assertion, made if allowed; SamlRefused changes nothing."""
    cfg = sp.cfg
    if not asserted.assertion_id or len(asserted.assertion_id) > MAX_ID:
        raise SamlRefused("the assertion's ID is missing or too long")
    if cfg.username_attribute:
        raw, where = asserted.first(cfg.username_attribute), f"attribute {cfg.username_attribute}"
    else:
        raw, where = asserted.name_id, "NameID"
    evidence = sp.mfa_evidence(asserted)
    now = ctx.clock.now()
    try:
        username = external_accounts.username_from(ctx, raw, where)
        with ctx.tx() as s:
            s.execute(delete(SeenAssertion).where(SeenAssertion.expires_at < now))
            if s.get(SeenAssertion, asserted.assertion_id) is not None:
                raise SamlRefused(f"assertion {asserted.assertion_id} was used before (replayed)")
            s.add(SeenAssertion(id=asserted.assertion_id, issuer=asserted.issuer[:500], expires_at=asserted.expires_at))
            s.flush()  # another worker storing the same ID at once fails here: the primary key
            created = external_accounts.account_for(
                ctx,
                s,
                username,
                values=asserted.values(cfg.role_attribute),
                name=asserted.first(cfg.name_attribute),
                email=asserted.first(cfg.email_attribute),
                source="saml",
            )
            audit.record(
                s,
                now,
                "signin.saml",
                actor=username,
                subject=username,
                source=source,
                issuer=asserted.issuer,
                name_id=asserted.name_id,
                assertion=asserted.assertion_id,
                authn_context=",".join(asserted.authn_contexts),
                created=created,
                second_factor=second_factor_note(evidence),
            )
    except external_accounts.NotAccepted as exc:
        raise SamlRefused(str(exc)) from exc
    except sa_exc.IntegrityError as exc:
        raise SamlRefused(f"assertion {asserted.assertion_id} was used at the same time (replayed)") from exc
    return Verified(username, evidence, created)
