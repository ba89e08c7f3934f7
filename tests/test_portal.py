"""The portal through its ASGI app (httpx TestClient): flows, CSRF, sessions, language, admin, API.
The same flows run in real Chromium in tests/e2e/test_portal_browser.py."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from starlette.testclient import TestClient
from tests.conftest import PASSWORD, add_user, make_config

from campusvpn.platform.clock import FixedClock
from campusvpn.portal import i18n
from campusvpn.portal.app import create_app
from campusvpn.service import audit, live_sessions, mfa, sessions, trusted
from campusvpn.service.context import Context, open_context
from campusvpn.service.sender import read_outbox

USER = "1234567890"
ADMIN = "9000000001"


@pytest.fixture
def pctx(tmp_path: Path, clock: FixedClock) -> Context:
    c = open_context(make_config(tmp_path, f'[portal]\nadmins = ["{ADMIN}"]\ndefault_language = "en"\n'), clock)
    add_user(c, USER)
    with c.tx() as s:
        c.user(s, USER).email = "user@example.ac.jp"
    return c


def client(ctx: Context) -> TestClient:
    return TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=True)


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(c: TestClient, name: str = USER, password: str = PASSWORD) -> str:
    page = c.get("/signin").text
    r = c.post("/signin", data={"csrf": csrf(page), "username": name, "password": password})
    return r.text


def totp_now(ctx: Context, secret: str, clock: FixedClock) -> str:
    return pyotp.TOTP(secret).at(clock.now())


def register_totp(c: TestClient, ctx: Context, clock: FixedClock) -> tuple[str, list[str]]:
    page = c.get("/mfa/totp").text
    secret = re.search(r'<code id="secret" class="secret" data-value="([A-Z2-7]+)">', page)
    assert secret, page
    # Shown grouped by four for typing, and as a link that opens the authenticator app on this phone.
    grouped = " ".join(secret.group(1)[i : i + 4] for i in range(0, len(secret.group(1)), 4))
    assert f">{grouped}</code>" in page and 'href="otpauth://totp/' in page
    # A reload or a language switch shows the same secret: the app may have scanned it already.
    for again in (c.get("/mfa/totp").text, c.get("/mfa/totp?lang=ja").text):
        assert f'data-value="{secret.group(1)}"' in again
    page = c.get("/mfa/totp?lang=en").text
    r = c.post("/mfa/totp", data={"csrf": csrf(page), "code": totp_now(ctx, secret.group(1), clock)})
    codes = re.findall(r"<li><code>([A-Z2-7-]{19})</code></li>", r.text)
    return secret.group(1), codes


def test_apply_register_totp_then_sign_in_with_code_and_trust(pctx: Context, clock: FixedClock) -> None:
    c = client(pctx)
    home = sign_in(c)
    assert "You have not applied for MFA" in home
    page = c.get("/apply").text
    assert "09:40" in page  # START is 09:00 Tokyo; 40 minutes later, the exact time
    done = c.post("/apply", data={"csrf": csrf(page)}).text
    assert "Sign in again to register" in done
    assert 'action="/signout"' not in done and 'href="/vpn"' not in done  # the sign-in ended: no menu, no "Sign out"
    # The next sign-in forces registration.
    assert "Register a verification method" in sign_in(c)
    secret, codes = register_totp(c, pctx, clock)
    assert len(codes) == 10 and "10 of 10" in c.get("/security").text
    status = c.get("/vpn").text
    assert 'data-code="mfa_activation_pending"' in status and "09:40" in status
    clock.advance(timedelta(minutes=20))
    assert 'data-code="mfa_activation_pending"' in c.get("/vpn").text
    clock.advance(timedelta(minutes=21))  # each page view keeps the portal session (30 min idle) alive
    assert "You may use the VPN now." in c.get("/vpn").text
    c.post("/signout", data={"csrf": csrf(c.get("/").text)})
    # Second factor with "skip on this device".
    assert "authenticator app" in sign_in(c)
    clock.advance(timedelta(seconds=30))
    page = c.get("/signin/code").text
    assert f"Signing in as {USER}." in page  # which account the code is for
    r = c.post("/signin/code", data={"csrf": csrf(page), "code": totp_now(pctx, secret, clock), "trust": "1"})
    assert "Welcome" in r.text and "campusvpn-device" in c.cookies
    c.post("/signout", data={"csrf": csrf(r.text)})
    home = sign_in(c)
    assert "Code skipped: this device is trusted" in home  # never silent
    devices = c.get("/devices").text
    device_id = re.search(r'name="device" value="([0-9a-f]+)"', devices)
    assert device_id
    # Last used (just now, by the sign-in above) and expiry (30 days on) are shown in local time, not left empty.
    zone = pctx.policy.zone
    used, expires = clock.now().astimezone(zone), clock.now().astimezone(zone) + timedelta(days=30)
    assert used.strftime("%Y-%m-%d %H:%M JST") in devices and expires.strftime("%Y-%m-%d") in devices
    r = c.post("/devices", data={"csrf": csrf(devices), "device": device_id.group(1)})
    assert 'id="confirm"' in r.text  # asked first
    assert "revoked" not in r.text and len(trusted.list_devices(pctx, USER)) == 1
    r = c.post("/devices", data={"csrf": csrf(r.text), "device": device_id.group(1), "confirmed": "1"})
    assert "revoked" in r.text
    c.post("/signout", data={"csrf": csrf(r.text)})
    assert "authenticator app" in sign_in(c)


def _ready(ctx: Context, clock: FixedClock) -> tuple[TestClient, str]:
    mfa.apply(ctx, USER, actor="test")
    c = client(ctx)
    sign_in(c)
    secret, _ = register_totp(c, ctx, clock)
    return c, secret


def test_add_and_delete_a_phone_with_an_sms_code_needs_fresh_factor_and_sends_notices(
    pctx: Context, clock: FixedClock
) -> None:
    c, secret = _ready(pctx, clock)
    page = c.get("/mfa/phone").text
    r = c.post(
        "/mfa/phone",
        data={"csrf": csrf(page), "kind": "mobile", "number": "090-1234-5678", "channel": "sms", "action": "send"},
    )
    assert "Enter it below" in r.text or "We sent a code" in r.text
    sms = [m for m in read_outbox(pctx.config.path(pctx.config.sender.outbox)) if m["channel"] == "sms"][-1]
    code = re.search(r"\b(\d{6})\b", sms["text"])
    assert code
    method = re.search(r'name="method" value="([0-9a-f]+)"', r.text)
    assert method
    fields = {
        "csrf": csrf(r.text),
        "kind": "mobile",
        "number": "090-1234-5678",
        "channel": "sms",
        "method": method.group(1),
        "code": code.group(1),
        "action": "confirm",
    }
    r = c.post("/mfa/phone", data=fields)
    assert "Mobile phone" in r.text and "changed" in r.text
    mails = [m for m in read_outbox(pctx.config.path(pctx.config.sender.outbox)) if m["channel"] == "email"]
    assert any("A verification method was added: Mobile phone" in m["text"] for m in mails)
    # Past the step-up window a change asks for a code first.
    clock.advance(timedelta(minutes=30))
    sec = c.get("/security").text
    phone_id = re.search(r'data-kind="phone">.*?name="method" value="([0-9a-f]+)"', sec, re.S)
    assert phone_id
    r = c.post("/security", data={"csrf": csrf(sec), "method": phone_id.group(1), "action": "delete"})
    assert "Changes to your security info need a code" in r.text
    r = c.post(str(r.url), data={"csrf": csrf(r.text), "code": totp_now(pctx, secret, clock)})
    # Back from the step-up, the delete asked for is still there, waiting for its confirmation.
    assert "Delete “Mobile phone" in r.text and 'name="confirmed" value="1"' in r.text
    assert f'name="method" value="{phone_id.group(1)}"' in r.text
    assert "Mobile phone" in str(mfa.show(pctx, USER)["methods"])  # nothing done on a GET
    r = c.post(
        "/security",
        data={"csrf": csrf(r.text), "method": phone_id.group(1), "action": "delete", "confirmed": "1"},
    )
    assert "Mobile phone" not in r.text
    mails = [m for m in read_outbox(pctx.config.path(pctx.config.sender.outbox)) if m["channel"] == "email"]
    assert any("deleted" in m["text"] for m in mails)
    # Deleting the last method signs the user out, and the sign-in page says why.
    app_id = re.search(r'data-kind="totp">.*?name="method" value="([0-9a-f]+)"', r.text, re.S)
    assert app_id
    r = c.post("/security", data={"csrf": csrf(r.text), "method": app_id.group(1), "action": "delete"})
    assert "This is your last method" in r.text  # the confirmation says what deleting the last one means
    r = c.post(
        "/security", data={"csrf": csrf(r.text), "method": app_id.group(1), "action": "delete", "confirmed": "1"}
    )
    assert "You deleted your last verification method, so you were signed out." in r.text


def test_post_without_csrf_is_refused_and_changes_nothing(pctx: Context, clock: FixedClock) -> None:
    c = client(pctx)
    sign_in(c)
    r = c.post("/apply", data={})
    assert r.status_code == 403 and "did not come from this site" in r.text
    r = c.post("/apply", data={"csrf": "forged"})
    assert r.status_code == 403
    assert mfa.show(pctx, USER)["applied_at"] is None


def test_session_id_changes_at_sign_in_and_signout_ends_it(pctx: Context) -> None:
    c = client(pctx)
    c.get("/signin")
    before = c.cookies.get("campusvpn-portal")
    sign_in(c)
    after = c.cookies.get("campusvpn-portal")
    assert before and after and before != after
    planted = TestClient(create_app(pctx), base_url="https://testserver")
    planted.cookies.set("campusvpn-portal", before)
    assert "Sign in" in planted.get("/", follow_redirects=True).text  # the old id is worth nothing
    c.post("/signout", data={"csrf": csrf(c.get("/").text)})
    assert c.get("/vpn", follow_redirects=False).status_code == 303


def test_security_headers_and_no_open_redirect(pctx: Context) -> None:
    c = client(pctx)
    r = c.get("/signin")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
    page = c.get("/signin?next=//evil.example/").text
    r = c.post(
        "/signin?next=//evil.example/",
        data={"csrf": csrf(page), "username": USER, "password": PASSWORD},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_japanese_by_browser_preference_and_choice(pctx: Context) -> None:
    c = client(pctx)
    r = c.get("/signin", headers={"Accept-Language": "ja,en;q=0.8"})
    assert "ユーザー名" in r.text and '<html lang="ja">' in r.text
    r = c.get("/signin?lang=en", headers={"Accept-Language": "ja"})
    assert "User name" in r.text
    assert "User name" in c.get("/signin", headers={"Accept-Language": "ja"}).text  # the choice sticks


def test_every_message_has_both_languages() -> None:
    for key, (en, ja) in i18n.MESSAGES.items():
        assert en.strip() and ja.strip(), key
        assert set(re.findall(r"{(\w+)}", en)) == set(re.findall(r"{(\w+)}", ja)), key


def test_wrong_password_is_generic_and_unknown_page_is_friendly(pctx: Context) -> None:
    c = client(pctx)
    text = sign_in(c, password="wrong password here")
    assert "The user name or password is incorrect." in text
    assert f'name="username" autocomplete="username" required value="{USER}"' in text  # kept to try again
    assert "wrong password here" not in text  # the password never comes back
    r = c.get("/no/such/page")
    assert r.status_code == 404 and "There is no such page" in r.text and "Traceback" not in r.text
    ja = c.get("/no/such/page?lang=ja")
    assert ja.status_code == 404 and '<html lang="ja">' in ja.text and "There is no such page" not in ja.text


def test_full_width_name_with_domain_signs_in(pctx: Context) -> None:
    c = client(pctx)
    assert "Welcome" in sign_in(c, "１２３４ ５６７８９０@example.ac.jp")


def test_admin_console_reset_mfa_with_reason_and_kill_session(pctx: Context, clock: FixedClock) -> None:
    add_user(pctx, ADMIN)
    mfa.apply(pctx, USER, actor="test")
    c = client(pctx)
    sign_in(c)
    register_totp(c, pctx, clock)
    assert c.get("/admin").status_code == 403  # a member is kept out of the console
    clock.advance(timedelta(minutes=20))
    with pctx.tx() as s:
        sessions.open_session(
            pctx, s, pctx.user(s, USER), profile=None, pool="172.31.0.0/16", source="192.0.2.7", client="test"
        )
    mfa.apply(pctx, ADMIN, actor="test")
    a = client(pctx)
    sign_in(a, ADMIN)
    _, _ = register_totp(a, pctx, clock)
    r = a.get("/admin?q=1234567890")
    assert f"/admin/users/{USER}" in r.text
    page = a.get(f"/admin/users/{USER}").text
    assert "192.0.2.7" in page
    sid = re.search(r'name="session" value="([0-9a-f]+)"', page)
    assert sid
    kill = {"csrf": csrf(page), "action": "kill", "session": sid.group(1)}
    r = a.post(f"/admin/users/{USER}", data=kill)  # no reason: nothing happens
    assert (
        r.status_code == 400 and "Give a reason for “End session”" in r.text and sessions.listing(pctx, username=USER)
    )
    kill["reason"] = "suspicious traffic, ticket 4711"
    r = a.post(f"/admin/users/{USER}", data=kill)  # asked first, with the reason repeated
    assert 'id="confirm"' in r.text and "Reason: suspicious traffic, ticket 4711" in r.text
    assert sessions.listing(pctx, username=USER)
    r = a.post(f"/admin/users/{USER}", data={**kill, "csrf": csrf(r.text), "confirmed": "1"})
    assert "Done" in r.text and not sessions.listing(pctx, username=USER)
    ended = [e for e in audit.listing(pctx) if e["event"] == "vpn.session.ended"]
    assert ended[-1]["actor"] == ADMIN and ended[-1]["note"].endswith(": suspicious traffic, ticket 4711")
    # What the gateway holding the tunnel tells its client (both languages: the user never chose one).
    (told,) = live_sessions.ended_since(pctx, clock.now(), frozenset({sid.group(1)}))
    assert told.session_id == sid.group(1) and "ended by an administrator: suspicious traffic, ticket 4711" in told.told
    assert "管理者" in told.told and told.reason.endswith("suspicious traffic, ticket 4711")
    r = a.post(f"/admin/users/{USER}", data={"csrf": csrf(r.text), "action": "reset_mfa", "reason": ""})
    assert r.status_code == 400 and "Give a reason for “Reset MFA”" in r.text and "--reason" not in r.text
    fields = {"csrf": csrf(r.text), "action": "reset_mfa", "reason": "lost phone, ID checked at desk"}
    r = a.post(f"/admin/users/{USER}", data=fields)  # asked first, with the reason repeated
    assert 'id="confirm"' in r.text and "Reason: lost phone, ID checked at desk" in r.text
    assert mfa.show(pctx, USER)["state"] == "active"
    r = a.post(f"/admin/users/{USER}", data={**fields, "csrf": csrf(r.text), "confirmed": "1"})
    assert 'data-event="mfa.reset"' in r.text and "MFA reset" in r.text and "lost phone, ID checked at desk" in r.text
    assert mfa.show(pctx, USER)["state"] == "registration_required"
    # The member's portal sign-in ended with the reset.
    assert c.get("/vpn", follow_redirects=False).status_code == 303


def test_recovery_pass_lets_a_user_with_nothing_left_register_again(pctx: Context, clock: FixedClock) -> None:
    from campusvpn.service import recovery_pass

    c, _ = _ready(pctx, clock)
    c.post("/signout", data={"csrf": csrf(c.get("/").text)})
    code, _ = recovery_pass.issue(pctx, USER, actor=ADMIN, reason="passport checked")
    sign_in(c)
    page = c.get("/signin/pass").text
    assert "help desk" in page
    r = c.post("/signin/pass", data={"csrf": csrf(page), "pass": code})
    assert "Register a verification method" in r.text
    assert mfa.show(pctx, USER)["methods"] == []
    page = c.get("/signin/pass").text  # a pass works once


def test_api_token_openapi_and_actions(pctx: Context, clock: FixedClock) -> None:
    from campusvpn.service import api_tokens

    add_user(pctx, ADMIN)
    c = client(pctx)
    doc = c.get("/api/openapi.json").json()
    assert "/users/{username}/mfa/reset" in doc["paths"]
    assert c.get("/api/users?q=1").status_code == 401
    token = api_tokens.create(pctx, ADMIN, "nightly roster sync")
    h = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/users", params={"q": USER}, headers=h).json()[0]["username"] == USER
    r = c.post(
        "/api/roster",
        headers=h,
        json={"csv": "username,name,role,email,from,until\n1111111111,A,student,,2026-04-01,\nbad,B,student,,,\n"},
    )
    assert r.status_code == 200 and r.json()["applied"] == 1 and r.json()["errors"][0]["line"] == 3
    r = c.post(f"/api/users/{USER}/status", headers=h, json={"status": "suspended", "reason": ""})
    assert r.status_code == 422
    r = c.post(f"/api/users/{USER}/status", headers=h, json={"status": "suspended", "reason": "left the lab"})
    assert r.status_code == 200
    assert c.get("/api/users/0000000000", headers=h).status_code == 404
    assert c.get("/api/users/not-a-name", headers=h).status_code == 404
    with pctx.tx() as s:
        live = sessions.open_session(
            pctx, s, pctx.user(s, "1111111111"), profile=None, pool="172.31.0.0/16", source="192.0.2.8", client="t"
        ).session.public_id
    assert c.delete(f"/api/sessions/{live}", headers=h).status_code == 422  # a reason is required
    r = c.delete(f"/api/sessions/{live}", headers=h, params={"reason": "abuse report 12"})
    assert r.status_code == 200 and not sessions.listing(pctx, username="1111111111")
    assert audit.listing(pctx)[-1]["note"].endswith(": abuse report 12")  # the message in English
    api_tokens.revoke(pctx, api_tokens.listing(pctx)[0]["id"], actor=ADMIN)
    assert c.get("/api/users", headers=h).status_code == 401


def test_connect_page_has_profile_command_and_pin(pctx: Context) -> None:
    c = client(pctx)
    sign_in(c)
    page = c.get("/connect").text
    assert "openconnect" in page and f"--user={USER}" in page
    xml = c.get("/connect/profile.xml")
    assert xml.headers["content-type"].startswith("application/xml")
    assert b"<HostAddress>" in xml.content


def test_a_form_sent_after_the_sign_in_expired_says_so(pctx: Context, clock: FixedClock) -> None:
    c = client(pctx)
    home = sign_in(c)
    clock.advance(timedelta(minutes=31))  # past the portal's 30-minute idle timeout
    r = c.post("/signout", data={"csrf": csrf(home)})
    assert r.status_code == 401 and "Your sign-in expired. Please sign in again." in r.text
    assert "did not come from this site" not in r.text


def test_the_language_switch_keeps_where_the_user_was_going(pctx: Context) -> None:
    c = client(pctx)
    page = c.get("/signin?next=/devices&lang=en").text
    link = re.search(r'<a class="lang" href="([^"]+)"', page)
    assert link and link.group(1).replace("&amp;", "&") == "?next=%2Fdevices&lang=ja"
