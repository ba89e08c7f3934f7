"""Member pages: sign-in, MFA application and registration, security info, devices, VPN status."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from starlette.responses import Response

from campusvpn.core.policy import MfaState
from campusvpn.portal import connect_info
from campusvpn.portal.web import Req, ended, page, rotated
from campusvpn.service import eligibility, mfa, recovery_pass, sessions, trusted
from campusvpn.service.errors import ServiceError
from campusvpn.signin import Code, Finished, Password, Prompt, Purpose, SignIn, Step
from campusvpn.signin.engine import RecoveryForRegistration, Registered, SendCode

DEVICE_COOKIE = "campusvpn-device"  # the same cookie the gateway reads: one trust per browser


def device_label(user_agent: str) -> str:
    """A short name people recognise in the device list ("Chrome on Windows")."""
    ua = user_agent.lower()
    browser = next(
        (
            n
            for k, n in (("edg/", "Edge"), ("firefox", "Firefox"), ("chrom", "Chrome"), ("safari", "Safari"))
            if k in ua
        ),
        "Browser",
    )
    system = next(
        (
            n
            for k, n in (
                ("windows", "Windows"),
                ("iphone", "iPhone"),
                ("android", "Android"),
                ("mac os", "macOS"),
                ("linux", "Linux"),
            )
            if k in ua
        ),
        "unknown system",
    )
    return f"{browser} on {system}"


def _safe_next(target: str | None) -> str:
    # Only our own paths: an open redirect would make phishing links look like ours.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _finish_signin(req: Req, username: str, *, second_factor: bool, note: str | None = None) -> Response:
    cur = req.session
    now = req.ctx.clock.now()
    cur.username, cur.signin, cur.signed_in_at = username, None, now
    cur.second_factor_at = now if second_factor else None
    cur.flash = {"info": note} if note else None
    return rotated(req.redirect(_safe_next(req.request.query_params.get("next"))))


def _engine(req: Req) -> SignIn | None:
    data = req.session.signin
    if not data or "step" not in data:
        return None
    return SignIn.restore(req.ctx, data, req.source)


def _after(req: Req, engine: SignIn, out: Prompt | Finished, page_on_prompt: str) -> Response:
    """Route the engine's answer to the right page."""
    if isinstance(out, Finished):
        if out.ok and out.username:
            resp = _finish_signin(
                req,
                out.username,
                second_factor=out.factors == 2 and not out.trusted_device,
                note=out.message if out.trusted_device or out.recovery_left is not None else None,
            )
            if out.device_token:
                days = req.ctx.config.trusted_devices.lifetime.days
                resp.set_cookie(
                    DEVICE_COOKIE,
                    out.device_token,
                    max_age=days * 86400,
                    path="/",
                    secure=True,
                    httponly=True,
                    samesite="lax",
                )
            return resp
        if out.code == "needs_helpdesk" and out.username:
            req.session.signin = {"pass_only": True, "username": out.username}
            return rotated(req.redirect("/signin/pass"))
        req.session.signin = None
        return req.render("signin.html", status=401, error=req.t.engine(out.message, out.code))
    req.session.signin = engine.snapshot()
    if out.error:
        return _render_step(req, engine, out)
    return req.redirect(page_on_prompt)


def _render_step(req: Req, engine: SignIn, prompt: Prompt, info: str | None = None) -> Response:
    if prompt.step is Step.SECOND_FACTOR:
        return req.render(
            "code.html",
            prompt=prompt,
            error=req.t.engine(prompt.error),
            info=info,
            trust_days=req.ctx.config.trusted_devices.lifetime.days,
            action="/signin/code",
        )
    if prompt.step is Step.REGISTRATION:
        return req.render("register.html", prompt=prompt, error=req.t.engine(prompt.error))
    return req.render("signin.html", error=req.t.engine(prompt.error))


# --- sign-in ------------------------------------------------------------------------------


@page("/signin", ("GET", "POST"), auth="none")
def signin(req: Req) -> Response:
    if req.session.signed_in:
        return req.redirect("/")
    if req.request.method == "GET":
        return req.render("signin.html", info=req.t("signout.done") if req.request.query_params.get("out") else None)
    engine = SignIn(req.ctx, Purpose.PORTAL, req.source)
    out = engine.handle(
        Password(
            req.field("username", 200), req.form.get("password", "")[:1024], req.request.cookies.get(DEVICE_COOKIE)
        )
    )
    if isinstance(out, Prompt) and out.step is not Step.PASSWORD:
        req.session.signin = engine.snapshot()
        # The password was right: the pre-sign-in session id is replaced (session fixation).
        return rotated(req.redirect("/signin/code" if out.step is Step.SECOND_FACTOR else "/register"))
    return _after(req, engine, out, "/signin")


@page("/signin/code", ("GET", "POST"), auth="none")
def signin_code(req: Req) -> Response:
    engine = _engine(req)
    if engine is None or engine.step is not Step.SECOND_FACTOR:
        return req.redirect("/signin")
    if req.request.method == "GET":
        return _render_step(req, engine, engine.current_prompt())
    send = _send_request(req)
    if send:
        out = engine.handle(send)
        req.session.signin = engine.snapshot()
        assert isinstance(out, Prompt)
        return _render_step(req, engine, out, info=out.message if not out.error else None)
    out = engine.handle(
        Code(
            req.field("code", 64),
            trust_device=req.form.get("trust") == "1",
            device_label=device_label(req.user_agent),
        )
    )
    return _after(req, engine, out, "/signin/code")


@page("/signin/pass", ("GET", "POST"), auth="none")
def signin_pass(req: Req) -> Response:
    """A help-desk one-time pass, for someone who can no longer give a second factor."""
    data = req.session.signin or {}
    username = data.get("username")
    if not username:
        return req.redirect("/signin")
    if req.request.method == "GET":
        return req.render("pass.html")
    with req.ctx.tx() as s:
        user = req.ctx.user(s, username)
        ok = recovery_pass.redeem(req.ctx, s, user, req.field("pass", 64))
        if ok:
            mfa.clear_mfa(
                s, user, req.ctx.clock.now(), actor=username, reason="help-desk one-time pass", keep_applied=True
            )
    if not ok:
        return req.render("pass.html", status=401, error=req.t("pass.wrong"))
    req.session.signin = {"purpose": "portal", "step": "registration", "username": username, "unlocked": True}
    return req.redirect("/register")


# --- first-method registration (forced after applying) -----------------------------------------


@page("/register", ("GET", "POST"), auth="none")
def register(req: Req) -> Response:
    engine = _engine(req)
    if engine is None or engine.step is not Step.REGISTRATION:
        return req.redirect("/signin")
    if req.request.method == "GET":
        return _render_step(req, engine, engine.current_prompt())
    typed = req.field("code", 64)
    with req.ctx.tx() as s:
        passed = recovery_pass.redeem(req.ctx, s, req.ctx.user(s, engine.username or ""), typed)
    if passed:
        engine.unlock_registration()
        req.session.signin = engine.snapshot()
        return req.redirect("/register")
    out = engine.handle(RecoveryForRegistration(typed))
    return _after(req, engine, out, "/register")


def _enrolment_owner(req: Req) -> tuple[str, SignIn | None] | Response:
    """Who is adding a method: a user in forced registration, or a signed-in user with a fresh code."""
    engine = _engine(req)
    if engine is not None and engine.step is Step.REGISTRATION and engine.registration_unlocked:
        return engine.username or "", engine
    if not req.session.signed_in:
        return req.redirect("/signin")
    if not _fresh(req):
        return req.redirect("/stepup?next=" + req.request.url.path)
    return req.username, None


def _send_request(req: Req) -> SendCode | None:
    """The "text me / call me" buttons carry `METHOD:CHANNEL`."""
    send = req.field("send")
    if not send:
        return None
    method_id, _, channel = send.partition(":")
    return SendCode(method_id or None, channel or None)


def _fresh(req: Req) -> bool:
    at = req.session.second_factor_at
    return at is not None and req.ctx.clock.now() - at <= req.ctx.config.mfa.step_up_max_age


def _method_added(req: Req, engine: SignIn | None, codes: list[str] | None) -> Response:
    if engine is not None:
        out = engine.handle(Registered())
        assert isinstance(out, Finished)
        resp = _finish_signin(req, engine.username or "", second_factor=True)
        if codes:
            resp = rotated(req.render("codes.html", codes=codes, left=len(codes), total=len(codes)))
        return resp
    req.session.flash = {"info": req.t("security.changed")}
    if codes:
        return req.render("codes.html", codes=codes, left=len(codes), total=len(codes))
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
            codes = mfa.confirm_totp(req.ctx, username, req.field("code", 16), actor=username)
            return _method_added(req, engine, codes)
        except ServiceError as exc:
            error = str(exc)
    try:
        enrolment = (mfa.pending_totp(req.ctx, username) if error else None) or mfa.begin_totp(
            req.ctx, username, actor=username
        )
    except ServiceError as exc:
        return req.error(str(exc), 409)
    qr_png = base64.b64encode(enrolment.qr_png(scale=6)).decode()
    return req.render("totp.html", enrolment=enrolment, qr_png=qr_png, error=error)


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
            codes = mfa.confirm_phone(req.ctx, username, values["method"], req.field("code", 16), actor=username)
            return _method_added(req, engine, codes)
        channel = values["channel"] or None  # none chosen: the core picks what this kind of phone can take
        values["method"] = mfa.begin_phone(
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
        return req.render("phone.html", status=400, v=values, step=step, error=str(exc))


# --- signed-in pages ---------------------------------------------------------------------------


def _flash(req: Req) -> str | None:
    f = dict(req.session.flash or {})
    info = f.pop("info", None)
    req.session.flash = f or None
    return str(info) if info else None


@page("/")
def home(req: Req) -> Response:
    info = mfa.show(req.ctx, req.username)
    decision = eligibility.check(req.ctx, req.username)
    return req.render("home.html", mfa=info, decision=decision, info=_flash(req))


@page("/apply", ("GET", "POST"))
def apply(req: Req) -> Response:
    delay = req.ctx.config.mfa.activation_delay
    minutes = int(delay.total_seconds() // 60)
    info = mfa.show(req.ctx, req.username)
    if info["applied_at"]:
        return req.redirect("/")
    if req.request.method == "GET":
        at = req.t.time(req.ctx.clock.now() + delay)
        return req.render("apply.html", at=at, minutes=minutes)
    user = mfa.apply(req.ctx, req.username, actor=req.username, source=req.source)
    assert user.mfa_applied_at is not None
    at = req.t.time(user.mfa_applied_at + delay)
    # Registration happens at the next sign-in, as the rules say: this sign-in ends here.
    return ended(req.ctx, req, req.render("applied.html", at=at))


@page("/signout", ("POST",))
def signout(req: Req) -> Response:
    return ended(req.ctx, req, req.redirect("/signin?out=1"))


@page("/stepup", ("GET", "POST"))
def stepup(req: Req) -> Response:
    engine = SignIn(req.ctx, Purpose.PORTAL, req.source, Step.SECOND_FACTOR, req.username)
    if mfa.show(req.ctx, req.username)["state"] != MfaState.ACTIVE.value:
        return req.redirect("/")
    target = _safe_next(req.request.query_params.get("next") or req.form.get("next"))
    minutes = int(req.ctx.config.mfa.step_up_max_age.total_seconds() // 60)
    lead = req.t("stepup.lead", minutes=minutes)
    if req.request.method == "POST":
        out = engine.handle(_send_request(req) or Code(req.field("code", 64)))
        if isinstance(out, Finished):
            if out.ok:
                req.session.second_factor_at = req.ctx.clock.now()
                return req.redirect(target)
            return req.render("error.html", status=401, message=req.t.engine(out.message, out.code))
        return req.render(
            "code.html",
            prompt=out,
            error=req.t.engine(out.error),
            info=None if out.error else out.message,
            lead=lead,
            action=f"/stepup?next={target}",
            stepup=True,
        )
    return req.render(
        "code.html",
        prompt=engine.current_prompt(),
        error=None,
        info=None,
        lead=lead,
        action=f"/stepup?next={target}",
        stepup=True,
    )


@page("/security", ("GET", "POST"))
def security(req: Req) -> Response:
    if req.request.method == "POST":
        if not _fresh(req):
            return req.redirect("/stepup?next=/security")
        action, method_id = req.field("action"), req.field("method", 40)
        try:
            if action == "delete":
                state = mfa.delete_method(
                    req.ctx,
                    req.username,
                    method_id,
                    actor=req.username,
                    fresh_second_factor_at=req.session.second_factor_at,
                )
                if state is MfaState.REGISTRATION_REQUIRED:
                    # No method left: registration again, behind a recovery code (core rule).
                    req.session.username = req.session.signed_in_at = None
                    return ended(req.ctx, req, req.redirect("/signin"))
            elif action == "default":
                mfa.set_default(req.ctx, req.username, method_id, actor=req.username)
            elif action == "delete_passkey":
                from campusvpn.portal import passkeys

                passkeys.delete(req, method_id)
            elif action == "codes":
                codes = mfa.regenerate_recovery_codes(req.ctx, req.username, actor=req.username)
                return req.render("codes.html", codes=codes, left=len(codes), total=len(codes))
        except ServiceError as exc:
            return req.render(
                "security.html",
                status=400,
                mfa=mfa.show(req.ctx, req.username),
                error=str(exc),
                fresh=_fresh(req),
                passkeys=_passkeys(req),
            )
        req.session.flash = {"info": req.t("security.changed")}
        return req.redirect("/security")
    return req.render(
        "security.html",
        mfa=mfa.show(req.ctx, req.username),
        info=_flash(req),
        fresh=_fresh(req),
        passkeys=_passkeys(req),
    )


def _passkeys(req: Req) -> list[dict[str, Any]]:
    from campusvpn.portal import passkeys

    return passkeys.list_passkeys(req, req.username)


@page("/devices", ("GET", "POST"))
def devices(req: Req) -> Response:
    info = None
    if req.request.method == "POST":
        try:
            trusted.revoke_device(req.ctx, req.username, req.field("device", 40), actor=req.username)
            info = req.t("devices.revoked")
        except ServiceError as exc:
            return req.error(str(exc), 404)
    return req.render("devices.html", devices=trusted.list_devices(req.ctx, req.username), info=info)


@page("/vpn", ("GET", "POST"))
def vpn(req: Req) -> Response:
    info = None
    mine = sessions.listing(req.ctx, username=req.username)
    if req.request.method == "POST":
        sid = req.field("session", 40)
        if not any(x["id"] == sid for x in mine):
            return req.error(req.t("err.not_found"), 404)
        sessions.kill(req.ctx, session_id=sid, actor=req.username, reason="Disconnected from the portal")
        info = req.t("vpn.disconnected")
        mine = sessions.listing(req.ctx, username=req.username)
    decision = eligibility.check(req.ctx, req.username)
    return req.render("vpn.html", decision=decision, sessions=mine, info=info, parse=datetime.fromisoformat)


@page("/connect")
def connect(req: Req) -> Response:
    return req.render("connect.html", info=connect_info.for_user(req.ctx, req.username))


@page("/connect/profile.xml")
def connect_profile(req: Req) -> Response:
    body = connect_info.anyconnect_profile(req.ctx, req.username)
    return Response(
        body, media_type="application/xml", headers={"Content-Disposition": 'attachment; filename="campusvpn.xml"'}
    )


ROUTES = [
    signin,
    signin_code,
    signin_pass,
    register,
    add_totp,
    add_phone,
    home,
    apply,
    signout,
    stepup,
    security,
    devices,
    vpn,
    connect,
    connect_profile,
]
