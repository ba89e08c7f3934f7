"""The identity-verified self-reset's pages (rules: service.identity_links).

/identity: a signed-in member links (after a fresh second factor) or unlinks their verified
identity. /forgot: "Forgot your password or lost your phone?" sends the browser to the
[verification] provider. Both come back to /identity/callback, which checks the answer with the
OpenID Connect client (state, nonce, PKCE, the ID token) and then links, or lets /reset set a new
password and/or reset MFA for the account linked to that identity, for [verification] reset_window."""

from __future__ import annotations

import contextlib
import hmac
import logging
from datetime import datetime

from starlette.responses import Response

from campusvpn.portal.federated import to_provider
from campusvpn.portal.signin_flow import fresh
from campusvpn.portal.web import Req, label_in, page, rotated, take_info
from campusvpn.service import identity_links
from campusvpn.service.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError
from campusvpn.service.oidc_client import OidcRefused, OidcUnavailable
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say

log = logging.getLogger("campusvpn.portal")
CALLBACK = "/identity/callback"


def _redirect_uri(req: Req) -> str:
    return str(req.request.base_url).rstrip("/") + CALLBACK


def _go(req: Req, purpose: str) -> Response:
    client = req.ctx.verification
    assert client is not None
    try:
        begun = client.begin(_redirect_uri(req))
    except (OidcUnavailable, OidcRefused) as exc:
        log.error("verification: %s", exc)
        return req.error(req.t("verify.unavailable"), 503)
    req.session.signin = {"verify": {**begun.state, "for": purpose, "who": req.session.username or ""}}
    return to_provider(req, begun.url, label_in(req.ctx.config.verification, req.t.lang))


@page("/identity", ("GET", "POST"))
def identity(req: Req) -> Response:
    if req.ctx.verification is None:
        return req.error(req.t("verify.not_offered"), 404)
    if req.request.method == "POST":
        if not fresh(req):
            return req.redirect("/stepup?next=/identity")
        if req.field("action") == "unlink":
            with contextlib.suppress(NotFound):  # already unlinked (another tab)
                identity_links.unlink(
                    req.ctx, req.username, fresh_second_factor_at=req.session.second_factor_at, source=req.source
                )
            req.session.flash = {"info": req.t("verify.unlinked")}
            return req.redirect("/identity")
        return _go(req, "link")
    return req.render(
        "identity.html",
        linked=identity_links.linked(req.ctx, req.username),
        label=label_in(req.ctx.config.verification, req.t.lang),
        info=take_info(req),
    )


@page("/forgot", ("GET", "POST"), auth="none")
def forgot(req: Req) -> Response:
    if req.ctx.verification is None:
        return req.error(req.t("verify.not_offered"), 404)
    if req.request.method == "GET":
        return req.render("forgot.html", label=label_in(req.ctx.config.verification, req.t.lang))
    return _go(req, "reset")


@page(CALLBACK, ("GET",), auth="none")
def identity_callback(req: Req) -> Response:
    client = req.ctx.verification
    kept = (req.session.signin or {}).get("verify")
    req.session.signin = None  # one answer per start: a replayed callback finds nothing
    q = req.request.query_params
    if client is None or not isinstance(kept, dict):
        return req.error(req.t("verify.failed"), 400)
    if not hmac.compare_digest(q.get("state", ""), str(kept.get("state", ""))):
        log.warning("verification: callback with a state of another start from %s", req.source)
        return req.error(req.t("verify.failed"), 400)
    if q.get("error") or not q.get("code"):
        log.info("verification: the provider answered %s", q.get("error"))
        return req.error(req.t("verify.failed"), 401)
    try:
        token = client.exchange(q["code"][:2000], str(kept["verifier"]), _redirect_uri(req))
        issuer, subject = identity_links.subject_of(req.ctx, client.validate(token, str(kept["nonce"])))
    except OidcUnavailable as exc:
        log.error("verification: %s", exc)
        return req.error(req.t("verify.unavailable"), 503)
    except OidcRefused as exc:
        log.warning("verification: refused from %s: %s", req.source, exc)
        return req.error(req.t("verify.failed"), 401)
    if kept.get("for") == "link":
        if not req.session.signed_in or req.session.username != kept.get("who"):
            return req.error(req.t("verify.failed"), 400)
        try:
            identity_links.link(
                req.ctx,
                req.username,
                issuer,
                subject,
                fresh_second_factor_at=req.session.second_factor_at,
                source=req.source,
            )
        except Conflict as exc:
            key = "verify.taken" if "another account" in str(exc) else "verify.already_linked"
            return req.error(req.t(key), 409)
        except ServiceError:
            return req.redirect("/stepup?next=/identity")  # the step-up aged meanwhile
        req.session.flash = {"info": req.t("verify.linked")}
        return req.redirect("/identity")
    try:
        username = identity_links.account_for(req.ctx, issuer, subject, source=req.source)
    except NotFound:
        return req.error(req.t("verify.not_linked"), 403)
    except Forbidden:
        return req.error(req.t("verify.account_closed"), 403)
    req.session.signin = {"reset": username, "at": req.ctx.clock.now().isoformat()}
    return rotated(req.redirect("/reset"))


def _reset_user(req: Req) -> str | None:
    kept = req.session.signin or {}
    who, at = kept.get("reset"), kept.get("at")
    if not isinstance(who, str) or not isinstance(at, str):
        return None
    if req.ctx.clock.now() - datetime.fromisoformat(at) > req.ctx.config.verification.reset_window:
        return None
    return who


@page("/reset", ("GET", "POST"), auth="none")
def reset(req: Req) -> Response:
    who = _reset_user(req)
    if who is None or req.ctx.verification is None:
        req.session.signin = None
        return req.error(req.t("verify.expired"), 403)
    min_length = req.ctx.config.passwords.min_length
    ldap = req.ctx.config.identity.first_factor == "ldap"
    if req.request.method == "GET":
        return req.render("reset.html", who=who, min_length=min_length, ldap=ldap)
    new, again = req.form.get("new", "")[:1100], req.form.get("again", "")[:1100]
    reset_mfa = req.field("mfa") == "1"
    try:
        if not new and not reset_mfa:
            raise Invalid(say(Code.VERIFY_NOTHING_CHOSEN))
        if new and new != again:
            raise Invalid(say(Code.PASSWORD_MISMATCH))
        if new:
            identity_links.reset_password(req.ctx, who, new, source=req.source)
        if reset_mfa:
            identity_links.reset_mfa(req.ctx, who)
    except ServiceError as exc:
        return req.render(
            "reset.html", status=400, who=who, min_length=min_length, ldap=ldap, error=req.t.service_error(exc)
        )
    req.session.signin = None
    return req.redirect("/signin?out=reset")


ROUTES = [identity, forgot, identity_callback, reset]
