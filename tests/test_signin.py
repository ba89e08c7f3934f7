"""The sign-in engine: the path every front end drives."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from tests.conftest import add_user
from tests.helpers import PASSWORD, enrol_totp, sent_code, sign_in, totp_now

from campusvpn.platform.clock import FixedClock
from campusvpn.service import accounts, authenticator, mfa, phones, trusted
from campusvpn.service.context import Context
from campusvpn.service.signin_ports import start_signin
from campusvpn.signin import Code, Finished, IllegalEvent, Password, Prompt, Purpose, SendCode, Step


def test_password_then_totp_signs_in_and_vpn_is_allowed(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    engine = start_signin(ctx, Purpose.VPN, source="192.0.2.1")
    p = engine.handle(Password("１２３４５６７８９０@example.ac.jp", PASSWORD))
    assert isinstance(p, Prompt)
    assert p.step is Step.SECOND_FACTOR
    assert p.methods[0].kind == "totp"
    assert p.methods[0].default
    done = engine.handle(Code(totp_now(secret, clock)))
    assert isinstance(done, Finished)
    assert done.ok
    assert done.factors == 2
    assert done.used_method == "totp"


def test_unknown_user_and_wrong_password_look_the_same(ctx: Context) -> None:
    add_user(ctx)
    a = sign_in(ctx, None, name="1234567899")
    b = sign_in(ctx, None, password="wrong password")
    assert isinstance(a, Finished)
    assert isinstance(b, Finished)
    assert (a.code, a.message) == (b.code, b.message) == ("bad_credentials", "The user name or password is incorrect.")


def test_replayed_totp_is_refused_with_a_clear_message(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    code = totp_now(secret, clock)
    assert isinstance(ok := sign_in(ctx, code), Finished) and ok.ok
    again = sign_in(ctx, code)
    assert isinstance(again, Prompt)
    assert again.error is not None and "already used" in again.error


def test_recovery_code_works_once_and_counts_down(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    _, codes = enrol_totp(ctx, clock)
    assert len(codes) == 10
    first = sign_in(ctx, codes[3].lower().replace("-", " "))
    assert isinstance(first, Finished) and first.ok
    assert first.recovery_left == 9
    assert "9 of 10 left" in first.message
    second = sign_in(ctx, codes[3])
    assert isinstance(second, Prompt) and second.error
    assert second.error.startswith("That recovery code was already used (each works once)")  # not "not right"
    wrong = sign_in(ctx, "AAAA-BBBB-CCCC-DDDD")
    assert isinstance(wrong, Prompt) and wrong.error == "That code is not right. Check it and try again."


def test_regenerated_recovery_codes_replace_the_old_set(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    _, old = enrol_totp(ctx, clock)
    new = mfa.regenerate_recovery_codes(ctx, "1234567890", actor="test")
    assert not set(old) & set(new)
    replaced = sign_in(ctx, old[0])
    assert isinstance(replaced, Prompt) and replaced.error and "a set you replaced" in replaced.error
    done = sign_in(ctx, new[0])
    assert isinstance(done, Finished) and done.ok


def test_sms_code_from_the_outbox_signs_in_once_and_expires(ctx: Context, clock: FixedClock) -> None:
    from campusvpn.service.sender import read_outbox

    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="test")
    phones.add_phone(ctx, "1234567890", "mobile", "+81 90-1234-5678", None, actor="test")
    clock.advance(timedelta(minutes=41))
    outbox = ctx.config.path(ctx.config.sender.outbox)

    engine = start_signin(ctx, Purpose.VPN, source="192.0.2.1")
    p = engine.handle(Password("1234567890", PASSWORD))
    assert isinstance(p, Prompt) and p.methods[0].channels == ("sms", "voice")
    sent = engine.handle(SendCode())
    assert isinstance(sent, Prompt) and "text message" in sent.message
    msg = read_outbox(outbox)[-1]
    assert msg["to"] == "+819012345678" and msg["channel"] == "sms"
    code = sent_code(msg["text"])
    assert isinstance(done := engine.handle(Code(code)), Finished) and done.ok and done.used_method == "phone"
    assert isinstance(sign_in(ctx, code), Prompt)  # single use

    engine = start_signin(ctx, Purpose.VPN)
    engine.handle(Password("1234567890", PASSWORD))
    engine.handle(SendCode(channel="voice"))
    spoken = read_outbox(outbox)[-1]
    assert spoken["channel"] == "voice"
    said = re.findall(r"\d(?: \d){5}", spoken["text"])  # spoken digit by digit, twice
    assert len(said) == 2 and said[0] == said[1]
    code = said[0].replace(" ", "")
    clock.advance(timedelta(minutes=5, seconds=1))
    expired = engine.handle(Code(code))
    assert isinstance(expired, Prompt) and expired.error


def test_a_new_code_supersedes_the_previous_one(ctx: Context, clock: FixedClock) -> None:
    from campusvpn.service.sender import read_outbox

    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="test")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="test")
    clock.advance(timedelta(minutes=41))
    engine = start_signin(ctx)
    engine.handle(Password("1234567890", PASSWORD))
    engine.handle(SendCode())
    old = sent_code(read_outbox(ctx.config.path(ctx.config.sender.outbox))[-1]["text"])
    engine.handle(SendCode())
    new = sent_code(read_outbox(ctx.config.path(ctx.config.sender.outbox))[-1]["text"])
    if old != new:
        assert isinstance(engine.handle(Code(old)), Prompt)
    assert isinstance(done := engine.handle(Code(new)), Finished) and done.ok


def test_alternate_phone_refuses_sms(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="test")
    phones.add_phone(ctx, "1234567890", "alternate", "+81312345678", None, actor="test")
    engine = start_signin(ctx)
    engine.handle(Password("1234567890", PASSWORD))
    out = engine.handle(SendCode(channel="sms"))
    assert isinstance(out, Prompt) and out.error and "only receive a voice call" in out.error


def test_vpn_refusal_after_good_factors_carries_every_reason(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    accounts.set_status(ctx, "1234567890", accounts.AccountStatus.SUSPENDED, actor="t", reason="security incident")
    done = sign_in(ctx, totp_now(secret, clock))
    assert isinstance(done, Finished) and not done.ok and done.code == "refused"
    assert "security incident" in done.message


def test_mfa_applied_10_minutes_ago_is_refused_with_the_time(ctx: Context, clock: FixedClock) -> None:
    import pyotp

    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="test")
    e = authenticator.begin_totp(ctx, "1234567890", actor="test")
    authenticator.confirm_totp(ctx, "1234567890", pyotp.TOTP(e.secret).at(clock.now()), actor="test")
    clock.advance(timedelta(minutes=10))
    done = sign_in(ctx, pyotp.TOTP(e.secret).at(clock.now()))
    assert isinstance(done, Finished) and not done.ok
    assert "2026-10-01 09:40 JST" in done.message and "in 30 minutes" in done.message


def test_password_throttle_backs_off_then_locks(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    free = ctx.config.throttle.free_failures
    for _ in range(free):
        assert isinstance(out := sign_in(ctx, None, password="bad"), Finished) and out.code == "bad_credentials"
    # The next attempt is allowed, fails, and starts a wait.
    assert sign_in(ctx, None, password="bad").code == "bad_credentials"  # type: ignore[union-attr]
    blocked = sign_in(ctx, None)
    assert isinstance(blocked, Finished) and blocked.code == "throttled" and "Wait 2 seconds" in blocked.message
    # Keep failing after each wait until the lock.
    lock_after = ctx.config.throttle.password_lock_after
    for _ in range(lock_after - free - 1):
        clock.advance(ctx.config.throttle.backoff_max)
        sign_in(ctx, None, password="bad")
    locked = sign_in(ctx, None)
    assert isinstance(locked, Finished) and locked.code == "locked"
    assert "locked until" in locked.message
    clock.advance(ctx.config.throttle.lock_duration)
    assert isinstance(sign_in(ctx, None), Prompt | Finished)
    assert sign_in(ctx, None).code != "locked"  # type: ignore[union-attr]


def test_second_factor_counter_is_separate_from_the_password_counter(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    lock_after = ctx.config.throttle.second_factor_lock_after
    out: Prompt | Finished | None = None
    for _ in range(lock_after):
        clock.advance(ctx.config.throttle.backoff_max)
        out = sign_in(ctx, "000000")
    assert isinstance(out, Finished) and out.code == "locked"
    # The password step still works (its own counter); the code step stays locked.
    engine = start_signin(ctx)
    assert isinstance(engine.handle(Password("1234567890", PASSWORD)), Prompt)
    locked = engine.handle(Code(totp_now(secret, clock)))
    assert isinstance(locked, Finished) and locked.code == "locked"


def test_source_throttle_blocks_an_address_spraying_many_accounts(tmp_path: object, clock: FixedClock) -> None:
    from pathlib import Path

    from tests.conftest import make_config

    from campusvpn.service.context import open_context

    assert isinstance(tmp_path, Path)
    ctx = open_context(make_config(tmp_path, "[throttle]\nsource_lock_after = 5\n"), clock)
    add_user(ctx)
    for i in range(5):
        clock.advance(ctx.config.throttle.backoff_max)  # wait out each back-off: only the lock remains
        out = sign_in(ctx, None, name=f"100000000{i}", password="guess", source="198.51.100.7")
        assert isinstance(out, Finished) and out.code == "bad_credentials"
    blocked = sign_in(ctx, None, source="198.51.100.7")
    assert isinstance(blocked, Finished) and blocked.code == "locked"
    other = sign_in(ctx, None, source="198.51.100.8")  # password accepted; refused only by MFA policy
    assert isinstance(other, Finished) and other.code == "refused" and other.factors == 1


def test_trusted_device_skips_the_code_until_it_expires(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    first = sign_in(ctx, totp_now(secret, clock), trust=True)
    assert isinstance(first, Finished) and first.ok and first.device_token
    assert "will not be asked for a code until" in first.message
    token = first.device_token
    skipped = sign_in(ctx, None, device_token=token)
    assert isinstance(skipped, Finished) and skipped.ok and skipped.trusted_device
    assert "Code skipped" in skipped.message  # never silent
    [dev] = trusted.list_devices(ctx, "1234567890")
    assert dev["label"] == "test laptop" and dev["last_used"] is not None
    clock.advance(timedelta(days=30))
    assert isinstance(sign_in(ctx, None, device_token=token), Prompt)


def test_revoked_device_asks_for_the_code_again(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    first = sign_in(ctx, totp_now(secret, clock), trust=True)
    assert isinstance(first, Finished)
    [dev] = trusted.list_devices(ctx, "1234567890")
    trusted.revoke_device(ctx, "1234567890", str(dev["id"]), actor="1234567890")
    assert isinstance(sign_in(ctx, None, device_token=first.device_token), Prompt)


def test_a_device_token_of_another_user_is_worthless(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    add_user(ctx, "2234567890")
    secret, _ = enrol_totp(ctx, clock)
    enrol_totp(ctx, clock, "2234567890")
    first = sign_in(ctx, totp_now(secret, clock), trust=True)
    assert isinstance(first, Finished)
    assert isinstance(sign_in(ctx, None, name="2234567890", device_token=first.device_token), Prompt)


@pytest.mark.parametrize("change", ["password", "reset"])
def test_password_change_and_mfa_reset_revoke_trusted_devices(ctx: Context, clock: FixedClock, change: str) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    first = sign_in(ctx, totp_now(secret, clock), trust=True)
    assert isinstance(first, Finished)
    if change == "password":
        accounts.set_password(ctx, "1234567890", PASSWORD + "!", actor="test")
    else:
        mfa.reset(ctx, "1234567890", actor="admin", reason="lost phone")
    assert trusted.list_devices(ctx, "1234567890") == []


def test_trusted_devices_are_capped_oldest_first(tmp_path: object, clock: FixedClock) -> None:
    from pathlib import Path

    from tests.conftest import make_config

    from campusvpn.service.context import open_context

    assert isinstance(tmp_path, Path)
    ctx = open_context(make_config(tmp_path, "[trusted_devices]\nmax_per_user = 2\n"), clock)
    add_user(ctx)
    _, codes = enrol_totp(ctx, clock)
    tokens = []
    for c in codes[:3]:
        out = sign_in(ctx, c, trust=True)
        assert isinstance(out, Finished) and out.device_token
        tokens.append(out.device_token)
        clock.advance(timedelta(minutes=1))
    assert len(trusted.list_devices(ctx, "1234567890")) == 2
    assert isinstance(sign_in(ctx, None, device_token=tokens[0]), Prompt)
    assert isinstance(sign_in(ctx, None, device_token=tokens[2]), Finished)


def test_portal_sign_in_forces_first_registration_after_applying(ctx: Context, clock: FixedClock) -> None:
    import pyotp

    from campusvpn.signin import Registered

    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="1234567890")
    engine = start_signin(ctx, Purpose.PORTAL)
    p = engine.handle(Password("1234567890", PASSWORD))
    assert isinstance(p, Prompt) and p.step is Step.REGISTRATION and not p.needs_recovery_code
    assert engine.registration_unlocked
    e = authenticator.begin_totp(ctx, "1234567890", actor="1234567890")
    authenticator.confirm_totp(ctx, "1234567890", pyotp.TOTP(e.secret).at(clock.now()), actor="1234567890")
    done = engine.handle(Registered())
    assert isinstance(done, Finished) and done.ok and done.factors == 2


def test_deleting_every_method_needs_a_fresh_factor_and_reregistration_needs_a_recovery_code(
    ctx: Context, clock: FixedClock
) -> None:
    from campusvpn.service.errors import Forbidden
    from campusvpn.signin import RecoveryForRegistration

    add_user(ctx)
    _, codes = enrol_totp(ctx, clock)
    [m] = mfa.show(ctx, "1234567890")["methods"]  # type: ignore[misc]
    with pytest.raises(Forbidden, match="second factor"):
        mfa.delete_method(
            ctx, "1234567890", m["id"], actor="u", fresh_second_factor_at=clock.now() - timedelta(hours=1)
        )
    state = mfa.delete_method(ctx, "1234567890", m["id"], actor="u", fresh_second_factor_at=clock.now())
    assert state.value == "registration_required"
    # Within [mfa] reregister_window the user sets up again freely (tests/test_self_service.py); later, as here,
    # a recovery code is needed.
    clock.advance(ctx.config.mfa.reregister_window + timedelta(seconds=1))
    engine = start_signin(ctx, Purpose.PORTAL)
    p = engine.handle(Password("1234567890", PASSWORD))
    assert isinstance(p, Prompt) and p.needs_recovery_code and not engine.registration_unlocked
    bad = engine.handle(RecoveryForRegistration("AAAA-AAAA-AAAA-AAAA"))
    assert isinstance(bad, Prompt) and bad.error
    ok = engine.handle(RecoveryForRegistration(codes[0]))
    assert isinstance(ok, Prompt) and engine.registration_unlocked


def test_events_out_of_order_are_illegal(ctx: Context) -> None:
    engine = start_signin(ctx)
    with pytest.raises(IllegalEvent):
        engine.handle(Code("123456"))
    add_user(ctx)
    engine.handle(Password("1234567890", "wrong"))
    with pytest.raises(IllegalEvent):
        engine.handle(Password("1234567890", PASSWORD))


def test_help_desk_unlock_lifts_a_lock(ctx: Context, clock: FixedClock) -> None:
    from campusvpn.service import throttling

    add_user(ctx)
    for _ in range(ctx.config.throttle.password_lock_after):
        clock.advance(ctx.config.throttle.backoff_max)
        sign_in(ctx, None, password="bad")
    assert sign_in(ctx, None).code == "locked"  # type: ignore[union-attr]
    with ctx.tx() as s:
        assert throttling.unlock(s, "1234567890") == 2  # unknown clients' counter and the account-wide one
    assert sign_in(ctx, None, source="192.0.2.99").code == "refused"  # type: ignore[union-attr]  # password accepted again


def test_password_hash_is_upgraded_when_argon2_parameters_change(tmp_path: object, clock: FixedClock) -> None:
    from pathlib import Path

    from sqlalchemy import text
    from tests.conftest import make_config

    from campusvpn.service.context import open_context

    assert isinstance(tmp_path, Path)
    ctx = open_context(make_config(tmp_path), clock)
    add_user(ctx)
    ctx.engine.dispose()
    stronger = open_context(make_config(tmp_path, "argon2_parallelism = 2\n"), clock)  # appended to [passwords]
    sign_in(stronger, None)
    with stronger.engine.connect() as c:
        assert ",p=2$" in c.execute(text("select password_hash from users")).scalar_one()


def test_each_step_is_one_transaction(ctx: Context, clock: FixedClock) -> None:
    from sqlalchemy import event

    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    commits: list[object] = []
    event.listen(ctx.engine, "commit", commits.append)
    engine = start_signin(ctx, Purpose.VPN, source="192.0.2.1")
    assert isinstance(engine.handle(Password("1234567890", PASSWORD)), Prompt)
    assert len(commits) == 1
    # The code, the trusted device and the decision: three port calls, one transaction.
    done = engine.handle(Code(totp_now(secret, clock), trust_device=True, device_label="laptop"))
    assert isinstance(done, Finished) and done.ok and done.device_token
    assert len(commits) == 2
