"""Rules every identity provider (OpenID Connect, SAML) shares about its own MFA."""

from __future__ import annotations

from collections.abc import Iterable


def trusted_mfa(trust: bool, kind: str, shown: Iterable[str], accepted: Iterable[str]) -> str | None:
    """The evidence ("amr=otp", "AuthnContext=...") that the provider's own MFA counts as the second
    factor: only when the configuration trusts it and the provider shows one of the accepted values."""
    if not trust:
        return None
    hit = sorted(set(shown) & set(accepted))
    return f"{kind}={','.join(hit)}" if hit else None


def second_factor_note(evidence: str | None) -> str:
    """For the audit trail: whose second factor a sign-in uses, and why."""
    return f"skipped: the provider's MFA is trusted ({evidence})" if evidence else "campusvpn's"
