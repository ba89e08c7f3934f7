"""A signed-in member's VPN pages: home (MFA and VPN status), trusted devices, VPN sessions,
and how to connect (with the AnyConnect profile)."""

from __future__ import annotations

from starlette.responses import Response

from campusvpn.portal import connect_info
from campusvpn.portal.web import Req, page, take_info
from campusvpn.service import account_views, eligibility, mfa, notices, sessions, trusted
from campusvpn.service.errors import ServiceError
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say


@page("/")
def home(req: Req) -> Response:
    info = mfa.show(req.ctx, req.username)
    account, decision = account_views.overview(req.ctx, req.username)
    shown = notices.recent(req.ctx, req.username, limit=5)
    return req.render(
        "home.html",
        mfa=info,
        decision=decision,
        info=take_info(req),
        display_name=account.get("name") or None,
        notices=shown,
    )


@page("/devices", ("GET", "POST"))
def devices(req: Req) -> Response:
    info = None
    listed = trusted.list_devices(req.ctx, req.username)
    if req.request.method == "POST":
        device_id = req.field("device", 40)
        device = next((d for d in listed if d["id"] == device_id), None)
        if device is not None and req.field("confirmed") != "1":
            t = req.t
            return req.render(
                "confirm.html",
                heading=t("confirm.revoke_device.title"),
                question=t("confirm.revoke_device", label=t.device(str(device["label"]))),
                consequences=[t("confirm.revoke_device.effect")],
                yes=t("devices.revoke"),
                post_to="/devices",
                cancel="/devices",
                fields={"device": device_id},
                danger=True,
            )
        try:
            trusted.revoke_device(req.ctx, req.username, device_id, actor=req.username)
            info = req.t("devices.revoked")
        except ServiceError as exc:
            return req.error(req.t.service_error(exc), 404)
        listed = trusted.list_devices(req.ctx, req.username)
    return req.render("devices.html", devices=listed, info=info)


@page("/vpn", ("GET", "POST"))
def vpn(req: Req) -> Response:
    info = None
    mine = sessions.listing(req.ctx, username=req.username)
    if req.request.method == "POST":
        sid = req.field("session", 40)
        if not any(x["id"] == sid for x in mine):
            return req.error(req.t("err.not_found"), 404)
        sessions.kill(req.ctx, session_id=sid, actor=req.username, reason=say(Code.SESSION_ENDED_IN_PORTAL))
        info = req.t("vpn.disconnected")
        mine = sessions.listing(req.ctx, username=req.username)
    decision = eligibility.check(req.ctx, req.username)
    return req.render("vpn.html", decision=decision, sessions=mine, info=info)


@page("/connect")
def connect(req: Req) -> Response:
    # Not `info`: the base template shows a page's `info` as its status banner.
    return req.render("connect.html", setup=connect_info.for_user(req.ctx, req.username))


@page("/connect/profile.xml")
def connect_profile(req: Req) -> Response:
    body = connect_info.anyconnect_profile(req.ctx, req.username)
    return Response(
        body, media_type="application/xml", headers={"Content-Disposition": 'attachment; filename="campusvpn.xml"'}
    )


ROUTES = [home, devices, vpn, connect, connect_profile]
