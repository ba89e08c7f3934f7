"""Passkeys (WebAuthn credentials) for portal sign-in: list, register, check, delete.

The portal keeps the browser dialogue and the challenge; this module keeps the keys and
the WebAuthn checks. A passkey's sign-in goes through the sign-in engine, which asks
`check` (through its credentials port) and then makes the decision like any other."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from campusvpn.core.policy import AccountStatus
from campusvpn.service import audit, notices
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Invalid, NotFound
from campusvpn.signin.ports import PasskeyAssertion, PasskeyOutcome
from campusvpn.store.models import Passkey, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say

MAX_PER_USER = 10


def list_passkeys(ctx: Context, username: str) -> list[dict[str, Any]]:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        rows = s.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)).all()
        return [
            {
                "id": p.public_id,
                "label": p.label,
                "added": p.created_at.isoformat(),
                "last_used": p.last_used_at.isoformat() if p.last_used_at else None,
            }
            for p in rows
        ]


def registration_options(ctx: Context, username: str, rp_id: str) -> tuple[str, bytes]:
    """(options as JSON for the browser, the challenge to remember for `add`)."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        existing = s.scalars(select(Passkey.credential_id).where(Passkey.user_id == user.id)).all()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=ctx.config.service.name,
        user_name=username,
        user_id=username.encode(),
        user_display_name=username,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED
        ),
    )
    return options_to_json(options), options.challenge


def authentication_options(rp_id: str) -> tuple[str, bytes]:
    """(options as JSON for the browser, the challenge to remember for the sign-in)."""
    options = generate_authentication_options(rp_id=rp_id, user_verification=UserVerificationRequirement.REQUIRED)
    return options_to_json(options), options.challenge


def add(
    ctx: Context,
    username: str,
    credential: Any,  # the browser's JSON, passed on as it came
    *,
    challenge: bytes,
    origin: str,
    rp_id: str,
    label: str,
    source: str | None,
) -> str:
    """Verify a registration response and keep the key; returns its public id."""
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_origin=origin,
            expected_rp_id=rp_id,
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
        raise Invalid(say(Code.ERROR_PASSKEY_FAILED, cause=str(exc))) from exc
    now = ctx.clock.now()
    with ctx.tx() as s:
        user = ctx.user(s, username)
        count = len(s.scalars(select(Passkey.id).where(Passkey.user_id == user.id)).all())
        if count >= MAX_PER_USER:
            raise Conflict(say(Code.ERROR_TOO_MANY_PASSKEYS, n=MAX_PER_USER))
        public_id = secrets.token_hex(8)
        s.add(
            Passkey(
                public_id=public_id,
                user_id=user.id,
                credential_id=verified.credential_id,
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                label=label,
                created_at=now,
            )
        )
        audit.record(
            s, now, "passkey.added", actor=user.username, subject=user.username, source=source, passkey=public_id
        )
        notices.security_changed(ctx, user, "passkey_added", label, source)
    return public_id


def check(ctx: Context, s: Session, assertion: PasskeyAssertion, source: str | None) -> PasskeyOutcome:
    """Verify a sign-in assertion against the stored key; on success count its use."""
    refused = PasskeyOutcome()
    credential = assertion.credential
    try:
        raw_id = base64url_to_bytes(str(credential.get("rawId") or credential.get("id") or ""))
    except (ValueError, AttributeError):
        return refused
    now = ctx.clock.now()
    key = s.scalars(select(Passkey).where(Passkey.credential_id == raw_id)).one_or_none()
    if key is None:
        return refused
    try:
        verified = verify_authentication_response(
            credential=dict(credential),
            expected_challenge=assertion.challenge,
            expected_rp_id=assertion.rp_id,
            expected_origin=assertion.origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=key.sign_count,
            require_user_verification=True,
        )
    except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError):
        audit.record(s, now, "signin.passkey", actor="?", subject=None, source=source, outcome="fail")
        return refused
    user = s.get(User, key.user_id)
    assert user is not None
    if user.status == AccountStatus.REVOKED:
        return refused
    key.sign_count, key.last_used_at = verified.new_sign_count, now
    audit.record(
        s, now, "signin.passkey", actor=user.username, subject=user.username, source=source, passkey=key.public_id
    )
    return PasskeyOutcome(user.username, user_verified=verified.user_verified)


def delete(ctx: Context, username: str, public_id: str, source: str | None) -> None:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        key = s.scalars(select(Passkey).where(Passkey.user_id == user.id, Passkey.public_id == public_id)).first()
        if key is None:
            raise NotFound(say(Code.ERROR_NO_PASSKEY))
        s.delete(key)
        now = ctx.clock.now()
        audit.record(s, now, "passkey.deleted", actor=user.username, subject=user.username, passkey=public_id)
        notices.security_changed(ctx, user, "passkey_deleted", key.label, source)
