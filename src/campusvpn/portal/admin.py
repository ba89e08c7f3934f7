"""Admin console pages: find users, see everything (never secrets), act, the audit trail, bulk
import, API tokens.

Every action on an account has its own form and its own required reason (kept in the audit
trail); those that take something away (suspend, revoke, reset MFA) are confirmed on a page of
their own first. Times are local (the configured zone), as members see them."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from campusvpn.portal import admin_ops
from campusvpn.portal.web import Req, page
from campusvpn.service import accounts, api_tokens, audit, eligibility, lifecycle, mail_queue, throttling
from campusvpn.service.errors import ServiceError

# action -> (label key, needs a confirmation page); each needs its own reason
ACTIONS: dict[str, tuple[str, bool]] = {
    "kill": ("admin.kill", True),
    "reset_mfa": ("admin.reset_mfa", True),
    "pass": ("admin.pass", False),
    "unlock": ("admin.unlock", False),
    "suspended": ("admin.suspend", True),
    "revoked": ("admin.revoke", True),
    "active": ("admin.restore", False),
}
AUDIT_PAGE = 50


@page("/admin", auth="admin")
def admin_home(req: Req) -> Response:
    q = req.request.query_params.get("q", "")[:100]
    return req.render("admin/search.html", q=q, results=accounts.search(req.ctx, q) if q else None)


def _act(req: Req, username: str, action: str, reason: str) -> tuple[str | None, str | None]:
    """Do one action: (the notice, the error)."""
    ctx, actor, t = req.ctx, req.username, req.t
    if action in ("suspended", "revoked", "active"):
        admin_ops.set_status(ctx, username, action, reason, actor=actor)
        return t("admin.done", what=t(ACTIONS[action][0])), None
    if action == "reset_mfa":
        admin_ops.reset_mfa(ctx, username, reason, actor=actor)
        return t("admin.done", what=t("admin.reset_mfa")), None
    if action == "kill":
        admin_ops.kill_session(ctx, req.field("session", 40), reason, actor=actor)
        return t("admin.done", what=t("admin.kill")), None
    if action == "unlock":
        _, n = throttling.unlock_account(ctx, username, actor=actor, reason=reason)
        return t("admin.unlocked", n=n), None
    return None, t("err.not_found")


@page("/admin/users/{username}", ("GET", "POST"), auth="admin")
def admin_user(req: Req) -> Response:
    username = req.request.path_params["username"][:64]
    ctx, actor, t = req.ctx, req.username, req.t
    info = error = None
    issued: dict[str, str] | None = None
    if req.request.method == "POST":
        action, reason = req.field("action"), req.field("reason", 500)
        try:
            if action not in ACTIONS:
                error = t("err.not_found")
            elif not reason:
                error = t("admin.reason_required", what=t(ACTIONS[action][0]))
            elif ACTIONS[action][1] and req.field("confirmed") != "1":
                fields = {"action": action, "reason": reason}
                if action == "kill":
                    fields["session"] = req.field("session", 40)
                return req.render(
                    "confirm.html",
                    heading=t(ACTIONS[action][0]),
                    question=t("confirm.admin", what=t(ACTIONS[action][0]), user=username),
                    consequences=[t("confirm.admin." + action), t("confirm.admin.reason", reason=reason)],
                    yes=t(ACTIONS[action][0]),
                    post_to=f"/admin/users/{username}",
                    cancel=f"/admin/users/{username}",
                    fields=fields,
                    danger=True,
                )
            elif action == "pass":
                code, until = admin_ops.issue_pass(ctx, username, reason, actor=actor)
                issued = {"code": code, "until": t.when(until)}
            else:
                info, error = _act(req, username, action, reason)
        except ServiceError as exc:
            error = t.service_error(exc)
    try:
        detail = admin_ops.user_detail(ctx, username)
    except ServiceError as exc:
        return req.error(t.service_error(exc), 404)
    return req.render(
        "admin/user.html",
        status=400 if error else 200,
        u=detail,
        decision=eligibility.check(ctx, username),
        events=detail["audit"][:10],
        info=info,
        error=error,
        issued=issued,
        actions=ACTIONS,
    )


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@page("/admin/audit", auth="admin")
def admin_audit(req: Req) -> Response:
    """The whole trail, newest first, a page at a time, filtered by account, event and local dates."""
    qp = req.request.query_params
    f = {k: qp.get(k, "")[:64].strip() for k in ("user", "event", "from", "to")}
    try:
        page_no = max(1, min(int(qp.get("page", "1")), 100000))
    except ValueError:
        page_no = 1
    zone = req.t.zone
    start, end = _day(f["from"]), _day(f["to"])
    error = None
    if (f["from"] and start is None) or (f["to"] and end is None):
        error = req.t("admin.bad_date")
    subject = f["user"]
    if subject:
        with contextlib.suppress(ValueError):  # not a user name: searched as typed, it matches nothing
            subject = req.ctx.usernames.normalise(subject)
    events, total = audit.search(
        req.ctx,
        subject=subject or None,
        event=f["event"] or None,
        since=datetime.combine(start, time(), zone) if start else None,
        until=datetime.combine(end + timedelta(days=1), time(), zone) if end else None,
        offset=(page_no - 1) * AUDIT_PAGE,
        limit=AUDIT_PAGE,
    )
    pages = max(1, -(-total // AUDIT_PAGE))
    kept = [(k, v) for k, v in f.items() if v]

    def link(n: int) -> str:
        return "/admin/audit?" + urlencode([*kept, ("page", str(n))])

    return req.render(
        "admin/audit.html",
        f=f,
        events=events,
        total=total,
        page_no=page_no,
        pages=pages,
        prev_link=link(page_no - 1) if page_no > 1 else None,
        next_link=link(page_no + 1) if page_no < pages else None,
        error=error,
    )


@page("/admin/import", ("GET", "POST"), auth="admin")
def admin_import(req: Req) -> Response:
    report: dict[str, Any] | None = None
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
            error = req.t.service_error(exc)
    return req.render(
        "admin/tokens.html", tokens=api_tokens.listing(req.ctx), info=info, error=error, new_token=new_token
    )


@page("/admin/lifecycle", auth="admin")
def admin_lifecycle(req: Req) -> Response:
    """What the lifecycle job will do next (revocations) and how notices are getting out."""
    return req.render(
        "admin/lifecycle.html",
        upcoming=lifecycle.upcoming(req.ctx, days=60),
        delivery=mail_queue.overview(req.ctx, days=30),
    )


ROUTES = [admin_home, admin_user, admin_audit, admin_import, admin_tokens, admin_lifecycle]
