"""What leaves the service as SMS, voice calls and e-mails: texts from the catalogue, in the user's
language, each saying who sends it and never asking anyone for the code; a Japanese SMS code fits
one UCS-2 segment (70 characters)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import add_user, make_config

from campusvpn.core.phones import Channel
from campusvpn.platform.clock import FixedClock
from campusvpn.service import notices, phones
from campusvpn.service.context import Context, open_context
from campusvpn.store.models import MailMessage
from campusvpn.texts import outbound

CODE = "123456"


def _ctx(tmp_path: Path, clock: FixedClock, extra: str = "") -> Context:
    return open_context(make_config(tmp_path, extra), clock)


@pytest.mark.parametrize("university", ["", "東北大学", "国立大学法人北海道教育大学"])
def test_a_japanese_sms_code_fits_one_segment_and_names_the_sender(
    tmp_path: Path, clock: FixedClock, university: str
) -> None:
    ctx = _ctx(tmp_path, clock, f'[portal]\nuniversity = "{university}"\n')
    text = phones.code_text(ctx, CODE, Channel.SMS, "ja")
    assert len(text) <= outbound.SMS_UCS2_SEGMENT == 70, (len(text), text)
    assert CODE in text and "Campus VPN" in text and "誰にも教えないでください" in text
    if university == "東北大学":  # short enough: signed with the university's name too
        assert text.startswith("【東北大学 Campus VPN】")
    ctx.engine.dispose()


def test_an_english_sms_code_fits_one_gsm_segment(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock, '[portal]\nuniversity = "Example University"\n')
    text = phones.code_text(ctx, CODE, Channel.SMS, "en")
    assert text.isascii() and len(text) <= outbound.SMS_GSM_SEGMENT
    assert text.startswith("Example University Campus VPN:") and "Never tell it to anyone" in text
    ctx.engine.dispose()


def test_the_voice_script_says_who_calls_and_the_code_twice(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock)
    for lang, who, never in (
        ("en", "This is Campus VPN", "Never tell it"),
        ("ja", "こちらは Campus VPN です", "誰にも"),
    ):
        script = phones.code_text(ctx, CODE, Channel.VOICE, lang)
        assert script.startswith(who) and script.count("1 2 3 4 5 6") == 2 and never in script
    ctx.engine.dispose()


def test_no_outbound_text_asks_the_user_to_give_the_code_away() -> None:
    # Every SMS and call text warns; none says "tell/give/send/reply ... the code" as a request.
    for key in ("sms.code", "voice.code"):
        en = outbound.render(key, "en", sender="X", code=CODE, minutes=10)
        ja = outbound.render(key, "ja", sender="X", code=CODE, minutes=10)
        assert "Never tell it to anyone" in en and "誰にも教えないでください" in ja
    footer = outbound.render("mail.footer", "ja", sender="X", portal_url="https://x.test/")
    assert "返信しないでください" in footer


def test_texts_follow_the_users_language_else_the_default(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock)  # the default language is Japanese
    add_user(ctx, "1000000001")
    add_user(ctx, "1000000002")
    with ctx.tx() as s:
        english, unset = ctx.user(s, "1000000001"), ctx.user(s, "1000000002")
        english.language = "en"
        assert phones.user_language(ctx, english) == "en" and phones.user_language(ctx, unset) == "ja"
        notices.confirm_address(ctx, s, english, "a@example.ac.jp", "https://vpn.example.ac.jp/e/1", key="k1")
        notices.confirm_address(ctx, s, unset, "b@example.ac.jp", "https://vpn.example.ac.jp/e/2", key="k2")
    with ctx.tx() as s:
        mails = {m.to: m for m in s.query(MailMessage).all()}
        assert mails["a@example.ac.jp"].subject == "[Campus VPN] Confirm your e-mail address"
        assert mails["b@example.ac.jp"].subject == "[Campus VPN] メールアドレスの確認"
        assert (
            "このメールは Campus VPN（https://vpn.example.ac.jp/）から送信しています" in mails["b@example.ac.jp"].body
        )
    ctx.engine.dispose()


def test_a_security_notice_is_in_the_chosen_language_or_both_with_the_japanese_help_desk(
    tmp_path: Path, clock: FixedClock
) -> None:
    ctx = _ctx(tmp_path, clock, '[service]\nhelpdesk = "the IT help desk"\n')
    add_user(ctx, "1000000001")
    add_user(ctx, "1000000002")
    with ctx.tx() as s:
        english, unset = ctx.user(s, "1000000001"), ctx.user(s, "1000000002")
        english.email, english.language, unset.email = "a@example.ac.jp", "en", "b@example.ac.jp"
        notices.security_changed(ctx, english, "password_changed", source="192.0.2.1")
        notices.security_changed(ctx, unset, "password_changed", source="192.0.2.1")
    with ctx.tx() as s:
        mails = {m.to: m for m in s.query(MailMessage).all()}
    en, both = mails["a@example.ac.jp"], mails["b@example.ac.jp"]
    assert en.subject == "[Campus VPN] Your security info changed" and "パスワード" not in en.body
    assert "Your password was changed. (" in en.body and ", from 192.0.2.1)" in en.body
    assert both.subject == "[Campus VPN] セキュリティ情報が変更されました / Your security info changed"
    ja_part = both.body.split("\n\n")[0]
    assert "接続元 192.0.2.1" in ja_part and "IT ヘルプデスク に連絡" in ja_part and "the IT help desk" not in ja_part
    ctx.engine.dispose()


def test_a_name_given_per_language_is_said_in_each(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock)
    add_user(ctx, "1000000001")
    with ctx.tx() as s:
        user = ctx.user(s, "1000000001")
        user.email = "a@example.ac.jp"
        notices.security_changed(ctx, user, "identity_linked", {"en": "My Number Card", "ja": "マイナンバーカード"})
    with ctx.tx() as s:
        [mail] = s.query(MailMessage).all()
    ja, en = mail.body.split("\n\n")[:2]
    assert "本人確認済みの ID（マイナンバーカード）" in ja and "My Number Card" not in ja
    assert "A verified identity (My Number Card) was linked" in en
    ctx.engine.dispose()


def test_the_code_fields_hints_name_the_words_the_gateway_reads() -> None:
    from campusvpn.signin.typed_answer import SEND_WORDS, TRUST_WORDS, hints
    from campusvpn.texts.render import render

    en = render(hints(phone=True, trust_days=30), "en")
    ja = render(hints(phone=True, trust_days=30), "ja")
    for said in (en, ja):
        assert "sms" in said and "call" in said and '" trust"' in en and "「 trust」" in ja and "30" in said
    assert {"sms", "call"} <= set(SEND_WORDS) and "trust" in TRUST_WORDS
    assert "sms" not in render(hints(phone=False, trust_days=30), "en")
