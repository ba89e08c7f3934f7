"""Self-service in the portal: password change (current password, policy, step-up), the e-mail
address for notices confirmed by a link that arrives over real SMTP (aiosmtpd), several named
authenticator apps, and setting up again at sign-in after deleting every method oneself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from aiosmtpd.controller import Controller
from tests.conftest import PASSWORD, add_user, make_config
from tests.helpers import enrol_totp, free_port, sign_in
from tests.test_mail import Inbox
from tests.test_portal import USER, client, csrf, register_totp, totp_now
from tests.test_portal import sign_in as portal_sign_in

from campusvpn.platform.clock import FixedClock
from campusvpn.service import authenticator, mail_sender, mfa
from campusvpn.service.context import Context, open_context
from campusvpn.service.errors import Conflict
from campusvpn.service.sender import read_outbox
from campusvpn.signin import Finished, Prompt, Purpose, Step

NEW_PASSWORD = "purple elephants dance at noon"


@pytest.fixture
def pctx(tmp_path: Path, clock: FixedClock) -> Iterator[Context]:
    c = open_context(make_config(tmp_path, '[portal]\ndefault_language = "en"\n'), clock)
    add_user(c, USER)
    with c.tx() as s:
        c.user(s, USER).email = "user@example.ac.jp"
    yield c
    c.engine.dispose()


def test_password_change_needs_the_current_password_the_policy_and_a_fresh_code(
    pctx: Context, clock: FixedClock
) -> None:
    mfa.apply(pctx, USER, actor="test")
    c = client(pctx)
    portal_sign_in(c)
    secret, _ = register_totp(c, pctx, clock)
    clock.advance(timedelta(minutes=30))  # the code given at registration is no longer fresh
    r = c.get("/password")
    assert "/stepup" in str(r.url)
    r = c.post(str(r.url), data={"csrf": csrf(r.text), "code": totp_now(pctx, secret, clock)})
    assert "At least 12 characters" in r.text

    def change(current: str, new: str, again: str | None = None) -> str:
        page = c.get("/password").text
        fields = {"csrf": csrf(page), "current": current, "new": new, "again": new if again is None else again}
        return c.post("/password", data=fields).text

    assert "current password is not right" in change("wrong password here", NEW_PASSWORD)
    assert "at least 12 characters" in change(PASSWORD, "short")
    assert "must not contain your user name" in change(PASSWORD, f"my id is {USER}!")
    assert "must differ from your current password" in change(PASSWORD, PASSWORD)
    assert "two new passwords differ" in change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x")
    done = change(PASSWORD, NEW_PASSWORD)
    assert "Your password was changed" in done
    mails = [m for m in read_outbox(pctx.config.path(pctx.config.sender.outbox)) if m["channel"] == "email"]
    assert "Your password was changed." in mails[-1]["text"]
    c.post("/signout", data={"csrf": csrf(done)})
    assert "not right" in portal_sign_in(c, password=PASSWORD) or "incorrect" in portal_sign_in(c, password=PASSWORD)
    assert "authenticator app" in portal_sign_in(c, password=NEW_PASSWORD)


def test_email_address_is_confirmed_by_a_link_mailed_over_smtp(tmp_path: Path, clock: FixedClock) -> None:
    port = free_port()
    extra = (
        '[portal]\ndefault_language = "en"\n'
        f'[sender]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "none"\nsmtp_timeout = "5s"\n'
    )
    ctx = open_context(make_config(tmp_path, extra), clock)
    add_user(ctx, USER)
    with ctx.tx() as s:
        ctx.user(s, USER).email = "old@example.ac.jp"
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        c = client(ctx)
        portal_sign_in(c)  # no MFA yet: nothing to step up with
        page = c.get("/email?lang=ja").text
        assert "old@example.ac.jp" in page
        bad = c.post("/email?lang=ja", data={"csrf": csrf(page), "address": "not an address"})
        assert bad.status_code == 400 and "does not look like an e-mail address" in bad.text
        sent = c.post("/email?lang=ja", data={"csrf": csrf(page), "address": "new@mail.example.jp"})
        assert "new@mail.example.jp にリンクを送信しました" in sent.text
        assert mail_sender.deliver_now(ctx).sent == 1
        [mail] = inbox.mails
        assert mail["To"] == "new@mail.example.jp"
        body = mail.get_payload(decode=True).decode()
        assert "リンクを開いてください" in body  # in the language the user asked in
        link = re.search(r"https://\S+/email/confirm\?token=\S+", body)
        assert link
        path = link.group(0)[link.group(0).index("/email/confirm") :]
        other = client(ctx)  # opened in another browser, not signed in
        shown = other.get(path)
        assert shown.status_code == 200 and "email-confirmed" not in shown.text
        with ctx.tx() as s:
            assert ctx.user(s, USER).email == "old@example.ac.jp"  # a GET (a mail scanner) changes nothing
        done = other.post(path, data={"csrf": csrf(shown.text)})
        assert 'id="email-confirmed"' in done.text
        with ctx.tx() as s:
            assert ctx.user(s, USER).email == "new@mail.example.jp"
        again = other.post(path, data={"csrf": csrf(shown.text)})
        assert again.status_code == 404 and "not valid any more" in again.text
        assert mail_sender.deliver_now(ctx).sent == 1  # the old address is told
        assert inbox.mails[-1]["To"] == "old@example.ac.jp"
        assert "new@mail.example.jp" in inbox.mails[-1].get_payload(decode=True).decode()
    finally:
        smtp.stop()
        ctx.engine.dispose()


def test_several_named_authenticator_apps_up_to_the_limit(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    first, _ = enrol_totp(ctx, clock)
    secrets_ = [first]
    for name in ("work phone", "tablet"):
        e = authenticator.begin_totp(ctx, "1234567890", actor="test")
        assert (
            authenticator.confirm_totp(
                ctx, "1234567890", pyotp.TOTP(e.secret).at(clock.now()), actor="test", label=name
            )
            is None
        )
        secrets_.append(e.secret)
    with pytest.raises(Conflict, match="the most allowed is 3"):
        authenticator.begin_totp(ctx, "1234567890", actor="test")
    labels = [m["label"] for m in mfa.show(ctx, "1234567890")["methods"]]  # type: ignore[index]
    assert labels == ["Authenticator app", "Authenticator app (work phone)", "Authenticator app (tablet)"]
    for secret in secrets_:  # each app's code signs in
        clock.advance(timedelta(seconds=31))
        done = sign_in(ctx, pyotp.TOTP(secret).at(clock.now()))
        assert isinstance(done, Finished) and done.ok


def test_the_same_name_twice_is_refused(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    enrol_totp(ctx, clock)
    for i in range(2):
        e = authenticator.begin_totp(ctx, "1234567890", actor="test")
        code = pyotp.TOTP(e.secret).at(clock.now() + timedelta(seconds=31 * i))
        clock.advance(timedelta(seconds=31))
        if i == 0:
            authenticator.confirm_totp(ctx, "1234567890", code, actor="test", label="iPhone")
        else:
            with pytest.raises(Conflict, match="already have an authenticator app named 'iPhone'"):
                authenticator.confirm_totp(ctx, "1234567890", code, actor="test", label=" iPhone ")


def test_after_deleting_every_method_oneself_the_next_sign_in_sets_up_again_within_the_window(
    ctx: Context, clock: FixedClock
) -> None:
    add_user(ctx)
    enrol_totp(ctx, clock)
    app = mfa.show(ctx, "1234567890")["methods"][0]["id"]  # type: ignore[index]
    mfa.delete_method(ctx, "1234567890", str(app), actor="1234567890", fresh_second_factor_at=clock.now())
    clock.advance(timedelta(days=6))
    free = sign_in(ctx, None, purpose=Purpose.PORTAL)
    assert isinstance(free, Prompt) and free.step is Step.REGISTRATION and not free.needs_recovery_code
    clock.advance(timedelta(days=2))  # past [mfa] reregister_window (7 days): as before, a recovery code
    locked = sign_in(ctx, None, purpose=Purpose.PORTAL)
    assert isinstance(locked, Prompt) and locked.step is Step.REGISTRATION and locked.needs_recovery_code
