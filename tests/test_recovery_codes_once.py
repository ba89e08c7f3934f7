"""Recovery codes are shown once through POST/Redirect/GET: the form that makes them answers 303, the
GET shows them one time (sealed in the session meanwhile, never in clear), and a reload or Back says
they were already shown and offers a new set through the usual confirmation."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlalchemy import select
from tests.test_portal import USER, client, csrf, pctx, register_totp, sign_in, totp_now

from campusvpn.platform.clock import FixedClock
from campusvpn.portal.recovery_codes_page import LIFETIME
from campusvpn.service import mfa
from campusvpn.service.context import Context
from campusvpn.store.models import WebSession

__all__ = ["pctx"]
CODE = re.compile(r"<li><code>([A-Z2-7-]{19})</code></li>")


def _stored_flash(ctx: Context) -> str:
    with ctx.tx() as s:
        return json.dumps([row for row in s.scalars(select(WebSession.flash))])


def test_first_registration_redirects_to_codes_shown_once(pctx: Context, clock: FixedClock) -> None:
    mfa.apply(pctx, USER, actor="test")
    c = client(pctx)
    sign_in(c)
    page = c.get("/mfa/totp").text
    secret = re.search(r'data-value="([A-Z2-7]+)"', page)
    assert secret
    r = c.post(
        "/mfa/totp",
        data={"csrf": csrf(page), "code": totp_now(pctx, secret.group(1), clock)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/recovery-codes"
    assert not CODE.search(r.text)
    stored = _stored_flash(pctx)  # waiting for the GET: sealed, not in clear
    shown = c.get("/recovery-codes")
    codes = CODE.findall(shown.text)
    assert len(codes) == 10 and not any(code in stored for code in codes)
    again = c.get("/recovery-codes").text  # a reload, or Back to this page
    assert not CODE.search(again) and 'id="codes-shown"' in again and "already shown" in again
    assert 'name="action" value="codes"' in again  # a new set, through the security page


def test_new_set_is_post_redirect_get_and_a_reload_offers_a_new_set(pctx: Context, clock: FixedClock) -> None:
    mfa.apply(pctx, USER, actor="test")
    c = client(pctx)
    sign_in(c)
    register_totp(c, pctx, clock)
    sec = c.get("/security").text
    r = c.post("/security", data={"csrf": csrf(sec), "action": "codes", "confirmed": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/recovery-codes"
    codes = CODE.findall(c.get("/recovery-codes").text)
    assert len(codes) == 10
    again = c.get("/recovery-codes").text
    assert not CODE.search(again) and "already shown" in again
    # "Make a new set" from there goes to the existing confirmation, which changes nothing yet.
    r = c.post("/security", data={"csrf": csrf(again), "action": "codes"})
    assert 'id="confirm"' in r.text and mfa.show(pctx, USER)["recovery_codes_left"] == 10
    ja = c.get("/recovery-codes?lang=ja").text
    assert "すでに表示しました" in ja


def test_codes_not_fetched_in_time_are_not_shown(pctx: Context, clock: FixedClock) -> None:
    mfa.apply(pctx, USER, actor="test")
    c = client(pctx)
    sign_in(c)
    register_totp(c, pctx, clock)
    sec = c.get("/security").text
    c.post("/security", data={"csrf": csrf(sec), "action": "codes", "confirmed": "1"}, follow_redirects=False)
    clock.advance(LIFETIME + timedelta(seconds=1))
    page = c.get("/recovery-codes").text
    assert not CODE.search(page) and "already shown" in page
