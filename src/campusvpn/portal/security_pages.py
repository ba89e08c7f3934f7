"""The security-info page: verification methods, recovery codes and passkeys, changed only
after a fresh second factor and, for what cannot be undone, a confirmation step.

A change asked for without a fresh second factor is kept in the portal session while the user
steps up, and shown again for confirmation afterwards (nothing is done on a GET)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from campusvpn.core.policy import MfaState
from campusvpn.portal.recovery_codes_page import show_once
from campusvpn.portal.signin_flow import fresh
from campusvpn.portal.web import Req, ended, page, take_info
from campusvpn.service import mfa, passkeys
from campusvpn.service.errors import ServiceError

CONFIRMED_ACTIONS = ("delete", "delete_passkey", "codes")  # cannot be undone: asked once more


def _keep_pending(req: Req, fields: dict[str, str]) -> None:
    req.session.flash = {**(req.session.flash or {}), "pending": fields}


def _take_pending(req: Req) -> dict[str, str] | None:
    f = dict(req.session.flash or {})
    pending = f.pop("pending", None)
    req.session.flash = f or None
    return {str(k): str(v) for k, v in pending.items()} if isinstance(pending, dict) else None


def _confirmation(req: Req, fields: dict[str, str]) -> Response | None:
    """The confirmation page of a pending action, or None when the thing is already gone."""
    action, method_id = fields.get("action", ""), fields.get("method", "")
    info: dict[str, Any] = mfa.show(req.ctx, req.username)
    values: dict[str, Any] = {"post_to": "/security", "cancel": "/security", "fields": fields, "danger": True}
    t = req.t
    if action == "delete":
        methods: list[dict[str, Any]] = list(info["methods"])
        m = next((x for x in methods if x["id"] == method_id), None)
        if m is None:
            return None
        effects = [t("confirm.delete_method.effect")]
        if len(methods) == 1:
            days = req.ctx.config.mfa.reregister_window.days
            effects.append(t("security.delete_last", days=days) if days else t("security.delete_last_recovery"))
        values |= {
            "heading": t("confirm.delete_method.title"),
            "question": t("confirm.delete_method", label=t.method(m)),
            "consequences": effects,
            "yes": t("security.delete"),
        }
    elif action == "delete_passkey":
        k = next((x for x in passkeys.list_passkeys(req.ctx, req.username) if x["id"] == method_id), None)
        if k is None:
            return None
        values |= {
            "heading": t("confirm.delete_passkey.title"),
            "question": t("confirm.delete_passkey", label=k["label"]),
            "consequences": [t("confirm.delete_passkey.effect")],
            "yes": t("security.delete"),
        }
    elif action == "codes":
        values |= {
            "heading": t("confirm.codes.title"),
            "question": t("confirm.codes"),
            "consequences": [t("confirm.codes.effect", left=info["recovery_codes_left"])],
            "yes": t("confirm.codes.yes"),
        }
    else:
        return None
    return req.render("confirm.html", **values)


def _page(req: Req, status: int = 200, **values: Any) -> Response:
    return req.render(
        "security.html",
        status=status,
        mfa=mfa.show(req.ctx, req.username),
        fresh=fresh(req),
        passkeys=passkeys.list_passkeys(req.ctx, req.username),
        **_limits(req),
        **values,
    )


@page("/security", ("GET", "POST"))
def security(req: Req) -> Response:
    if req.request.method == "GET":
        pending = _take_pending(req)
        if pending and fresh(req):  # back from the step-up: confirm what was asked for
            shown = _confirmation(req, pending)
            if shown is not None:
                return shown
        return _page(req, info=take_info(req))
    action, method_id = req.field("action"), req.field("method", 40)
    if not fresh(req):
        _keep_pending(req, {"action": action, "method": method_id})
        return req.redirect("/stepup?next=/security")
    if action in CONFIRMED_ACTIONS and req.field("confirmed") != "1":
        shown = _confirmation(req, {"action": action, "method": method_id})
        if shown is not None:
            return shown
    try:
        if action == "delete":
            state = mfa.delete_method(
                req.ctx,
                req.username,
                method_id,
                actor=req.username,
                fresh_second_factor_at=req.session.second_factor_at,
            )
            if state is MfaState.REGISTRATION_REQUIRED:
                # No method left: registration again at the next sign-in (within the window) or
                # behind a recovery code (core rule).
                req.session.username = req.session.signed_in_at = None
                return ended(req.ctx, req, req.redirect("/signin?out=emptied"))
        elif action == "default":
            mfa.set_default(req.ctx, req.username, method_id, actor=req.username)
        elif action == "delete_passkey":
            passkeys.delete(req.ctx, req.username, method_id, req.source)
        elif action == "codes":
            codes = mfa.regenerate_recovery_codes(req.ctx, req.username, actor=req.username)
            return show_once(req, codes)
    except ServiceError as exc:
        return _page(req, status=400, error=req.t.service_error(exc))
    req.session.flash = {"info": req.t("security.changed")}
    return req.redirect("/security")


def _limits(req: Req) -> dict[str, int]:
    mfa_cfg = req.ctx.config.mfa
    return {
        "max_authenticators": mfa_cfg.max_authenticators,
        "reregister_days": mfa_cfg.reregister_window.days,
    }


ROUTES = [security]
