"""'Sign in with <university>' over SAML 2.0: campusvpn as the service provider.

/saml/metadata is this service provider's metadata for the identity provider's operators.
/signin/saml (a form with the page's CSRF token, so the pre-sign-in session is stored) sends the
browser to the identity provider with an AuthnRequest whose ID is kept in the portal session;
/saml/acs takes the answer (an HTTP-POST from the identity provider's page, so no CSRF token: the
answer must be InResponseTo the request kept in this browser's session, once), has it checked
(service.saml_sp) and turned into an account (service.saml), then goes on as every federated
sign-in does (portal.federated)."""

from __future__ import annotations

import logging

from starlette.responses import Response

from campusvpn.portal.federated import federated_signin, refused, to_provider
from campusvpn.portal.web import COOKIE, Req, label_in, page
from campusvpn.service import saml
from campusvpn.service.saml_sp import ACS_PATH, METADATA_PATH, SamlRefused, SamlUnavailable

log = logging.getLogger("campusvpn.portal")
MAX_ANSWER = 256 * 1024  # base64 of a signed assertion with attributes: a few kB, generously bounded


@page(METADATA_PATH, ("GET",), auth="none")
def saml_metadata(req: Req) -> Response:
    sp = req.ctx.saml
    if sp is None:
        return req.error(req.t("signin.idp_failed"), 404)
    return Response(sp.metadata(), media_type="application/samlmetadata+xml")


@page("/signin/saml", ("GET", "POST"), auth="none")
def saml_start(req: Req) -> Response:
    sp = req.ctx.saml
    if sp is None:
        return req.error(req.t("signin.idp_failed"), 404)
    if req.session.signed_in or req.request.method == "GET":
        return req.redirect("/")
    try:
        begun = sp.begin()
    except SamlUnavailable as exc:
        log.error("saml: %s", exc)
        return refused(req, "signin.idp_unavailable", 503)
    except SamlRefused as exc:
        log.error("saml: %s", exc)
        return refused(req, "signin.idp_failed", 502)
    req.session.signin = {"saml": {"request": begun.request_id}}
    return to_provider(req, begun.url, label_in(req.ctx.config.saml, req.t.lang))


@page(ACS_PATH, ("POST",), auth="none", csrf=False)
def saml_acs(req: Req) -> Response:
    sp = req.ctx.saml
    answer = req.form.get("SAMLResponse", "")
    if sp is None or not answer or len(answer) > MAX_ANSWER:
        return refused(req, "signin.idp_failed", 400)
    if req.request.cookies.get(COOKIE) is None and not req.form.get("reposted"):
        # Posted by the identity provider's page: the browser held our SameSite=Lax cookie back.
        # Post it again from our own page (the cookie comes along then); the session is untouched.
        page_ = req.render("saml_post.html", saml_response=answer, relay_state=req.field("RelayState", 80))
        page_.session_untouched = True  # type: ignore[attr-defined]
        return page_
    kept = (req.session.signin or {}).get("saml")
    req.session.signin = None  # one answer per request: a replayed answer finds nothing to answer
    if not isinstance(kept, dict) or not kept.get("request"):
        log.warning("saml: an answer with no sign-in started in this browser from %s", req.source)
        return refused(req, "signin.idp_failed", 400)
    try:
        asserted = sp.parse(answer, str(kept["request"]))
        verified = saml.accept(req.ctx, sp, asserted, source=req.source)
    except SamlUnavailable as exc:
        log.error("saml: %s", exc)
        return refused(req, "signin.idp_unavailable", 503)
    except SamlRefused as exc:
        log.warning("saml: refused from %s: %s", req.source, exc)
        return refused(req, "signin.idp_failed", 401)
    return federated_signin(req, verified.username, verified.idp_mfa)


ROUTES = [saml_metadata, saml_start, saml_acs]
