"""'Sign in with <university>': the OpenID Connect leg of the portal sign-in.

/signin/oidc (a form with the page's CSRF token, so the pre-sign-in session is stored) sends the
browser to the provider with a fresh state, nonce and PKCE challenge kept in the portal session;
/signin/oidc/callback takes them back out (once), exchanges the code, has the ID token checked
(service.oidc_client) and turned into an account (service.oidc), then drives the same sign-in
engine as the password form with a `Federated` event: campusvpn's second factor follows unless
the provider's MFA is trusted."""

from __future__ import annotations

import hmac
import logging

from starlette.responses import Response

from campusvpn.portal.federated import federated_signin, refused, to_provider
from campusvpn.portal.web import Req, label_in, page
from campusvpn.service import oidc
from campusvpn.service.oidc_client import OidcRefused, OidcUnavailable

log = logging.getLogger("campusvpn.portal")
CALLBACK = "/signin/oidc/callback"


def _redirect_uri(req: Req) -> str:
    return str(req.request.base_url).rstrip("/") + CALLBACK


@page("/signin/oidc", ("GET", "POST"), auth="none")
def oidc_start(req: Req) -> Response:
    client = req.ctx.oidc
    if client is None:
        return req.error(req.t("signin.idp_failed"), 404)
    if req.session.signed_in or req.request.method == "GET":
        return req.redirect("/")
    try:
        begun = client.begin(_redirect_uri(req))
    except OidcUnavailable as exc:
        log.error("oidc: %s", exc)
        return refused(req, "signin.idp_unavailable", 503)
    except OidcRefused as exc:
        log.error("oidc: %s", exc)
        return refused(req, "signin.idp_failed", 502)
    req.session.signin = {"oidc": begun.state}
    return to_provider(req, begun.url, label_in(req.ctx.config.oidc, req.t.lang))


@page(CALLBACK, ("GET",), auth="none")
def oidc_callback(req: Req) -> Response:
    client = req.ctx.oidc
    kept = (req.session.signin or {}).get("oidc")
    req.session.signin = None  # one answer per sign-in: a replayed callback finds nothing
    q = req.request.query_params
    if client is None or not isinstance(kept, dict):
        return refused(req, "signin.idp_failed", 400)
    if not hmac.compare_digest(q.get("state", ""), str(kept.get("state", ""))):
        log.warning("oidc: callback with a state of another sign-in from %s", req.source)
        return refused(req, "signin.idp_failed", 400)
    if q.get("error") or not q.get("code"):
        log.info("oidc: the provider answered %s: %s", q.get("error"), q.get("error_description", "")[:200])
        return refused(req, "signin.idp_failed", 401)
    try:
        token = client.exchange(q["code"][:2000], str(kept["verifier"]), _redirect_uri(req))
        claims = client.validate(token, str(kept["nonce"]))
        verified = oidc.accept(req.ctx, client, claims, source=req.source)
    except OidcUnavailable as exc:
        log.error("oidc: %s", exc)
        return refused(req, "signin.idp_unavailable", 503)
    except OidcRefused as exc:
        log.warning("oidc: refused from %s: %s", req.source, exc)
        return refused(req, "signin.idp_failed", 401)
    return federated_signin(req, verified.username, verified.idp_mfa)


ROUTES = [oidc_start, oidc_callback]
