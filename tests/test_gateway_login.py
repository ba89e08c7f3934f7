"""The AnyConnect sign-in dialogue over the sign-in engine, driven with XML documents only."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from defusedxml import ElementTree as SafeET
from tests.conftest import PASSWORD, add_user, make_config
from tests.helpers import enrol_totp, sent_code

from campusvpn.anyconnect import xmlauth
from campusvpn.anyconnect.login import GatewayLogin
from campusvpn.platform.clock import FixedClock
from campusvpn.service import accounts, mfa, phones, self_service, sessions
from campusvpn.service.context import Context, open_context
from campusvpn.service.sender import read_outbox

PROFILES = """
[[vpn.profiles]]
name = "staff"
label = "Staff members"
roles = ["staff", "faculty"]

[[vpn.profiles]]
name = "students"
label = "Students"
settings = { pool = "172.30.0.0/16", full_tunnel = true }
"""


def init(group: str | None = None) -> xmlauth.AuthRequest:
    return xmlauth.AuthRequest(kind="init", group_select=group)


def reply(handle: str, group: str | None = None, **fields: str) -> xmlauth.AuthRequest:
    return xmlauth.AuthRequest(kind="auth-reply", handle=handle, fields=fields, group_select=group)


def doc(body: bytes) -> SafeET.Element:  # type: ignore[name-defined]
    return SafeET.fromstring(body)


def inputs(body: bytes) -> list[str]:
    return [i.get("name") for i in doc(body).findall("auth/form/input")]


def error(body: bytes) -> str | None:
    e = doc(body).find("auth/error")
    return None if e is None else e.get("param1")


def new_login(ctx: Context) -> GatewayLogin:
    return GatewayLogin(ctx, source="192.0.2.7", user_agent="Open AnyConnect VPN Agent v9.01-3", cert_sha1="AB")


def test_full_dialogue_opens_a_session(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    lg = new_login(ctx)
    first = lg.handle_request(init())
    assert inputs(first.body) == ["username", "password"]
    assert doc(first.body).find("auth/form/select") is None  # one profile: no group list
    code_form = lg.handle_request(reply(lg.handle, username="１２３４５６７８９０", password=PASSWORD))
    assert inputs(code_form.body) == ["secondary_password"]
    done = lg.handle_request(reply(lg.handle, secondary_password=pyotp.TOTP(secret).at(clock.now())))
    assert done.finished and done.token
    d = doc(done.body)
    assert d.get("type") == "complete" and d.find("session-token").text == done.token
    [live] = sessions.listing(ctx)
    assert live["user"] == "1234567890" and live["source"] == "192.0.2.7"


def test_wrong_password_gives_the_form_again_with_the_error(ctx: Context) -> None:
    add_user(ctx)
    lg = new_login(ctx)
    lg.handle_request(init())
    again = lg.handle_request(reply(lg.handle, username="1234567890", password="nope"))
    assert not again.finished
    assert inputs(again.body) == ["username", "password"]
    # Nobody is named by a wrong password, so the client's box says it in both languages (default first).
    assert (
        error(again.body) == "ユーザー名またはパスワードが正しくありません。 / The user name or password is incorrect."
    )


def test_a_refusal_ends_the_dialogue_with_every_reason(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx, trained_on=None)
    secret, _ = enrol_totp(ctx, clock)
    lg = new_login(ctx)
    lg.handle_request(init())
    lg.handle_request(reply(lg.handle, username="1234567890", password=PASSWORD))
    out = lg.handle_request(reply(lg.handle, secondary_password=pyotp.TOTP(secret).at(clock.now())))
    assert out.finished and out.token is None
    assert inputs(out.body) == []
    assert "information-security training" in (error(out.body) or "")
    assert sessions.listing(ctx) == []


def test_sms_keyword_sends_a_code_and_trust_keyword_issues_a_device_token(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    clock.advance(ctx.config.mfa.activation_delay)
    lg = new_login(ctx)
    lg.handle_request(init())
    form = lg.handle_request(reply(lg.handle, username="1234567890", password=PASSWORD))
    assert "Type sms or call" in (doc(form.body).find("auth/message").text or "")
    sent = lg.handle_request(reply(lg.handle, secondary_password="SMS"))
    assert "sent a code by text message" in (doc(sent.body).find("auth/message").text or "")
    code = sent_code(read_outbox(ctx.config.path(ctx.config.sender.outbox))[-1]["text"])
    done = lg.handle_request(reply(lg.handle, secondary_password=f"{code} trust"))
    assert done.token and done.device_token
    banner = doc(done.body).find("auth/banner").text or ""  # Cisco clients show it after sign-in
    assert f"/d/{done.device_token}" in banner
    assert done.notice == banner  # and the gateway adds it to the connect banner, which openconnect prints

    # Next time, from the trusted device, the password is enough.
    lg2 = GatewayLogin(ctx, source="192.0.2.7", user_agent="x", cert_sha1="AB", device_token=done.device_token)
    lg2.handle_request(init())
    skipped = lg2.handle_request(reply(lg2.handle, username="1234567890", password=PASSWORD))
    assert skipped.finished and skipped.token
    assert "Code skipped" in (doc(skipped.body).find("auth/message").text or "")


def test_profiles_give_a_group_list_and_their_own_pool(tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_context(make_config(tmp_path, PROFILES), clock)
    add_user(ctx, role="student")
    secret, _ = enrol_totp(ctx, clock)
    lg = new_login(ctx)
    first = lg.handle_request(init())
    options = [(o.get("value"), o.text) for o in doc(first.body).findall("auth/form/select/option")]
    assert options == [("staff", "Staff members"), ("students", "Students")]
    lg.handle_request(init(group="Students"))  # a label works as well as a value
    lg.handle_request(reply(lg.handle, group="students", username="1234567890", password=PASSWORD))
    done = lg.handle_request(reply(lg.handle, secondary_password=pyotp.TOTP(secret).at(clock.now())))
    assert done.token
    [live] = sessions.listing(ctx)
    assert live["profile"] == "students" and str(live["address"]).startswith("172.30.")
    assert lg.settings.full_tunnel


def test_the_per_user_session_limit_is_told_at_sign_in(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    _, codes = enrol_totp(ctx, clock)
    for i in range(ctx.config.gateway.max_sessions_per_user + 1):
        lg = new_login(ctx)
        lg.handle_request(init())
        lg.handle_request(reply(lg.handle, username="1234567890", password=PASSWORD))
        out = lg.handle_request(reply(lg.handle, secondary_password=codes[i]))
    assert out.token is None
    assert "already have 3 VPN sessions open" in (error(out.body) or "")


@pytest.mark.parametrize("status", ["suspend", "revoke"])
def test_suspended_or_revoked_accounts_get_their_reason(ctx: Context, clock: FixedClock, status: str) -> None:
    add_user(ctx)
    _, codes = enrol_totp(ctx, clock)
    st = accounts.AccountStatus.SUSPENDED if status == "suspend" else accounts.AccountStatus.REVOKED
    accounts.set_status(ctx, "1234567890", st, actor="a", reason="unpaid fees" if status == "suspend" else None)
    lg = new_login(ctx)
    lg.handle_request(init())
    lg.handle_request(reply(lg.handle, username="1234567890", password=PASSWORD))
    out = lg.handle_request(reply(lg.handle, secondary_password=codes[0]))
    msg = error(out.body) or ""
    assert ("unpaid fees" in msg) if status == "suspend" else ("closed" in msg)


def test_a_group_not_for_the_users_role_is_refused_with_the_choices(tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_context(make_config(tmp_path, PROFILES), clock)
    add_user(ctx, role="student")
    self_service.set_language(ctx, "1234567890", "en")  # the client's box follows the stored language
    secret, _ = enrol_totp(ctx, clock)
    lg = new_login(ctx)
    lg.handle_request(init(group="staff"))
    lg.handle_request(reply(lg.handle, group="staff", username="1234567890", password=PASSWORD))
    out = lg.handle_request(reply(lg.handle, secondary_password=pyotp.TOTP(secret).at(clock.now())))
    assert out.token is None
    assert error(out.body) == "The group 'staff' is not for your role (student). Choose students."
