"""Passkeys (WebAuthn) for portal sign-in: register, use, delete.

A passkey with user verification is phishing-resistant multi-factor on its own (the device
and its PIN or biometric), so it signs a member into the portal without password or code.
It does not replace the VPN's password and code (AnyConnect clients cannot do WebAuthn).
The browser side is progressive enhancement (static/passkey.js); pages work without it."""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import select
from starlette.responses import JSONResponse, Response
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from campusvpn.core.policy import AccountStatus
from campusvpn.portal.member import _finish_signin, _fresh, device_label
from campusvpn.portal.web import Req, page, rotated
from campusvpn.service import audit, notices
from campusvpn.service.errors import NotFound
from campusvpn.store.models import Passkey, User

MAX_PER_USER = 10


def _origin(req: Req) -> str:
    host = req.request.headers.get("host", "")
    return f"https://{host}"


def _rp_id(req: Req) -> str:
    return req.ctx.config.gateway.hostname


def _body(req: Req) -> dict[str, Any]:
    try:
        data = json.loads(req.files.get("json", b"{}") or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _remember(req: Req, challenge: bytes) -> None:
    req.session.flash = {**(req.session.flash or {}), "webauthn": bytes_to_base64url(challenge)}


def _challenge(req: Req) -> bytes | None:
    """The challenge we issued to this session, usable once."""
    f = dict(req.session.flash or {})
    value = f.pop("webauthn", None)
    req.session.flash = f or None
    return base64url_to_bytes(value) if isinstance(value, str) else None


def list_passkeys(req: Req, username: str) -> list[dict[str, Any]]:
    with req.ctx.tx() as s:
        user = req.ctx.user(s, username)
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


@page("/passkeys/register/options", ("POST",))
def register_options(req: Req) -> Response:
    if not _fresh(req):
        return JSONResponse({"error": "confirm with a code first", "stepup": "/stepup?next=/security"}, 403)
    with req.ctx.tx() as s:
        user = req.ctx.user(s, req.username)
        existing = s.scalars(select(Passkey.credential_id).where(Passkey.user_id == user.id)).all()
    options = generate_registration_options(
        rp_id=_rp_id(req),
        rp_name=req.ctx.config.service.name,
        user_name=req.username,
        user_id=req.username.encode(),
        user_display_name=req.username,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED
        ),
    )
    _remember(req, options.challenge)
    return Response(options_to_json(options), media_type="application/json")


@page("/passkeys/register", ("POST",))
def register(req: Req) -> Response:
    challenge = _challenge(req)
    if challenge is None or not _fresh(req):
        return JSONResponse({"error": "start again from the security page"}, 400)
    body = _body(req)
    try:
        verified = verify_registration_response(
            credential=body.get("credential", {}),
            expected_challenge=challenge,
            expected_origin=_origin(req),
            expected_rp_id=_rp_id(req),
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": f"the passkey could not be registered: {exc}"}, 400)
    label = str(body.get("label") or device_label(req.user_agent))[:100]
    now = req.ctx.clock.now()
    with req.ctx.tx() as s:
        user = req.ctx.user(s, req.username)
        count = len(s.scalars(select(Passkey.id).where(Passkey.user_id == user.id)).all())
        if count >= MAX_PER_USER:
            return JSONResponse({"error": f"at most {MAX_PER_USER} passkeys; delete one first"}, 409)
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
            s, now, "passkey.added", actor=user.username, subject=user.username, source=req.source, passkey=public_id
        )
        notices.security_changed(req.ctx, user, "passkey_added", label, req.source)
    req.session.flash = {**(req.session.flash or {}), "info": req.t("security.changed")}
    return JSONResponse({"ok": True, "next": "/security"})


@page("/passkeys/signin/options", ("POST",), auth="none")
def signin_options(req: Req) -> Response:
    options = generate_authentication_options(rp_id=_rp_id(req), user_verification=UserVerificationRequirement.REQUIRED)
    _remember(req, options.challenge)
    return Response(options_to_json(options), media_type="application/json")


@page("/passkeys/signin", ("POST",), auth="none")
def signin(req: Req) -> Response:
    challenge = _challenge(req)
    refused = JSONResponse({"error": req.t("passkey.refused")}, 401)
    if challenge is None:
        return refused
    credential = _body(req).get("credential", {})
    try:
        raw_id = base64url_to_bytes(str(credential.get("rawId") or credential.get("id") or ""))
    except (ValueError, AttributeError):
        return refused
    now = req.ctx.clock.now()
    with req.ctx.tx() as s:
        key = s.scalars(select(Passkey).where(Passkey.credential_id == raw_id)).one_or_none()
        if key is None:
            return refused
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=_rp_id(req),
                expected_origin=_origin(req),
                credential_public_key=key.public_key,
                credential_current_sign_count=key.sign_count,
                require_user_verification=True,
            )
        except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError):
            audit.record(s, now, "signin.passkey", actor="?", subject=None, source=req.source, outcome="fail")
            return refused
        user = s.get(User, key.user_id)
        assert user is not None
        if user.status == AccountStatus.REVOKED:
            return refused
        key.sign_count, key.last_used_at = verified.new_sign_count, now
        username = user.username
        audit.record(
            s, now, "signin.passkey", actor=username, subject=username, source=req.source, passkey=key.public_id
        )
    _finish_signin(req, username, second_factor=True)
    return rotated(JSONResponse({"ok": True, "next": "/"}))


def delete(req: Req, public_id: str) -> None:
    with req.ctx.tx() as s:
        user = req.ctx.user(s, req.username)
        key = s.scalars(select(Passkey).where(Passkey.user_id == user.id, Passkey.public_id == public_id)).first()
        if key is None:
            raise NotFound("there is no such passkey")
        s.delete(key)
        now = req.ctx.clock.now()
        audit.record(s, now, "passkey.deleted", actor=user.username, subject=user.username, passkey=public_id)
        notices.security_changed(req.ctx, user, "passkey_deleted", key.label, req.source)


ROUTES = [register_options, register, signin_options, signin]
