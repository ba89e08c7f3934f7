"""The admin console through the ASGI app: local times, the audit trail's filters and pages,
unlocking a throttled account, one reason per action, confirmations, no CLI words."""

from __future__ import annotations

import re
from datetime import timedelta

from starlette.testclient import TestClient
from tests.conftest import PASSWORD, add_user
from tests.test_portal import ADMIN, USER, client, csrf, pctx, register_totp, sign_in

from campusvpn.core.calendar import format_from
from campusvpn.platform.clock import FixedClock
from campusvpn.service import accounts, audit, mfa, phones
from campusvpn.service.context import Context

__all__ = ["pctx"]


def _admin(ctx: Context, clock: FixedClock) -> TestClient:
    add_user(ctx, ADMIN)
    mfa.apply(ctx, ADMIN, actor="test")
    a = client(ctx)
    sign_in(a, ADMIN)
    register_totp(a, ctx, clock)
    return a


def test_user_page_has_local_times_a_form_and_reason_per_action_and_no_cli_words(
    pctx: Context, clock: FixedClock
) -> None:
    a = _admin(pctx, clock)
    mfa.apply(pctx, USER, actor="test")
    page = a.get(f"/admin/users/{USER}").text
    # START is 00:00 UTC = 09:00 in Tokyo: the console says 09:00 JST, never the raw UTC ISO text.
    assert "2026-10-01 09:00 JST" in page and "2026-10-01T00:00" not in page
    forms = re.findall(r'<form method="post" class="action-form" id="action-(\w+)">(.*?)</form>', page, re.S)
    assert {f for f, _ in forms} == {"reset_mfa", "pass", "unlock", "suspended", "revoked"}
    assert all(body.count('name="reason"') == 1 and "required" in body for _, body in forms)
    assert "--" not in re.sub(r"<!--.*?-->", "", page).replace("—", "")  # no command-line flags
    ja = a.get(f"/admin/users/{USER}?lang=ja").text
    assert "有効" in ja and "確認方法未登録" in ja and "suspended" not in re.sub(r'"[^"]*"', "", ja)


def test_suspend_is_confirmed_with_its_reason(pctx: Context, clock: FixedClock) -> None:
    a = _admin(pctx, clock)
    page = a.get(f"/admin/users/{USER}").text
    fields = {"csrf": csrf(page), "action": "suspended", "reason": "laptop stolen; reported by phone"}
    r = a.post(f"/admin/users/{USER}", data=fields)
    assert 'id="confirm"' in r.text and accounts.search(pctx, USER)[0]["status"] == "active"
    r = a.post(f"/admin/users/{USER}", data={**fields, "csrf": csrf(r.text), "confirmed": "1"})
    assert accounts.search(pctx, USER)[0]["status"] == "suspended"
    assert 'data-status="suspended"' in r.text and 'id="action-active"' in r.text
    assert "Active</dd>" not in r.text and "(laptop stolen; reported by phone)</dd>" in r.text
    back = {"csrf": csrf(r.text), "action": "active", "reason": "laptop found", "confirmed": "1"}
    r = a.post(f"/admin/users/{USER}", data=back)
    assert accounts.search(pctx, USER)[0]["status"] == "active"
    assert "(laptop found)</dd>" not in r.text  # not "active (laptop found)": the reason lives in the audit trail


def test_a_throttled_user_is_unlocked_with_a_reason(pctx: Context, clock: FixedClock) -> None:
    a = _admin(pctx, clock)
    u = client(pctx)
    for _ in range(5):
        sign_in(u, USER, "wrong password")
    assert "Wait" in sign_in(u, USER, PASSWORD)  # the right password waits too (the clock stands still)
    page = a.get(f"/admin/users/{USER}").text
    r = a.post(f"/admin/users/{USER}", data={"csrf": csrf(page), "action": "unlock", "reason": "ID checked"})
    assert "Sign-in unlocked" in r.text and 'data-event="account.unlocked"' in r.text and "ID checked" in r.text
    assert "Wait" not in sign_in(u, USER, PASSWORD)


def test_audit_trail_filters_and_pages(pctx: Context, clock: FixedClock) -> None:
    for i in range(60):  # 60 applications and their audit events, a minute apart
        name = f"12000000{i:02d}"
        add_user(pctx, name)
        clock.advance(timedelta(minutes=1))
        mfa.apply(pctx, name, actor="test")
    a = _admin(pctx, clock)
    whole = a.get("/admin/audit").text
    total = int(re.search(r'<p id="audit-count">Events: (\d+)', whole).group(1))  # type: ignore[union-attr]
    assert total == len(audit.listing(pctx)) and "page 1 of" in whole
    assert whole.count("<tr data-event=") == 50 and 'rel="next"' in whole and 'rel="prev"' not in whole
    last = a.get(f"/admin/audit?page={-(-total // 50)}").text
    assert last.count("<tr data-event=") == total - 50 * (total // 50) and 'rel="prev"' in last
    assert 'rel="next"' not in last
    applied = a.get("/admin/audit?event=mfa.applied").text
    assert "Events: 61 " in applied  # and the admin and "Applied for MFA" in applied
    assert 'href="/admin/audit?event=mfa.applied&amp;page=2"' in applied  # the filter is kept when paging
    one = a.get("/admin/audit?user=１２０００００００５&event=mfa.").text  # any accepted form of the name
    assert "Events: 1 " in one
    assert "Events: 0 " in a.get("/admin/audit?from=2026-10-02").text
    day = a.get("/admin/audit?from=2026-10-01&to=2026-10-01&event=mfa.applied").text
    assert "Events: 61 " in day
    assert "Dates are like" in a.get("/admin/audit?from=yesterday").text


def test_vpn_pill_says_waiting_with_its_time_not_refused(pctx: Context, clock: FixedClock) -> None:
    a = _admin(pctx, clock)
    mfa.apply(pctx, USER, actor="test")
    u = client(pctx)
    sign_in(u)
    register_totp(u, pctx, clock)  # registered: only the activation delay is left
    pill = re.compile(r'<span class="pill (\w+)" id="vpn-pill" data-state="(\w+)">([^<]*)</span>')
    m = pill.search(a.get(f"/admin/users/{USER}").text)
    assert m and m.group(1, 2) == ("info", "waiting")
    at = pctx.config.mfa.activation_delay + clock.now()
    assert m.group(3) == f"VPN: usable from {format_from(at, pctx.policy.zone)}"
    ja = pill.search(a.get(f"/admin/users/{USER}?lang=ja").text)
    assert ja and ja.group(3) == f"VPN：{format_from(at, pctx.policy.zone)} から利用可"
    a.get("/admin?lang=en")
    while clock.now() < at:  # in steps shorter than the idle timeout, so the console stays signed in
        clock.advance(timedelta(minutes=10))
        a.get("/admin")
    m = pill.search(a.get(f"/admin/users/{USER}").text)
    assert m and m.group(1, 2, 3) == ("good", "allowed", "VPN: allowed")
    page = a.get(f"/admin/users/{USER}").text
    a.post(f"/admin/users/{USER}", data={"csrf": csrf(page), "action": "suspended", "reason": "x", "confirmed": "1"})
    m = pill.search(a.get(f"/admin/users/{USER}").text)
    assert m and m.group(1, 2, 3) == ("bad", "refused", "VPN: refused")


def test_a_phone_started_but_not_confirmed_is_shown_to_the_admin(pctx: Context, clock: FixedClock) -> None:
    a = _admin(pctx, clock)
    assert 'id="mfa-pending"' not in a.get(f"/admin/users/{USER}").text
    mfa.apply(pctx, USER, actor=USER)
    phones.begin_phone(pctx, USER, "mobile", "090-1234-5678", None, None, actor=USER)  # its code never typed
    page = a.get(f"/admin/users/{USER}").text
    pending = page[page.index('id="mfa-pending"') :]
    assert "78" in pending.split("</ul>")[0] and "not confirmed" in pending  # which phone, and that it is unusable
