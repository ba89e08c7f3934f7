"""Passkeys (WebAuthn) for portal sign-in: register, use, delete — the browser dialogue.

A passkey with user verification is phishing-resistant multi-factor on its own (the device
and its PIN or biometric), so it signs a member into the portal without password or code.
For the VPN it works through the browser sign-in (`[vpn] login = "browser"`, portal.sso_pages).
The keys and the WebAuthn checks are in service.passkeys; a sign-in goes through the sign-in
engine like any other. The browser side is progressive enhancement (static/passkey.js); pages
work without it."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from campusvpn.portal.signin_flow import device_label, finish_signin, fresh, signin_purpose
from campusvpn.portal.sso_pages import hand_off
from campusvpn.portal.web import Req, page, rotated
from campusvpn.service import passkeys
from campusvpn.service.errors import Conflict, Invalid
from campusvpn.service.signin_ports import start_signin
from campusvpn.signin import Finished, Passkey, PasskeyAssertion, Purpose


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


@page("/passkeys/register/options", ("POST",))
def register_options(req: Req) -> Response:
    if not fresh(req):
        return JSONResponse({"error": "confirm with a code first", "stepup": "/stepup?next=/security"}, 403)
    options, challenge = passkeys.registration_options(req.ctx, req.username, _rp_id(req))
    _remember(req, challenge)
    return Response(options, media_type="application/json")


@page("/passkeys/register", ("POST",))
def register(req: Req) -> Response:
    challenge = _challenge(req)
    if challenge is None or not fresh(req):
        return JSONResponse({"error": "start again from the security page"}, 400)
    body = _body(req)
    label = str(body.get("label") or device_label(req.user_agent))[:100]
    try:
        passkeys.add(
            req.ctx,
            req.username,
            body.get("credential", {}),
            challenge=challenge,
            origin=_origin(req),
            rp_id=_rp_id(req),
            label=label,
            source=req.source,
        )
    except Invalid as exc:
        return JSONResponse({"error": str(exc)}, 400)
    except Conflict as exc:
        return JSONResponse({"error": str(exc)}, 409)
    req.session.flash = {**(req.session.flash or {}), "info": req.t("security.changed")}
    return JSONResponse({"ok": True, "next": "/security"})


@page("/passkeys/signin/options", ("POST",), auth="none")
def signin_options(req: Req) -> Response:
    options, challenge = passkeys.authentication_options(_rp_id(req))
    _remember(req, challenge)
    return Response(options, media_type="application/json")


@page("/passkeys/signin", ("POST",), auth="none")
def signin(req: Req) -> Response:
    challenge = _challenge(req)
    refused = JSONResponse({"error": req.t("passkey.refused")}, 401)
    credential = _body(req).get("credential", {})
    if challenge is None or not isinstance(credential, dict):
        return refused
    engine = start_signin(req.ctx, signin_purpose(req), req.source)
    out = engine.handle(Passkey(PasskeyAssertion(credential, challenge, _rp_id(req), _origin(req))))
    if engine.purpose is Purpose.VPN and isinstance(out, Finished) and out.username:
        return hand_off(req, out, json=True)  # a VPN client waits for this outcome, allowed or refused
    if not (isinstance(out, Finished) and out.ok and out.username):
        return refused
    finish_signin(req, out.username, second_factor=out.factors == 2)
    return rotated(JSONResponse({"ok": True, "next": "/"}))


ROUTES = [register_options, register, signin_options, signin]
