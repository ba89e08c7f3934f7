"""VPN sign-in through the browser: the pages around the portal's own sign-in.

The VPN client opens `/sso/start?h=HANDLE`; this browser then carries the attempt in a cookie,
so the portal's sign-in (password and code, passkey, trusted-device cookie, and any identity
provider the sign-in page offers) runs with the VPN's policy. When it ends, the one-time token
(or the refusal) goes to the client (`hand_off`), and `/sso/done` tells the person the outcome.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, RedirectResponse, Response

from campusvpn.core.sso_handoff import fortinet_listener_url, listener_url, seal
from campusvpn.portal.web import Req, page
from campusvpn.service import sso
from campusvpn.signin import Finished

SSO_COOKIE = "campusvpn-sso"  # this browser is signing in for a VPN client: the attempt's handle


def vpn_attempt(req: Req) -> sso.Attempt | None:
    """The VPN client's attempt this browser is signing in for, while it waits for an outcome."""
    attempt = sso.find(req.ctx, req.request.cookies.get(SSO_COOKIE))
    return attempt if attempt is not None and attempt.outcome is None else None


def _outcome(out: Finished) -> dict[str, Any]:
    """What the client is told and what `/sso/done` shows: codes and parameters (`said`), each rendered
    in its reader's language; `message` and `reasons` in English for logs and scripts."""
    reasons = [
        {"code": r.code, "message": r.message, "until": r.until.isoformat() if r.until else None, "params": r.params}
        for r in (out.decision.reasons if out.decision and not out.ok else ())
    ]
    return {
        "ok": out.ok,
        "code": out.code,
        "message": out.message,
        "said": [m.to_json() for m in out.said],
        "reasons": reasons,
        "factors": out.factors,
    }


def hand_off(req: Req, out: Finished, *, json: bool = False) -> Response:
    """The browser's sign-in ended (allowed or refused): conclude the attempt and send its token on.
    External browser: to the client's listener, sealed to its key. Embedded: in the cookie the client
    watches, at the final URL."""
    attempt = vpn_attempt(req)
    token = sso.conclude(req.ctx, attempt.handle, username=out.username, outcome=_outcome(out)) if attempt else None
    req.session.signin = None
    if attempt is None or token is None:
        return req.error(req.t("sso.expired"), 410)
    cookies: list[tuple[str, str]] = []
    if attempt.protocol == "fortinet":  # openfortivpn --saml-login's listener
        target = fortinet_listener_url(token)
    elif attempt.external and attempt.client_key:
        target = listener_url(seal(attempt.client_key, token), sso.done_url(req.ctx))
    else:
        target = sso.DONE_PATH
        cookies.append((sso.TOKEN_COOKIE, token) if out.ok else (sso.ERROR_COOKIE, out.code))
    resp: Response = JSONResponse({"ok": out.ok, "next": target}) if json else RedirectResponse(target, 303)
    for name, value in cookies:
        resp.set_cookie(name, value, max_age=300, path="/", secure=True, httponly=True, samesite="lax")
    return resp


@page("/sso/start", ("GET",), auth="none")
def start(req: Req) -> Response:
    handle = req.request.query_params.get("h", "")
    attempt = sso.find(req.ctx, handle)
    if attempt is None or attempt.outcome is not None:
        return req.error(req.t("sso.expired"), 410)
    req.session.signin = None  # a sign-in begun before for the portal does not carry over
    resp = req.redirect("/signin")
    max_age = int(req.ctx.config.gateway.auth_timeout.total_seconds())
    resp.set_cookie(SSO_COOKIE, handle, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")
    return resp


@page("/sso/done", ("GET",), auth="none")
def done(req: Req) -> Response:
    attempt = sso.find(req.ctx, req.request.cookies.get(SSO_COOKIE))
    outcome = attempt.outcome if attempt else None
    if outcome is None:
        resp = req.render("sso_done.html", ok=None)
    elif outcome.get("ok"):
        resp = req.render("sso_done.html", ok=True)
    else:
        texts = [req.t.said(m) for m in sso.said_of(outcome)]
        resp = req.render("sso_done.html", status=403, ok=False, reasons=texts)
    resp.delete_cookie(SSO_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return resp


ROUTES = [start, done]
