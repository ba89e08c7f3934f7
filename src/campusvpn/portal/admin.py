"""Admin console pages: find users, see everything (never secrets), act, bulk import, API tokens."""

from __future__ import annotations

from starlette.responses import Response

from campusvpn.portal import admin_ops
from campusvpn.portal.web import Req, page
from campusvpn.service import accounts, api_tokens
from campusvpn.service.errors import ServiceError


@page("/admin", auth="admin")
def admin_home(req: Req) -> Response:
    q = req.request.query_params.get("q", "")[:100]
    return req.render("admin/search.html", q=q, results=accounts.search(req.ctx, q) if q else None)


@page("/admin/users/{username}", ("GET", "POST"), auth="admin")
def admin_user(req: Req) -> Response:
    username = req.request.path_params["username"][:64]
    ctx, actor = req.ctx, req.username
    info = error = None
    if req.request.method == "POST":
        action, reason = req.field("action"), req.field("reason", 500)
        try:
            if action in ("suspended", "revoked", "active"):
                admin_ops.set_status(ctx, username, action, reason, actor=actor)
                info = req.t("admin.done", what=action)
            elif action == "reset_mfa":
                admin_ops.reset_mfa(ctx, username, reason, actor=actor)
                info = req.t("admin.done", what=req.t("admin.reset_mfa"))
            elif action == "kill":
                admin_ops.kill_session(ctx, req.field("session", 40), actor=actor)
                info = req.t("admin.done", what=req.t("admin.kill"))
            elif action == "pass":
                code, until = admin_ops.issue_pass(ctx, username, reason, actor=actor)
                info = req.t("admin.pass_shown", user=username, until=req.t.time(until), code=code)
        except ServiceError as exc:
            error = str(exc)
    try:
        detail = admin_ops.user_detail(ctx, username)
    except ServiceError as exc:
        return req.error(str(exc), 404)
    return req.render("admin/user.html", u=detail, info=info, error=error, status=400 if error else 200)


@page("/admin/import", ("GET", "POST"), auth="admin")
def admin_import(req: Req) -> Response:
    report = None
    error = None
    if req.request.method == "POST":
        kind = req.field("kind")
        raw = req.files.get("file", b"")
        if len(raw) > req.ctx.config.portal.max_upload:
            error = req.t("err.too_big", size=f"{req.ctx.config.portal.max_upload // 1024} KiB")
        else:
            text = raw.decode("utf-8-sig", errors="replace")
            if kind == "roster":
                report = admin_ops.import_roster(req.ctx, text, actor=req.username)
            elif kind == "training":
                report = admin_ops.import_training(req.ctx, text, actor=req.username)
    return req.render("admin/import.html", report=report, error=error)


@page("/admin/tokens", ("GET", "POST"), auth="admin")
def admin_tokens(req: Req) -> Response:
    info = error = new_token = None
    if req.request.method == "POST":
        try:
            if req.field("action") == "revoke":
                api_tokens.revoke(req.ctx, req.field("token", 40), actor=req.username)
            else:
                new_token = api_tokens.create(req.ctx, req.username, req.field("label", 200))
        except ServiceError as exc:
            error = str(exc)
    return req.render(
        "admin/tokens.html", tokens=api_tokens.listing(req.ctx), info=info, error=error, new_token=new_token
    )


ROUTES = [admin_home, admin_user, admin_import, admin_tokens]
