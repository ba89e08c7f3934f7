"""After the university's identity provider (OpenID Connect or SAML) vouched for someone: the same
sign-in engine as the password form, with a `Federated` event, so campusvpn's second factor (or
registration) follows unless the provider's MFA is trusted, and the policy decides as for anyone."""

from __future__ import annotations

from starlette.responses import Response

from campusvpn.portal.signin_flow import DEVICE_COOKIE, after, signin_purpose
from campusvpn.portal.web import Req, rotated
from campusvpn.service.signin_ports import start_signin
from campusvpn.signin import Federated, Prompt, Step


def to_provider(req: Req, url: str, label: str) -> Response:
    """Send the browser to the identity provider after the 'Sign in with' form. Not a redirect:
    Chromium applies the page's CSP `form-action 'self'` to a form's redirects too, and refuses a
    form POST answered by a redirect to another site. A page that goes on by itself (meta refresh,
    a link without it) is a navigation, which the CSP leaves alone."""
    return req.render("idp_go.html", url=url, label=label)


def refused(req: Req, key: str, status: int) -> Response:
    """The sign-in page again with why the provider's answer was not taken; nothing is kept."""
    req.session.signin = None
    return req.render("signin.html", status=status, error=req.t(key))


def federated_signin(req: Req, username: str, idp_mfa: str | None) -> Response:
    # A browser signing in for a waiting VPN client signs in under the VPN's policy; `after` hands it over.
    engine = start_signin(req.ctx, signin_purpose(req), req.source)
    out = engine.handle(Federated(username, idp_mfa, req.request.cookies.get(DEVICE_COOKIE)))
    if isinstance(out, Prompt) and out.step is not Step.PASSWORD:
        req.session.signin = engine.snapshot()
        return rotated(req.redirect("/signin/code" if out.step is Step.SECOND_FACTOR else "/register"))
    return after(req, engine, out, "/signin")
