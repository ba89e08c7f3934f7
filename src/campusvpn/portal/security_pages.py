"""The security-info page: verification methods, recovery codes and passkeys, changed only
after a fresh second factor."""

from __future__ import annotations

from starlette.responses import Response

from campusvpn.core.policy import MfaState
from campusvpn.portal.signin_flow import fresh
from campusvpn.portal.web import Req, ended, page, take_info
from campusvpn.service import mfa, passkeys
from campusvpn.service.errors import ServiceError


@page("/security", ("GET", "POST"))
def security(req: Req) -> Response:
    if req.request.method == "POST":
        if not fresh(req):
            return req.redirect("/stepup?next=/security")
        action, method_id = req.field("action"), req.field("method", 40)
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
                    # No method left: registration again, behind a recovery code (core rule).
                    req.session.username = req.session.signed_in_at = None
                    return ended(req.ctx, req, req.redirect("/signin?out=emptied"))
            elif action == "default":
                mfa.set_default(req.ctx, req.username, method_id, actor=req.username)
            elif action == "delete_passkey":
                passkeys.delete(req.ctx, req.username, method_id, req.source)
            elif action == "codes":
                codes = mfa.regenerate_recovery_codes(req.ctx, req.username, actor=req.username)
                return req.render("codes.html", codes=codes, left=len(codes), total=len(codes))
        except ServiceError as exc:
            return req.render(
                "security.html",
                status=400,
                mfa=mfa.show(req.ctx, req.username),
                error=str(exc),
                fresh=fresh(req),
                passkeys=passkeys.list_passkeys(req.ctx, req.username),
                **_limits(req),
            )
        req.session.flash = {"info": req.t("security.changed")}
        return req.redirect("/security")
    return req.render(
        "security.html",
        mfa=mfa.show(req.ctx, req.username),
        info=take_info(req),
        fresh=fresh(req),
        passkeys=passkeys.list_passkeys(req.ctx, req.username),
        **_limits(req),
    )


def _limits(req: Req) -> dict[str, int]:
    mfa_cfg = req.ctx.config.mfa
    return {
        "max_authenticators": mfa_cfg.max_authenticators,
        "reregister_days": mfa_cfg.reregister_window.days,
    }


ROUTES = [security]
