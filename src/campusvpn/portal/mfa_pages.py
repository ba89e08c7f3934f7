"""MFA pages: applying for MFA, and adding an authenticator app or a phone (the forced first
registration during sign-in, or later from the security page)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.responses import Response

from campusvpn.portal.recovery_codes_page import show_once
from campusvpn.portal.signin_flow import engine_of, finish_signin, fresh
from campusvpn.portal.web import Req, ended, page, rotated
from campusvpn.service import authenticator, mfa, phones
from campusvpn.service.errors import ServiceError
from campusvpn.signin import Finished, Registered, SignIn, Step


@page("/apply", ("GET", "POST"))
def apply(req: Req) -> Response:
    delay = req.ctx.config.mfa.activation_delay
    minutes = int(delay.total_seconds() // 60)
    info = mfa.show(req.ctx, req.username)
    if info["applied_at"]:
        return req.redirect("/")
    if req.request.method == "GET":
        at = req.t.from_time(req.ctx.clock.now() + delay)
        return req.render("apply.html", at=at, minutes=minutes)
    user = mfa.apply(req.ctx, req.username, actor=req.username, source=req.source)
    assert user.mfa_applied_at is not None
    at = req.t.from_time(user.mfa_applied_at + delay)
    # Registration happens at the next sign-in, as the rules say: this sign-in ends here, so the
    # page is drawn signed out (no menu, no "Sign out" for a session that no longer exists).
    req.session.signed_in_at = None
    return ended(req.ctx, req, req.render("applied.html", at=at))


def _enrolment_owner(req: Req) -> tuple[str, SignIn | None] | Response:
    """Who is adding a method: a user in forced registration, or a signed-in user with a fresh code."""
    engine = engine_of(req)
    if engine is not None and engine.step is Step.REGISTRATION and engine.registration_unlocked:
        return engine.username or "", engine
    if not req.session.signed_in:
        return req.redirect("/signin")
    if not fresh(req):
        return req.redirect("/stepup?next=" + req.request.url.path)
    return req.username, None


def _method_added(req: Req, engine: SignIn | None, codes: list[str] | None) -> Response:
    if engine is not None:
        out = engine.handle(Registered())
        assert isinstance(out, Finished)
        resp = finish_signin(req, engine.username or "", second_factor=True)
        if codes:  # shown by the GET the redirect leads to (the new session id comes with it)
            return rotated(show_once(req, codes))
        return resp
    req.session.flash = {"info": req.t("security.changed")}
    if codes:
        return show_once(req, codes)
    return req.redirect("/security")


@page("/mfa/totp", ("GET", "POST"), auth="none")
def add_totp(req: Req) -> Response:
    owner = _enrolment_owner(req)
    if isinstance(owner, Response):
        return owner
    username, engine = owner
    error = None
    if req.request.method == "POST":
        try:
            codes = authenticator.confirm_totp(
                req.ctx, username, req.field("code", 16), actor=username, label=req.field("label", 100)
            )
            return _method_added(req, engine, codes)
        except ServiceError as exc:
            error = req.t.service_error(exc)
    try:
        # The enrolment waiting for its first code is shown again (a reload, a language switch, a wrong
        # code): a new secret each time would break the account the app has already scanned.
        enrolment = authenticator.pending_totp(req.ctx, username) or authenticator.begin_totp(
            req.ctx, username, actor=username
        )
    except ServiceError as exc:
        return req.error(req.t.service_error(exc), 409)
    png = enrolment.qr_png(scale=6)
    qr_png = base64.b64encode(png).decode()
    size = int.from_bytes(png[16:20], "big")  # the PNG's width (IHDR), so the page keeps its place while it loads
    return req.render("totp.html", enrolment=enrolment, qr_png=qr_png, qr_size=size, error=error)


@page("/mfa/phone", ("GET", "POST"), auth="none")
def add_phone(req: Req) -> Response:
    owner = _enrolment_owner(req)
    if isinstance(owner, Response):
        return owner
    username, engine = owner
    values: dict[str, Any] = {k: req.field(k, 40) for k in ("kind", "number", "extension", "channel", "method")}
    if req.request.method == "GET":
        return req.render("phone.html", v=values, step="number")
    try:
        if req.field("action") == "confirm":
            codes = phones.confirm_phone(req.ctx, username, values["method"], req.field("code", 16), actor=username)
            return _method_added(req, engine, codes)
        channel = values["channel"] or None  # none chosen: the core picks what this kind of phone can take
        values["method"] = phones.begin_phone(
            req.ctx,
            username,
            values["kind"],
            values["number"],
            values["extension"] or None,
            channel,
            actor=username,
            source=req.source,
        )
        return req.render("phone.html", v=values, step="code", info=req.t("phone.sent", label=values["number"]))
    except ServiceError as exc:
        step = "code" if req.field("action") == "confirm" else "number"
        return req.render("phone.html", status=400, v=values, step=step, error=req.t.service_error(exc))


ROUTES = [apply, add_totp, add_phone]
