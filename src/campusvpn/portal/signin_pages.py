"""Sign-in pages: password, code, help-desk pass, the forced first registration, step-up, sign-out."""

from __future__ import annotations

from starlette.responses import Response

from campusvpn.core.policy import MfaState
from campusvpn.portal.signin_flow import (
    DEVICE_COOKIE,
    after,
    device_label,
    engine_of,
    render_step,
    safe_next,
    send_request,
    signin_purpose,
)
from campusvpn.portal.web import Req, ended, page, rotated
from campusvpn.service import mfa, recovery_pass
from campusvpn.service.signin_ports import Way, start_signin, ways
from campusvpn.signin import (
    Code,
    Finished,
    Password,
    Prompt,
    Purpose,
    RecoveryForRegistration,
    SendCode,
    SignIn,
    Step,
)


@page("/signin", ("GET", "POST"), auth="none")
def signin(req: Req) -> Response:
    purpose = signin_purpose(req)
    if req.session.signed_in and purpose is Purpose.PORTAL:
        return req.redirect("/")
    if req.request.method == "GET":
        why = req.request.query_params.get("out")  # why the user was signed out, if they were
        said = {"emptied": "signout.emptied", "reset": "verify.done"}.get(why or "", "signout.done")
        return req.render("signin.html", info=req.t(said) if why else None, vpn=purpose is Purpose.VPN)
    engine = start_signin(req.ctx, purpose, req.source)
    out = engine.handle(
        Password(
            req.field("username", 200), req.form.get("password", "")[:1024], req.request.cookies.get(DEVICE_COOKIE)
        )
    )
    if isinstance(out, Prompt) and out.step is not Step.PASSWORD:
        req.session.signin = engine.snapshot()
        # The password was right: the pre-sign-in session id is replaced (session fixation).
        return rotated(req.redirect("/signin/code" if out.step is Step.SECOND_FACTOR else "/register"))
    return after(req, engine, out, "/signin")


@page("/signin/code", ("GET", "POST"), auth="none")
def signin_code(req: Req) -> Response:
    engine = engine_of(req)
    if engine is None or engine.step is not Step.SECOND_FACTOR:
        return req.redirect("/signin")
    if req.request.method == "GET":
        return render_step(req, engine.current_prompt())
    way = None
    if req.field("way"):  # the code of a way chosen under "Sign in another way"
        way = _way_of(req, engine.username or "")
        if way is None:
            return _other_ways(req, engine.username or "", refused=True)
    send = send_request(req)
    if send:
        return _send(req, engine, send, way)
    out = engine.handle(
        Code(
            req.field("code", 64),
            method_id=way.method_id if way else None,
            trust_device=req.form.get("trust") == "1",
            device_label=device_label(req.user_agent),
        )
    )
    return after(req, engine, out, "/signin/code", way)


@page("/signin/code/other", ("GET", "POST"), auth="none")
def signin_other_way(req: Req) -> Response:
    """ "Sign in another way": the user's registered ways (from the service), each a button; a phone
    is sent its code at once (the same send path and throttling as the code page's buttons)."""
    engine = engine_of(req)
    if engine is None or engine.step is not Step.SECOND_FACTOR:
        return req.redirect("/signin")
    username = engine.username or ""
    if req.request.method == "GET":
        return _other_ways(req, username)
    way = _way_of(req, username)
    if way is None:  # not one of this user's ways (made up, another user's, or deleted meanwhile)
        return _other_ways(req, username, refused=True)
    if way.kind in ("sms", "voice"):
        return _send(req, engine, SendCode(way.method_id, way.kind), way)
    return render_step(req, engine.current_prompt(), way=way)


def _way_of(req: Req, username: str) -> Way | None:
    key = req.field("way", 60)
    return next((w for w in ways(req.ctx, username) if w.key == key), None)


def _other_ways(req: Req, username: str, *, refused: bool = False) -> Response:
    return req.render(
        "other_ways.html",
        status=400 if refused else 200,
        ways=ways(req.ctx, username),
        who=username,
        error=req.t("way.unknown") if refused else None,
    )


def _send(req: Req, engine: SignIn, send: SendCode, way: Way | None) -> Response:
    out = engine.handle(send)
    req.session.signin = engine.snapshot()
    assert isinstance(out, Prompt)
    if out.why or way is None:
        return render_step(req, out, info=req.t.said(out.said) if not out.why else None, way=way)
    said = "way.sent.sms" if way.kind == "sms" else f"way.sent.voice.{way.phone_kind}"
    return render_step(req, out, info=req.t(said, ending=way.ending), way=way)


@page("/signin/pass", ("GET", "POST"), auth="none")
def signin_pass(req: Req) -> Response:
    """A help-desk one-time pass, for someone who can no longer give a second factor."""
    data = req.session.signin or {}
    username = data.get("username")
    if not username:
        return req.redirect("/signin")
    if req.request.method == "GET":
        return req.render("pass.html")
    ok = recovery_pass.redeem_and_clear(req.ctx, username, req.field("pass", 64))
    if not ok:
        return req.render("pass.html", status=401, error=req.t("pass.wrong"))
    req.session.signin = {"purpose": "portal", "step": "registration", "username": username, "unlocked": True}
    return req.redirect("/register")


@page("/register", ("GET", "POST"), auth="none")
def register(req: Req) -> Response:
    """First-method registration, forced at the first sign-in after applying."""
    engine = engine_of(req)
    if engine is None or engine.step is not Step.REGISTRATION:
        return req.redirect("/signin")
    if req.request.method == "GET":
        return render_step(req, engine.current_prompt())
    typed = req.field("code", 64)
    passed = recovery_pass.redeem_for(req.ctx, engine.username or "", typed)
    if passed:
        engine.unlock_registration()
        req.session.signin = engine.snapshot()
        return req.redirect("/register")
    out = engine.handle(RecoveryForRegistration(typed))
    return after(req, engine, out, "/register")


@page("/signout", ("POST",))
def signout(req: Req) -> Response:
    return ended(req.ctx, req, req.redirect("/signin?out=1"))


@page("/stepup", ("GET", "POST"))
def stepup(req: Req) -> Response:
    engine = start_signin(req.ctx, Purpose.PORTAL, req.source, Step.SECOND_FACTOR, req.username)
    if mfa.show(req.ctx, req.username)["state"] != MfaState.ACTIVE.value:
        return req.redirect("/")
    target = safe_next(req.request.query_params.get("next") or req.form.get("next"))
    minutes = int(req.ctx.config.mfa.step_up_max_age.total_seconds() // 60)
    lead = req.t("stepup.lead", minutes=minutes)
    if req.request.method == "POST":
        out = engine.handle(send_request(req) or Code(req.field("code", 64)))
        if isinstance(out, Finished):
            if out.ok:
                req.session.second_factor_at = req.ctx.clock.now()
                return req.redirect(target)
            return req.render("error.html", status=401, message=req.t.said(out.said))
        return req.render(
            "code.html",
            prompt=out,
            error=req.t.said(out.why) or None,
            info=None if out.why else req.t.said(out.said),
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


ROUTES = [signin, signin_code, signin_other_way, signin_pass, register, signout, stepup]
