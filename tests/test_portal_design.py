"""The portal's design system through the ASGI app: the university's identity from the config,
states that read right (waiting is a notice, not a refusal), links and copy buttons."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conftest import make_config
from tests.test_portal import USER, client, csrf, pctx, register_totp, sign_in

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import ConfigError
from campusvpn.service.context import Context, open_context

__all__ = ["pctx"]  # the fixture, shared with test_portal

IDENTITY = """[portal]
default_language = "en"
university = "Example University"
brand_colour = "#5a1f3c"
accent_colour = "#14532d"
helpdesk_contact = "ext. 1234 · help@example.ac.jp"
privacy_url = "https://www.example.ac.jp/privacy"
help_url = "https://www.example.ac.jp/vpn-help"
"""


def test_the_university_identity_comes_from_the_config(tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_context(make_config(tmp_path, IDENTITY), clock)
    c = client(ctx)
    css = c.get("/brand.css")
    assert css.headers["content-type"].startswith("text/css")
    assert "--brand: #5a1f3c" in css.text and "--accent: #14532d" in css.text
    page = c.get("/signin").text
    assert '<span class="university">Example University</span>' in page
    assert "ext. 1234 · help@example.ac.jp" in page
    assert 'href="https://www.example.ac.jp/privacy"' in page and 'href="https://www.example.ac.jp/vpn-help"' in page
    ja = c.get("/signin?lang=ja").text
    assert "個人情報の取り扱い" in ja and "IT ヘルプデスク" in ja and "the IT help desk" not in ja


@pytest.mark.parametrize(
    "line",
    ['brand_colour = "red; } body { display: none"', 'accent_colour = "#12345"', 'privacy_url = "javascript:alert(1)"'],
)
def test_identity_values_that_could_break_the_page_are_config_errors(
    tmp_path: Path, clock: FixedClock, line: str
) -> None:
    with pytest.raises(ConfigError):
        make_config(tmp_path, f"[portal]\n{line}\n")


def test_waiting_for_mfa_activation_is_a_notice_with_its_time_once(pctx: Context, clock: FixedClock) -> None:
    c = client(pctx)
    home = sign_in(c)
    # Before applying: a refusal, and the portal address in it is a link.
    assert 'data-state="refused"' in home
    assert re.search(r'<a href="https://[^"]+">https://', home)
    page = c.get("/apply").text
    c.post("/apply", data={"csrf": csrf(page)})
    sign_in(c)
    register_totp(c, pctx, clock)
    status = c.get("/vpn").text
    box = re.search(r'<div class="(\w+)" id="vpn-decision" data-state="(\w+)">(.*?)</div>', status, re.S)
    assert box and box.group(1) == "info" and box.group(2) == "waiting", status
    assert box.group(3).count("09:40") == 1, box.group(3)
    clock.advance(timedelta(minutes=20))
    c.get("/vpn")  # keeps the portal session (30 min idle) alive
    clock.advance(timedelta(minutes=21))
    allowed = c.get("/vpn").text
    assert 'data-state="allowed"' in allowed and 'href="/connect"' in allowed


def test_keys_and_commands_have_copy_buttons_and_tables_scroll_in_their_box(pctx: Context, clock: FixedClock) -> None:
    c = client(pctx)
    sign_in(c)
    connect = c.get("/connect").text
    for target in ("server-url", "openconnect-command", "fortinet-command"):  # no certificate here: no pin
        assert f'data-copy="{target}"' in connect, target
    assert "`" not in connect  # no Markdown backticks shown as such
    page = c.get("/apply").text
    c.post("/apply", data={"csrf": csrf(page)})
    sign_in(c)
    register_totp(c, pctx, clock)
    security = c.get("/security").text
    assert '<div class="table-wrap"><table id="methods" class="stack">' in security


def test_the_greeting_uses_the_name(pctx: Context) -> None:
    with pctx.tx() as s:
        pctx.user(s, USER).display_name = "Yamada Taro"
    assert "Welcome, Yamada Taro" in sign_in(client(pctx))


def test_a_new_recovery_code_set_is_confirmed_first(pctx: Context, clock: FixedClock) -> None:
    c = client(pctx)
    sign_in(c)
    page = c.get("/apply").text
    c.post("/apply", data={"csrf": csrf(page)})
    sign_in(c)
    _, codes = register_totp(c, pctx, clock)
    sec = c.get("/security").text
    r = c.post("/security", data={"csrf": csrf(sec), "action": "codes"})
    assert "Your 10 remaining codes stop working at once" in r.text and 'id="recovery-codes"' not in r.text
    assert "10 of 10" in c.get("/security").text  # nothing changed yet: the old codes still work
    ja = c.post("/security?lang=ja", data={"csrf": csrf(sec), "action": "codes"}).text
    assert "残っている 10 個のコード" in ja
    r = c.post("/security", data={"csrf": csrf(r.text), "action": "codes", "confirmed": "1"})
    new = re.findall(r"<li><code>([A-Z2-7-]{19})</code></li>", r.text)
    assert len(new) == 10 and not set(new) & set(codes)


def test_sign_out_works_from_the_recovery_codes_page_after_registration(pctx: Context, clock: FixedClock) -> None:
    """The codes page answers the sign-in that rotates the session: its forms carry the new token."""
    c = client(pctx)
    sign_in(c)
    page = c.get("/apply").text
    c.post("/apply", data={"csrf": csrf(page)})
    sign_in(c)
    page = c.get("/mfa/totp").text
    secret = re.search(r'data-value="([A-Z2-7]+)"', page)
    assert secret
    from tests.test_portal import totp_now

    r = c.post("/mfa/totp", data={"csrf": csrf(page), "code": totp_now(pctx, secret.group(1), clock)})
    assert 'id="recovery-codes"' in r.text
    out = c.post("/signout", data={"csrf": csrf(r.text)})
    assert out.status_code == 200 and "You signed out" in out.text
