""" "Sign in another way" on the code page (HTTP through the ASGI app): the account's registered ways
listed from the service, each choosable without JavaScript; a phone is sent its code through the same
path as the code page's buttons; made-up ways and another user's methods are refused."""

from __future__ import annotations

import re
from datetime import timedelta

from starlette.testclient import TestClient
from tests.conftest import add_user
from tests.helpers import sent_code
from tests.test_portal import USER, client, csrf, pctx, register_totp, sign_in, totp_now

from campusvpn.platform.clock import FixedClock
from campusvpn.service import audit, mfa, phones
from campusvpn.service.context import Context
from campusvpn.service.sender import read_outbox
from campusvpn.store.models import Passkey

__all__ = ["pctx"]
OTHER = "1234567891"


def _outbox(ctx: Context, channel: str) -> list[dict[str, str]]:
    return [m for m in read_outbox(ctx.config.path(ctx.config.sender.outbox)) if m["channel"] == channel]


def _code_in(message: dict[str, str]) -> str:
    """The code in a text or a call's script (a call spells it digit by digit)."""
    return sent_code(re.sub(r"(?<=\d) (?=\d)", "", message["text"]))


def _add_phone(ctx: Context, username: str, kind: str, number: str, channel: str) -> str:
    method = phones.begin_phone(ctx, username, kind, number, None, channel, actor=username)
    phones.confirm_phone(ctx, username, method, _code_in(_outbox(ctx, channel)[-1]), actor=username)
    return method


def _member(ctx: Context, clock: FixedClock) -> tuple[str, list[str], str, str]:
    """A member with an authenticator (the default), a mobile phone, an office phone, recovery codes
    and a passkey, signed out; their TOTP secret, codes and the two phones' ids."""
    mfa.apply(ctx, USER, actor="test")
    c = client(ctx)
    sign_in(c)
    secret, codes = register_totp(c, ctx, clock)
    mobile = _add_phone(ctx, USER, "mobile", "090-1234-5678", "sms")
    office = _add_phone(ctx, USER, "office", "03-5555-0142", "voice")
    with ctx.tx() as s:
        s.add(
            Passkey(
                public_id="k" * 32,
                user_id=ctx.user(s, USER).id,
                credential_id=b"cred",
                public_key=b"key",
                label="Laptop",
                created_at=clock.now(),
            )
        )
    return secret, codes, mobile, office


def _at_code_page(ctx: Context) -> tuple[TestClient, str]:
    c = client(ctx)
    page = sign_in(c)
    assert 'id="signing-in-as"' in page and f"Signing in as {USER}." in page
    assert 'href="/signin/code/other"' in page and "Sign in another way" in page
    return c, page


def _choose(c: TestClient, way: str) -> str:
    page = c.get("/signin/code/other").text
    r = c.post("/signin/code/other", data={"csrf": csrf(page), "way": way})
    return r.text


def test_the_list_names_every_registered_way(pctx: Context, clock: FixedClock) -> None:
    _, _, mobile, office = _member(pctx, clock)
    c, _ = _at_code_page(pctx)
    page = c.get("/signin/code/other").text
    buttons = re.findall(r'<button type="submit" name="way" value="([^"]+)"[^>]*>([^<]*)</button>', page)
    totp = next(m["id"] for m in mfa.show(pctx, USER)["methods"] if m["kind"] == "totp")  # type: ignore[attr-defined]
    assert buttons == [
        (f"totp:{totp}", "Use a code from my authenticator app"),
        (f"sms:{mobile}", "Text a code to my mobile phone ending in 78"),
        (f"voice:{mobile}", "Call my mobile phone ending in 78"),
        (f"voice:{office}", "Call my office phone ending in 42"),
        ("recovery", "Use a recovery code"),
        ("passkey", "Use a passkey"),
    ]
    assert f"Signing in as {USER}." in page
    ja = c.get("/signin/code/other?lang=ja").text
    assert "末尾が 78 の携帯電話に SMS でコードを送る" in ja and "末尾が 42 の勤務先電話に電話をかける" in ja


def test_choosing_the_authenticator_asks_its_code_and_signs_in(pctx: Context, clock: FixedClock) -> None:
    secret, _, _, _ = _member(pctx, clock)
    c, _ = _at_code_page(pctx)
    totp = next(m["id"] for m in mfa.show(pctx, USER)["methods"] if m["kind"] == "totp")  # type: ignore[attr-defined]
    page = _choose(c, f"totp:{totp}")
    assert 'id="way" data-kind="totp"' in page and f'name="way" value="totp:{totp}"' in page
    r = c.post("/signin/code", data={"csrf": csrf(page), "way": f"totp:{totp}", "code": "000000"})
    assert "That code is not right" in r.text and f'name="way" value="totp:{totp}"' in r.text  # same way
    clock.advance(timedelta(seconds=30))
    r = c.post(
        "/signin/code", data={"csrf": csrf(r.text), "way": f"totp:{totp}", "code": totp_now(pctx, secret, clock)}
    )
    assert str(r.url).endswith("/") and "Sign out" in r.text


def test_choosing_a_text_message_sends_the_code_and_it_signs_in(pctx: Context, clock: FixedClock) -> None:
    _, _, mobile, _ = _member(pctx, clock)
    c, _ = _at_code_page(pctx)
    before = len(_outbox(pctx, "sms"))
    page = _choose(c, f"sms:{mobile}")
    assert "We sent a code by text message to your mobile phone ending in 78." in page
    assert 'id="way" data-kind="sms"' in page and "Send a new code" in page
    sent = _outbox(pctx, "sms")
    assert len(sent) == before + 1
    assert [e for e in audit.listing(pctx) if e["event"] == "mfa.code_sent"][-1]["detail"]["channel"] == "sms"
    r = c.post("/signin/code", data={"csrf": csrf(page), "way": f"sms:{mobile}", "code": _code_in(sent[-1])})
    assert str(r.url).endswith("/") and "Sign out" in r.text


def test_choosing_a_call_to_the_office_phone_calls_it(pctx: Context, clock: FixedClock) -> None:
    _, _, _, office = _member(pctx, clock)
    c, _ = _at_code_page(pctx)
    page = _choose(c, f"voice:{office}")
    assert "We are calling your office phone ending in 42 to read you a code." in page
    call = _outbox(pctx, "voice")[-1]
    assert call["to"].endswith("42")
    ja = c.post("/signin/code/other?lang=ja", data={"csrf": csrf(page), "way": f"voice:{office}"}).text
    assert "末尾が 42 の勤務先電話に電話をかけ、コードをお伝えします。" in ja
    call = _outbox(pctx, "voice")[-1]  # the newer code replaces the first
    r = c.post("/signin/code?lang=en", data={"csrf": csrf(ja), "way": f"voice:{office}", "code": _code_in(call)})
    assert str(r.url).endswith("/") and "Sign out" in r.text


def test_sending_again_and_again_meets_the_send_throttling(pctx: Context, clock: FixedClock) -> None:
    _, _, mobile, _ = _member(pctx, clock)
    c, _ = _at_code_page(pctx)
    texts = [_choose(c, f"sms:{mobile}") for _ in range(12)]
    assert "We sent a code" in texts[0]
    assert "too many codes" in texts[-1].lower() and "We sent a code" not in texts[-1]


def test_choosing_a_recovery_code_asks_for_one(pctx: Context, clock: FixedClock) -> None:
    _, codes, _, _ = _member(pctx, clock)
    c, _ = _at_code_page(pctx)
    page = _choose(c, "recovery")
    assert 'id="way" data-kind="recovery"' in page and "Enter one of your recovery codes" in page
    assert 'inputmode="numeric"' not in page  # recovery codes have letters
    r = c.post("/signin/code", data={"csrf": csrf(page), "way": "recovery", "code": codes[0]})
    assert str(r.url).endswith("/") and "You used a recovery code" in r.text


def test_choosing_a_passkey_offers_the_passkey_button(pctx: Context, clock: FixedClock) -> None:
    _member(pctx, clock)
    c, _ = _at_code_page(pctx)
    page = _choose(c, "passkey")
    assert 'data-passkey="signin"' in page and 'id="way" data-kind="passkey"' in page
    assert "<noscript>" in page and "A passkey needs JavaScript" in page


def test_made_up_ways_and_another_users_methods_are_refused(pctx: Context, clock: FixedClock) -> None:
    _member(pctx, clock)
    add_user(pctx, OTHER)
    mfa.apply(pctx, OTHER, actor="test")
    theirs = _add_phone_for_other(pctx)
    c, _ = _at_code_page(pctx)
    sent = len(_outbox(pctx, "sms"))
    for way in (f"sms:{theirs}", "sms:ffffffffffffffff", "carrier-pigeon", "passkey:x", "recovery:1"):
        page = c.get("/signin/code/other").text
        r = c.post("/signin/code/other", data={"csrf": csrf(page), "way": way})
        assert r.status_code == 400 and "That way of signing in is not available" in r.text, way
        assert 'id="other-ways"' in r.text  # the list again, to choose from
    # The code form refuses them too (a forged hidden field), and nothing was sent anywhere.
    page = c.get("/signin/code").text
    r = c.post("/signin/code", data={"csrf": csrf(page), "way": f"sms:{theirs}", "code": "123456"})
    assert r.status_code == 400 and "That way of signing in is not available" in r.text
    assert len(_outbox(pctx, "sms")) == sent


def test_the_list_needs_a_sign_in_in_progress(pctx: Context) -> None:
    c = client(pctx)
    r = c.get("/signin/code/other", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"


def _add_phone_for_other(ctx: Context) -> str:
    return _add_phone(ctx, OTHER, "mobile", "080-9999-0001", "sms")
