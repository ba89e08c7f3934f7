"""SMS and voice through a provider, end to end through the sign-in engine and the notice queue:
a stand-in provider on loopback (tests/sms_provider_standin.py) checks that each request has
Twilio's documented shape (or the webhook's configured JSON), and answers errors; the user reads
"could not send; try another method", never a traceback, and nothing is stored for a code that
never left."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from defusedxml import ElementTree
from tests.conftest import PASSWORD, add_user, make_config
from tests.sms_provider_standin import FROM, running, twilio_config, webhook_config

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import ConfigError, parse_config
from campusvpn.service import lifecycle, mail_queue, mail_sender, mfa, phones
from campusvpn.service.context import Context, open_context
from campusvpn.service.signin_ports import start_signin
from campusvpn.service.sms_providers import USER_TEXT
from campusvpn.signin import Code, Finished, Password, Prompt, Purpose, SendCode
from campusvpn.store.models import PhoneChallenge


def _with_phone(ctx: Context, clock: FixedClock, kind: str = "mobile", ext: str | None = None) -> None:
    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="test")
    number = "+81 90-1234-5678" if kind == "mobile" else "+81 3-1234-5678"
    phones.add_phone(ctx, "1234567890", kind, number, ext, actor="test")
    clock.advance(timedelta(minutes=41))


def test_twilio_sms_code_signs_in(tmp_path: Path, clock: FixedClock) -> None:
    with running("twilio") as provider:
        ctx = open_context(make_config(tmp_path, twilio_config(provider.port)), clock)
        _with_phone(ctx, clock)
        engine = start_signin(ctx, Purpose.VPN, source="192.0.2.1")
        engine.handle(Password("1234567890", PASSWORD))
        sent = engine.handle(SendCode(channel="sms"))
        assert isinstance(sent, Prompt) and "text message" in sent.message and not sent.error
        assert provider.problems == []
        [request] = provider.requests
        assert request["path"].endswith("/Messages.json") and request["To"] == "+819012345678"
        assert request["From"] == FROM
        code = re.findall(r"\d{6}", request["Body"])[0]
        done = engine.handle(Code(code))
        assert isinstance(done, Finished) and done.ok and done.used_method == "phone"
        ctx.engine.dispose()


def test_twilio_voice_call_speaks_the_code_twice_in_the_users_language(tmp_path: Path, clock: FixedClock) -> None:
    with running("twilio") as provider:
        ctx = open_context(make_config(tmp_path, twilio_config(provider.port)), clock)
        _with_phone(ctx, clock, "office", "1234")
        with ctx.tx() as s:
            ctx.user(s, "1234567890").language = "ja"
        engine = start_signin(ctx, Purpose.VPN, source="192.0.2.1")
        engine.handle(Password("1234567890", PASSWORD))
        calling = engine.handle(SendCode(channel="voice"))
        assert isinstance(calling, Prompt) and "calling" in calling.message
        assert provider.problems == []
        [request] = provider.requests
        assert request["path"].endswith("/Calls.json") and request["SendDigits"] == "wwww1234"
        say = ElementTree.fromstring(request["Twiml"]).find("Say")
        assert say is not None and say.get("language") == "ja-JP"
        spoken = re.findall(r"\d(?: \d){5}", say.text or "")
        assert len(spoken) == 2 and spoken[0] == spoken[1] and "確認コード" in (say.text or "")
        done = engine.handle(Code(spoken[0].replace(" ", "")))
        assert isinstance(done, Finished) and done.ok
        ctx.engine.dispose()


@pytest.mark.parametrize(
    ("answers", "tries"),
    [
        ([(400, {"code": 21211, "message": "The 'To' number is not valid.", "status": 400}, 0.0)], 1),
        ([(503, None, 0.0), (500, None, 0.0)], 2),  # server errors: tried again, then given up
        ([(201, None, 3.0), (201, None, 3.0)], 2),  # no answer within provider_timeout (2 s)
    ],
)
def test_provider_failure_tells_the_user_to_try_another_method(
    tmp_path: Path, clock: FixedClock, answers: list[tuple[int, dict[str, object] | None, float]], tries: int
) -> None:
    with running("twilio") as provider:
        ctx = open_context(make_config(tmp_path, twilio_config(provider.port)), clock)
        _with_phone(ctx, clock)
        for a in answers:
            provider.answer(*a)
        engine = start_signin(ctx, Purpose.VPN, source="192.0.2.1")
        engine.handle(Password("1234567890", PASSWORD))
        refused = engine.handle(SendCode(channel="sms"))
        assert isinstance(refused, Prompt) and refused.why == (USER_TEXT,)
        assert len(provider.requests) == tries
        with ctx.tx() as s:  # nothing stored for a code that never left: the hourly limit is not spent
            assert s.query(PhoneChallenge).count() == 0
        provider.answers.clear()
        again = engine.handle(SendCode(channel="sms"))  # the provider is back: the same sign-in goes on
        assert isinstance(again, Prompt) and not again.error
        ctx.engine.dispose()


def test_webhook_posts_the_configured_json_and_signs_in(tmp_path: Path, clock: FixedClock) -> None:
    with running("webhook") as provider:
        ctx = open_context(make_config(tmp_path, webhook_config(provider.port)), clock)
        _with_phone(ctx, clock)
        engine = start_signin(ctx, Purpose.VPN, source="192.0.2.1")
        engine.handle(Password("1234567890", PASSWORD))
        engine.handle(SendCode(channel="sms"))
        assert provider.problems == []
        [request] = provider.requests
        assert request["number"] == "+819012345678" and request["kind"] == "sms" and request["lang"] == "ja"
        done = engine.handle(Code(re.findall(r"\d{6}", request["message"])[0]))
        assert isinstance(done, Finished) and done.ok
        ctx.engine.dispose()


def test_sms_notices_are_queued_and_retried_until_the_provider_takes_them(tmp_path: Path, clock: FixedClock) -> None:
    from zoneinfo import ZoneInfo

    with running("webhook") as provider:
        ctx = open_context(make_config(tmp_path, webhook_config(provider.port, "sms_notices = true\n")), clock)
        add_user(ctx, "1234567890", "student", start="2023-04-01", end="2027-03-31")
        mfa.apply(ctx, "1234567890", actor="test")
        phones.add_phone(ctx, "1234567890", "mobile", "090-1234-5678", None, actor="test")
        with ctx.tx() as s:
            ctx.user(s, "1234567890").language = "en"
        from datetime import datetime

        clock.set(datetime(2027, 3, 1, 12, tzinfo=ZoneInfo("Asia/Tokyo")))
        provider.answer(503)
        provider.answer(503)  # both tries of the first round
        lifecycle.run(ctx)
        first = mail_sender.deliver_now(ctx)
        assert first.sent == 0 and len(first.failed) == 1 and "503" in first.failed[0][1]
        assert mail_queue.listing(ctx)["messages"][0]["channel"] == "sms"
        lifecycle.run(ctx)  # the job again: nothing queued twice
        clock.advance(timedelta(minutes=1))
        assert mail_sender.deliver_now(ctx).sent == 1
        clock.advance(timedelta(hours=2))
        assert mail_sender.deliver_now(ctx).sent == 0
        assert provider.problems == []
        assert len(provider.requests) == 3  # the failed round's two tries and the delivery
        assert "ends on 2027-03-31" in provider.requests[-1]["message"] and provider.requests[-1]["lang"] == "en"
        assert mail_queue.listing(ctx)["waiting"] == 0
        ctx.engine.dispose()


def test_provider_settings_are_checked(tmp_path: Path) -> None:
    for text, error in [
        ('[sender]\nkind = "twilio"\n', "twilio_account_sid"),
        ('[sender]\nkind = "webhook"\nwebhook_url = "http://provider.example/send"\n', "https://"),
        ('[sender]\nwebhook_template = { a = "{nope}" }\n', "webhook_template"),
    ]:
        with pytest.raises(ConfigError, match=error):
            parse_config(text, tmp_path / "x.toml")
