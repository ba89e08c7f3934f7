"""What the engine, the policy and the service say: codes from one registry (texts.codes.Code), each in
the catalogue in both languages, rendered by one renderer; the VPN client's box and the portal say
the same thing for the same refusal."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyotp
from tests.conftest import PASSWORD, add_user
from tests.test_gateway_login import error, init, new_login, reply
from tests.test_portal import client, csrf, sign_in

from campusvpn.platform.clock import FixedClock
from campusvpn.portal.i18n import Translator
from campusvpn.service import authenticator, mfa, self_service
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid
from campusvpn.texts import catalogue
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.texts.render import render, render_both

TOKYO = ZoneInfo("Asia/Tokyo")


def test_every_code_has_its_entry_in_both_languages() -> None:
    """Every code a lower layer can return (the Code registry, so a new one cannot be missed)."""
    entries, plurals = catalogue.entries(), catalogue.plurals()
    missing = [c.value for c in Code if c.value not in entries]
    assert not missing, f"codes without a catalogue entry: {missing}"
    for c in Code:
        en, ja = entries[c.value]
        assert en and ja, f"{c.value}: English {en!r}, Japanese {ja!r}"
        if c.value in plurals:
            one, many, _ = plurals[c.value]
            assert "{n}" in one and "{n}" in many, f"{c.value}: a plural chooses its form by {{n}}"


def test_a_service_error_carries_its_code_and_says_its_english_sentence() -> None:
    err = Invalid(say(Code.ERROR_NAME_LONG, n=230, most=200))
    assert err.said.code is Code.ERROR_NAME_LONG
    assert str(err) == "the name is 230 characters long; at most 200 are kept"
    assert Translator("ja", TOKYO).service_error(err) == "氏名が 230 文字あります。200 文字以内にしてください。"


def test_the_renderer_fills_times_plurals_phrases_and_the_help_desk() -> None:
    at = datetime(2026, 10, 1, 0, 40, tzinfo=UTC)
    pending = say(Code.POLICY_MFA_ACTIVATION_PENDING, at=at, n=1)
    assert render(pending, "en", tz=TOKYO).endswith("from 2026-10-01 09:40 JST (in 1 minute).")
    assert "2026-10-01 09:40 JST（あと 1 分）" in render(pending, "ja", tz=TOKYO)
    assert (
        render(say(Code.ENGINE_THROTTLED_SECONDS, n=3), "en")
        == "Too many failed attempts. Wait 3 seconds and try again."
    )
    # A time kept in the service's zone needs none to be said (the CLI and logs render English so).
    assert "09:40 JST" in render(say(Code.POLICY_MFA_ACTIVATION_PENDING, at=at.astimezone(TOKYO), n=2), "en")
    overlap = say(
        Code.ERROR_AFFILIATION_OVERLAP,
        username="1234567890",
        role="staff",
        start=date(2026, 4, 1),
        until=say(Code.ERROR_AFFILIATION_OPEN),
    )
    assert render(overlap, "en").endswith("from 2026-04-01 with no end overlapping this one")
    assert "終了日なし" in render(overlap, "ja")
    revoked = say(Code.POLICY_ACCOUNT_REVOKED, helpdesk="the IT help desk")
    assert "窓口 に連絡" in render(revoked, "ja", helpdesk=("the desk", "窓口"))
    assert "contact the desk." in render(revoked, "en", helpdesk=("the desk", "窓口"))
    hint = say(Code.USERNAME_INVALID, typed="12", hint=("10 digits", "10 桁の数字"))
    assert "10 桁の数字" in render(hint, "ja") and "10 digits" in render(hint, "en")
    both = render_both(say(Code.ENGINE_BAD_CREDENTIALS), "ja")
    assert both == "ユーザー名またはパスワードが正しくありません。 / The user name or password is incorrect."


def test_a_message_survives_being_kept_as_json() -> None:
    m = say(
        Code.ERROR_AFFILIATION_OVERLAP,
        username="1",
        role="staff",
        start=date(2026, 4, 1),
        until=say(Code.ERROR_AFFILIATION_TO, end=date(2027, 3, 31)),
    )
    timed = say(Code.ENGINE_LOCKED, until=datetime(2026, 10, 1, 9, 30, tzinfo=TOKYO), helpdesk=("a", "b"))
    for original in (m, timed):
        assert Message.from_json(original.to_json()) == original


# --- the same refusal, said by the VPN client's box and by the portal -----------------------------


def _pending_mfa(ctx: Context, clock: FixedClock) -> str:
    """A member who registered an app 10 minutes after applying: the VPN waits 30 minutes more."""
    add_user(ctx)
    self_service.set_language(ctx, "1234567890", "ja")
    mfa.apply(ctx, "1234567890", actor="test")
    e = authenticator.begin_totp(ctx, "1234567890", actor="test")
    authenticator.confirm_totp(ctx, "1234567890", pyotp.TOTP(e.secret).at(clock.now()), actor="test")
    clock.advance(timedelta(minutes=10))
    return e.secret


def test_mfa_pending_is_said_alike_by_the_anyconnect_box_and_the_portal(ctx: Context, clock: FixedClock) -> None:
    secret = _pending_mfa(ctx, clock)
    lg = new_login(ctx)
    lg.handle_request(init())
    lg.handle_request(reply(lg.handle, username="1234567890", password=PASSWORD))
    out = lg.handle_request(reply(lg.handle, secondary_password=pyotp.TOTP(secret).at(clock.now())))
    box = error(out.body) or ""
    # The person chose Japanese: the box says it in Japanese only, with the time in the service's zone.
    assert box == "MFA の申請を有効化中です。2026-10-01 09:40 JST（あと 30 分）から VPN を利用できます。", box

    c = client(ctx)
    clock.advance(timedelta(seconds=30))  # the next TOTP code
    page = sign_in(c)
    assert 'name="code"' in page, page[:500]
    c.post("/signin/code", data={"csrf": csrf(page), "code": pyotp.TOTP(secret).at(clock.now())})
    vpn = html.unescape(c.get("/vpn?lang=ja").text)
    assert box in vpn


def test_throttling_is_said_alike_by_the_anyconnect_box_and_the_portal(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    lg = new_login(ctx)
    lg.handle_request(init())
    box = ""
    for _ in range(10):  # the free failures, then a wait
        out = lg.handle_request(reply(lg.handle, username="1234567890", password="wrong"))
        box = error(out.body) or ""
        if out.finished:
            break
    # A wrong password names nobody: both languages, the configured default (Japanese) first.
    ja, _, en = box.partition(" / ")
    assert "秒待ってから" in ja and en.startswith("Too many failed attempts. Wait"), box

    c = client(ctx)
    c.get("/signin?lang=ja")
    shown = None
    for _ in range(10):
        shown = re.search(r"失敗が続いたため[^<]*", html.unescape(sign_in(c, password="wrong")))
        if shown:
            break
    assert shown and shown.group(0) == ja, (shown, ja)
