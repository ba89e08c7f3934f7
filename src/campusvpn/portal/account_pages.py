"""The member's own account: password change and the e-mail address notices go to."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from campusvpn.portal.signin_flow import fresh
from campusvpn.portal.web import Req, page, take_info
from campusvpn.service import self_service
from campusvpn.service.errors import Invalid, ServiceError
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say


def _has_methods(req: Req) -> bool:
    return self_service.profile(req.ctx, req.username).has_methods


@page("/password", ("GET", "POST"))
def password(req: Req) -> Response:
    min_length = req.ctx.config.passwords.min_length
    if _has_methods(req) and not fresh(req):
        return req.redirect("/stepup?next=/password")
    if req.request.method == "POST":
        new, again = req.form.get("new", "")[:1100], req.form.get("again", "")[:1100]
        try:
            if new != again:
                raise Invalid(say(Code.PASSWORD_MISMATCH))
            self_service.change_password(
                req.ctx,
                req.username,
                req.form.get("current", "")[:1100],
                new,
                fresh_second_factor_at=req.session.second_factor_at,
                source=req.source,
            )
        except ServiceError as exc:
            return req.render("password.html", status=400, error=str(exc), min_length=min_length)
        req.session.flash = {"info": req.t("password.changed")}
        return req.redirect("/security")
    return req.render("password.html", min_length=min_length)


@page("/email", ("GET", "POST"))
def email(req: Req) -> Response:
    me = self_service.profile(req.ctx, req.username)
    language = me.language or req.ctx.config.portal.default_language
    shown: dict[str, Any] = {"current": me.email, "language": language}
    if req.request.method == "POST" and req.field("action") == "language":
        # Which language notices are written in: not security info, no step-up.
        self_service.set_language(req.ctx, req.username, req.field("language", 4))
        req.session.flash = {"info": req.t("email.language_saved")}
        return req.redirect("/email")
    if req.request.method == "POST":
        if me.has_methods and not fresh(req):
            return req.redirect("/stepup?next=/email")
        address = req.field("address", 300)
        try:
            self_service.begin_email(
                req.ctx,
                req.username,
                address,
                lang=req.t.lang,
                fresh_second_factor_at=req.session.second_factor_at,
            )
        except ServiceError as exc:
            return req.render("email.html", status=400, error=str(exc), address=address, **shown)
        return req.render("email.html", info=req.t("email.sent", address=address), **shown)
    return req.render("email.html", info=take_info(req), **shown)


@page("/email/confirm", ("GET", "POST"), auth="none")
def email_confirm(req: Req) -> Response:
    # The link is opened with GET (mail scanners fetch links too); only the button's POST uses it.
    token = req.request.query_params.get("token", "")[:100]
    if req.request.method == "POST":
        try:
            self_service.confirm_email(req.ctx, token)
        except ServiceError as exc:
            return req.render("email_confirm.html", status=404, error=str(exc), token=token)
        return req.render("email_confirm.html", done=True, token=token)
    return req.render("email_confirm.html", token=token)


ROUTES = [password, email, email_confirm]
