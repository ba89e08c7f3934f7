"""What the sign-in pages, the method registration pages and passkeys share: the engine kept
in the portal session, routing its answers to pages, ending a sign-in, and second-factor freshness."""

from __future__ import annotations

from starlette.responses import Response

from campusvpn.portal.sso_pages import hand_off, vpn_attempt
from campusvpn.portal.web import Req, rotated
from campusvpn.service.signin_ports import Way, resume_signin
from campusvpn.signin import Finished, Prompt, Purpose, SendCode, SignIn, Step

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


def safe_next(target: str | None) -> str:
    # Only our own paths: an open redirect would make phishing links look like ours.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def finish_signin(req: Req, username: str, *, second_factor: bool, note: str | None = None) -> Response:
    """Mark the portal session signed in (a new session id) and go where the user was heading."""
    cur = req.session
    now = req.ctx.clock.now()
    cur.username, cur.signin, cur.signed_in_at = username, None, now
    cur.second_factor_at = now if second_factor else None
    cur.flash = {"info": note} if note else None
    return rotated(req.redirect(safe_next(req.request.query_params.get("next"))))


def signin_purpose(req: Req) -> Purpose:
    """A browser signing in for a waiting VPN client signs in under the VPN's policy (every way in:
    password, passkey, identity provider), and its outcome goes to the client (`after`)."""
    return Purpose.VPN if vpn_attempt(req) is not None else Purpose.PORTAL


def set_device_cookie(req: Req, resp: Response, out: Finished) -> None:
    """ "Skip the code on this device": the browser's own cookie, read by the portal and the gateway."""
    if out.device_token:
        days = req.ctx.config.trusted_devices.lifetime.days
        resp.set_cookie(
            DEVICE_COOKIE, out.device_token, max_age=days * 86400, path="/", secure=True, httponly=True, samesite="lax"
        )


def fresh(req: Req) -> bool:
    """A second factor given recently enough for a sensitive change (step-up)."""
    at = req.session.second_factor_at
    return at is not None and req.ctx.clock.now() - at <= req.ctx.config.mfa.step_up_max_age


def engine_of(req: Req) -> SignIn | None:
    """The sign-in in progress in this portal session, if any."""
    data = req.session.signin
    if not data or "step" not in data:
        return None
    return resume_signin(req.ctx, data, req.source)


def send_request(req: Req) -> SendCode | None:
    """The "text me / call me" buttons carry `METHOD:CHANNEL`."""
    send = req.field("send")
    if not send:
        return None
    method_id, _, channel = send.partition(":")
    return SendCode(method_id or None, channel or None)


def after(req: Req, engine: SignIn, out: Prompt | Finished, page_on_prompt: str, way: Way | None = None) -> Response:
    """Route the engine's answer to the right page (`way`: the one chosen under "Sign in another way",
    kept when the code is asked again)."""
    if isinstance(out, Finished):
        if engine.purpose is Purpose.VPN and (out.ok or out.code != "bad_credentials"):
            # A VPN client's sign-in: the client gets the outcome; a wrong password may be retyped here.
            resp = hand_off(req, out)
            set_device_cookie(req, resp, out)
            return resp
        if out.ok and out.username:
            resp = finish_signin(
                req,
                out.username,
                second_factor=out.factors == 2 and not out.trusted_device,
                note=req.t.said(out.said) if out.trusted_device or out.recovery_left is not None else None,
            )
            set_device_cookie(req, resp, out)
            return resp
        if out.code == "needs_helpdesk" and out.username:
            req.session.signin = {"pass_only": True, "username": out.username}
            return rotated(req.redirect("/signin/pass"))
        req.session.signin = None
        return req.render(
            "signin.html",
            status=503 if out.code == "unavailable" else 401,
            error=req.t.said(out.said),
            typed=_typed_username(req),
            vpn=engine.purpose is Purpose.VPN,
        )
    req.session.signin = engine.snapshot()
    if out.error:
        return render_step(req, out, way=way)
    return req.redirect(page_on_prompt)


def render_step(req: Req, prompt: Prompt, info: str | None = None, way: Way | None = None) -> Response:
    if prompt.step is Step.SECOND_FACTOR:
        return req.render(
            "code.html",
            prompt=prompt,
            error=req.t.said(prompt.why) or None,
            info=info,
            trust_days=req.ctx.config.trusted_devices.lifetime.days,
            action="/signin/code",
            who=(req.session.signin or {}).get("username"),
            way=way,
        )
    if prompt.step is Step.REGISTRATION:
        return req.render("register.html", prompt=prompt, error=req.t.said(prompt.why) or None)
    return req.render(
        "signin.html",
        error=req.t.said(prompt.why) or None,
        typed=_typed_username(req),
        vpn=vpn_attempt(req) is not None,
    )


def _typed_username(req: Req) -> str:
    """What the user typed as their name, kept in the form after a refusal (never the password)."""
    return req.field("username", 200) if req.request.method == "POST" else ""
