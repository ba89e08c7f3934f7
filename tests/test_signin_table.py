"""The sign-in engine alone: every (step, event) pair of its table, legal and illegal.

The engine is driven through in-memory implementations of its own ports (no database), so
each branch of each transition is set up directly. tests/test_signin.py drives the same
engine through the real service ports on SQLite."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campusvpn.core.policy import Decision, MfaState, Reason
from campusvpn.core.throttle import Verdict
from campusvpn.core.usernames import UsernameRule
from campusvpn.platform.clock import FixedClock
from campusvpn.signin import (
    TRANSITIONS,
    Code,
    Event,
    Federated,
    Finished,
    IllegalEvent,
    MethodChoice,
    Passkey,
    PasskeyAssertion,
    Password,
    Ports,
    Prompt,
    Purpose,
    RecoveryForRegistration,
    Registered,
    SendCode,
    SignIn,
    Step,
)
from campusvpn.signin.ports import (
    Account,
    CodeOutcome,
    DeviceTrust,
    IssuedDevice,
    PasskeyOutcome,
    PasswordOutcome,
    SendOutcome,
    Settings,
)
from campusvpn.texts.codes import Code as Text
from campusvpn.texts.message import say


def english(out: Prompt | Finished) -> Prompt | Finished:
    """The output as the person reads it in English (the engine returns codes and parameters)."""
    if isinstance(out, Prompt):
        return replace(out, said=out.message, why=out.error or ())  # type: ignore[arg-type]
    return replace(out, said=out.message)  # type: ignore[arg-type]


NOW = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
TOTP = MethodChoice("m1", "totp", say(Text.METHOD_TOTP), (), True)
PHONE = MethodChoice("m2", "phone", say(Text.METHOD_MOBILE, number="***5678"), ("sms", "voice"))
SETTINGS = Settings(
    service_name="Campus VPN",
    helpdesk="the IT help desk",
    zone=ZoneInfo("Asia/Tokyo"),
    recovery_code_count=10,
    usernames=UsernameRule(r"[0-9]{10}", ("example.ac.jp",), "10 digits"),
)


@dataclass
class Member:
    password: str = "right"
    state: MfaState = MfaState.ACTIVE
    methods: tuple[MethodChoice, ...] = (TOTP,)
    emptied: bool = False
    recovery: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=lambda: {"123456"})
    used: set[str] = field(default_factory=set)
    allowed: bool = True


@dataclass
class World:
    """All of the engine's ports over a few dictionaries, recording what it was asked."""

    clock: FixedClock
    members: dict[str, Member] = field(default_factory=dict)
    password_blocked: tuple[Verdict, ...] = ()
    code_blocked: tuple[Verdict, ...] = ()
    lock_at_failure: int | None = None  # the second-factor failure that locks
    code_failures: int = 0
    devices: dict[str, tuple[str, DeviceTrust]] = field(default_factory=dict)
    passkeys: dict[str, tuple[str, bool]] = field(default_factory=dict)
    sent: list[tuple[str, str | None]] = field(default_factory=list)
    decided: list[tuple[str, Purpose, int]] = field(default_factory=list)

    def ports(self) -> Ports:
        return Ports(SETTINGS, self.clock, nullcontext, self, self, self, self)

    def check_password(
        self, username: str, password: str, *, purpose: Purpose, source: str | None, device_token: str | None = None
    ) -> PasswordOutcome:
        if self.password_blocked:
            return PasswordOutcome(blocked=self.password_blocked)
        m = self.members.get(username)
        if m is None or m.password != password:
            return PasswordOutcome()
        return PasswordOutcome(account=self.account(username))

    def check_passkey(self, assertion: PasskeyAssertion, *, source: str | None) -> PasskeyOutcome:
        key = self.passkeys.get(str(assertion.credential.get("id")))
        return PasskeyOutcome(key[0], key[1]) if key else PasskeyOutcome()

    def account(self, username: str) -> Account:
        m = self.members[username]
        return Account(username, m.state, m.methods, m.emptied, len(m.recovery) if m.emptied else None)

    def send_code(self, username: str, method_id: str | None, channel: str | None, source: str | None) -> SendOutcome:
        m = self.members[username]
        if channel == "sms":
            return SendOutcome(m.methods, refused=say(Text.ERROR_VOICE_ONLY, kind="office", channel="sms"))
        self.sent.append((username, channel))
        return SendOutcome(m.methods, said=say(Text.SENT_VOICE, method=PHONE.label))

    def verify_second_factor(self, username: str, code: str, method_id: str | None, source: str | None) -> CodeOutcome:
        if self.code_blocked:
            return CodeOutcome(blocked=self.code_blocked)
        m = self.members[username]
        if code in m.recovery:
            m.recovery.discard(code)
            return CodeOutcome(ok=True, method="recovery", recovery_left=len(m.recovery))
        if code in m.codes and code not in m.used:
            m.used.add(code)
            return CodeOutcome(ok=True, method="totp")
        self.code_failures += 1
        if self.code_failures == self.lock_at_failure:
            return CodeOutcome(locked_until=NOW + timedelta(minutes=15))
        return CodeOutcome(replayed=code in m.used, methods=m.methods)

    def use_recovery_code(self, username: str, code: str) -> int | None:
        m = self.members[username]
        if code not in m.recovery:
            return None
        m.recovery.discard(code)
        return len(m.recovery)

    def check_device(self, username: str, token: str, source: str | None) -> DeviceTrust | None:
        owner, trust = self.devices.get(token, ("", None))
        return trust if owner == username else None

    def trust_device(self, username: str, label: str, source: str | None) -> IssuedDevice:
        trust = DeviceTrust(label, self.clock.now() + timedelta(days=30))
        self.devices["token-new"] = (username, trust)
        return IssuedDevice("token-new", trust.expires_at)

    def decide(self, username: str, *, purpose: Purpose, factors: int, source: str | None) -> Decision:
        self.decided.append((username, purpose, factors))
        if self.members[username].allowed:
            return Decision(True, self.clock.now())
        return Decision(
            False,
            self.clock.now(),
            (Reason("suspended", say(Text.POLICY_ACCOUNT_SUSPENDED, helpdesk="the IT help desk")),),
        )


@pytest.fixture
def world() -> World:
    return World(FixedClock(NOW), {"1234567890": Member()})


def at(world: World, step: Step, purpose: Purpose = Purpose.VPN, **state: bool) -> SignIn:
    """An engine already at `step` for the one member (as the portal restores it)."""
    data = {"purpose": purpose.value, "step": step.value, "username": "1234567890", **state}
    return SignIn.restore(world.ports(), data, "192.0.2.1")


ASSERTION = PasskeyAssertion({"id": "key-1"}, b"challenge", "vpn.example.ac.jp", "https://vpn.example.ac.jp")
ONE_OF_EACH: dict[type[Event], Event] = {
    Password: Password("1234567890", "right"),
    Passkey: Passkey(ASSERTION),
    Federated: Federated("1234567890"),
    SendCode: SendCode(),
    Code: Code("123456"),
    RecoveryForRegistration: RecoveryForRegistration("AAAA-BBBB"),
    Registered: Registered(),
}
LEGAL = {
    (Step.PASSWORD, Password),
    (Step.PASSWORD, Passkey),
    (Step.PASSWORD, Federated),
    (Step.SECOND_FACTOR, SendCode),
    (Step.SECOND_FACTOR, Code),
    (Step.REGISTRATION, RecoveryForRegistration),
    (Step.REGISTRATION, Registered),
}
ILLEGAL = [(step, kind) for step in Step for kind in ONE_OF_EACH if (step, kind) not in LEGAL]


def test_the_table_holds_exactly_the_documented_transitions() -> None:
    assert set(TRANSITIONS) == LEGAL
    assert len(ILLEGAL) == len(Step) * len(ONE_OF_EACH) - len(LEGAL) == 21


@pytest.mark.parametrize(("step", "kind"), ILLEGAL, ids=[f"{s.value}-{k.__name__}" for s, k in ILLEGAL])
def test_an_event_outside_the_table_is_illegal_and_changes_nothing(world: World, step: Step, kind: type) -> None:
    engine = at(world, step)
    before = engine.snapshot()
    with pytest.raises(IllegalEvent, match=f"{kind.__name__} is not expected at step {step.value}"):
        engine.handle(ONE_OF_EACH[kind])
    assert engine.snapshot() == before
    assert world.decided == [] and world.sent == []


# --- PASSWORD --Password--> -------------------------------------------------------------------


def test_password_then_second_factor_prompt_names_the_default_method(world: World) -> None:
    engine = SignIn(world.ports(), Purpose.VPN, "192.0.2.1")
    assert engine.start().message == "Sign in to Campus VPN with your user name and password."
    out = engine.handle(Password("１２３４５６７８９０@example.ac.jp", "right"))
    assert english(out) == Prompt(
        Step.SECOND_FACTOR, "Enter the 6-digit code from your authenticator app, or a recovery code.", (TOTP,)
    )
    assert engine.step is Step.SECOND_FACTOR and engine.username == "1234567890"


def test_password_prompt_for_a_phone_first_asks_to_send_a_code(world: World) -> None:
    world.members["1234567890"].methods = (PHONE,)
    out = SignIn(world.ports()).handle(Password("1234567890", "right"))
    assert isinstance(out, Prompt)
    assert out.message == (
        "Ask for a code to be sent to your Mobile phone ***5678, then enter it; or enter a recovery code."
    )


def test_a_malformed_user_name_asks_again_with_the_reason(world: World) -> None:
    engine = SignIn(world.ports())
    out = engine.handle(Password("12345", "right"))
    assert english(out) == Prompt(
        Step.PASSWORD,
        "Sign in to Campus VPN with your user name and password.",
        why="'12345' is not a user name; a user name is 10 digits.",
    )
    assert engine.step is Step.PASSWORD


def test_a_wrong_password_ends_with_the_generic_message(world: World) -> None:
    engine = SignIn(world.ports())
    out = engine.handle(Password("1234567890", "wrong"))
    assert english(out) == Finished(False, "bad_credentials", "The user name or password is incorrect.")
    assert engine.step is Step.DONE and engine.result == out and world.decided == []


def test_a_throttled_password_says_how_long_to_wait(world: World) -> None:
    world.password_blocked = (Verdict(False, retry_at=NOW + timedelta(seconds=2)),)
    out = SignIn(world.ports()).handle(Password("1234567890", "right"))
    assert english(out) == Finished(False, "throttled", "Too many failed attempts. Wait 2 seconds and try again.")


def test_a_long_wait_is_said_in_minutes_with_the_first_minute_it_ends(world: World) -> None:
    world.password_blocked = (Verdict(False, retry_at=NOW + timedelta(minutes=7, seconds=5)),)
    out = SignIn(world.ports()).handle(Password("1234567890", "right"))
    assert isinstance(out, Finished) and out.code == "throttled"
    assert out.message == "Too many failed attempts. Wait 8 minutes (until 2026-10-01 09:08 JST) and try again."


def test_a_locked_password_says_until_when_and_whom_to_call(world: World) -> None:
    world.password_blocked = (
        Verdict(False, retry_at=NOW + timedelta(seconds=1)),
        Verdict(False, locked=True, retry_at=NOW + timedelta(minutes=30)),
    )
    out = SignIn(world.ports()).handle(Password("1234567890", "right"))
    assert english(out) == Finished(
        False,
        "locked",
        "Too many failed attempts: sign-in is locked until 2026-10-01 09:30 JST. "
        "If this was not you, contact the IT help desk.",
    )


def test_without_mfa_the_password_alone_is_one_factor_and_the_vpn_refuses(world: World) -> None:
    world.members["1234567890"].state = MfaState.NOT_APPLIED
    out = SignIn(world.ports(), Purpose.VPN).handle(Password("1234567890", "right"))
    assert isinstance(out, Finished) and not out.ok and out.code == "refused" and out.factors == 1
    assert world.decided == [("1234567890", Purpose.VPN, 1)]


def test_portal_sign_in_without_registered_method_goes_to_registration(world: World) -> None:
    world.members["1234567890"].state = MfaState.REGISTRATION_REQUIRED
    engine = SignIn(world.ports(), Purpose.PORTAL)
    out = engine.handle(Password("1234567890", "right"))
    assert english(out) == Prompt(
        Step.REGISTRATION,
        "Register a verification method: an authenticator app, or a phone for text or voice codes.",
    )
    assert engine.registration_unlocked


def test_vpn_sign_in_without_registered_method_is_decided_at_once(world: World) -> None:
    world.members["1234567890"].state = MfaState.REGISTRATION_REQUIRED
    out = SignIn(world.ports(), Purpose.VPN).handle(Password("1234567890", "right"))
    assert isinstance(out, Finished) and out.code == "refused" and out.factors == 1


def test_registration_after_removing_every_method_needs_a_recovery_code(world: World) -> None:
    world.members["1234567890"].state = MfaState.REGISTRATION_REQUIRED
    world.members["1234567890"].emptied = True
    world.members["1234567890"].recovery = {"AAAA-BBBB"}
    engine = SignIn(world.ports(), Purpose.PORTAL)
    out = engine.handle(Password("1234567890", "right"))
    assert isinstance(out, Prompt) and out.needs_recovery_code and not engine.registration_unlocked


def test_no_method_and_no_recovery_code_left_sends_to_the_help_desk(world: World) -> None:
    world.members["1234567890"].state = MfaState.REGISTRATION_REQUIRED
    world.members["1234567890"].emptied = True
    out = SignIn(world.ports(), Purpose.PORTAL).handle(Password("1234567890", "right"))
    assert english(out) == Finished(
        False,
        "needs_helpdesk",
        "You removed every verification method and have no recovery code left. Contact "
        "the IT help desk with your ID to get a one-time pass.",
        username="1234567890",
    )


def test_a_trusted_device_skips_the_code_and_says_so(world: World) -> None:
    world.devices["tok"] = ("1234567890", DeviceTrust("Chrome on Linux", NOW + timedelta(days=3)))
    out = SignIn(world.ports(), Purpose.VPN).handle(Password("1234567890", "right", "tok"))
    assert isinstance(out, Finished) and out.ok and out.trusted_device and out.factors == 2
    assert out.message == (
        "Welcome. You are connected. Code skipped: this device is trusted until 2026-10-04 09:00 JST"
        ' ("Chrome on Linux"). You can revoke it in the portal.'
    )


# --- PASSWORD --Passkey--> --------------------------------------------------------------------


def test_a_passkey_with_user_verification_is_both_factors(world: World) -> None:
    world.passkeys["key-1"] = ("1234567890", True)
    engine = SignIn(world.ports(), Purpose.PORTAL)
    out = engine.handle(Passkey(ASSERTION))
    assert english(out) == Finished(
        True,
        "ok",
        "Signed in.",
        username="1234567890",
        factors=2,
        decision=Decision(True, NOW),
        used_method="passkey",
    )
    assert world.decided == [("1234567890", Purpose.PORTAL, 2)]


def test_a_passkey_without_user_verification_is_one_factor_and_not_enough_for_the_vpn(world: World) -> None:
    world.passkeys["key-1"] = ("1234567890", False)
    out = SignIn(world.ports(), Purpose.VPN).handle(Passkey(ASSERTION))
    assert isinstance(out, Finished) and not out.ok and out.factors == 1 and out.code == "refused"


def test_an_unknown_passkey_is_refused_like_a_wrong_password(world: World) -> None:
    out = SignIn(world.ports(), Purpose.PORTAL).handle(Passkey(ASSERTION))
    assert english(out) == Finished(False, "bad_credentials", "The user name or password is incorrect.")
    assert world.decided == []


# --- SECOND_FACTOR --SendCode--> --------------------------------------------------------------


def test_send_code_says_where_it_went_and_stays_at_the_code_step(world: World) -> None:
    world.members["1234567890"].methods = (PHONE,)
    engine = at(world, Step.SECOND_FACTOR)
    out = engine.handle(SendCode(channel="voice"))
    assert english(out) == Prompt(
        Step.SECOND_FACTOR, "We are calling Mobile phone ***5678 to read you a code. Enter it below.", (PHONE,)
    )
    assert engine.step is Step.SECOND_FACTOR and world.sent == [("1234567890", "voice")]


def test_send_code_refused_shows_why(world: World) -> None:
    world.members["1234567890"].methods = (PHONE,)
    out = at(world, Step.SECOND_FACTOR).handle(SendCode(channel="sms"))
    assert isinstance(out, Prompt) and out.error == "this office phone can only receive a voice call, not sms"


# --- SECOND_FACTOR --Code--> ------------------------------------------------------------------


def test_the_right_code_finishes_and_the_vpn_welcomes(world: World) -> None:
    out = at(world, Step.SECOND_FACTOR).handle(Code("123456"))
    assert isinstance(out, Finished) and out.ok and out.message == "Welcome. You are connected."
    assert out.used_method == "totp" and out.factors == 2


def test_good_factors_but_a_vpn_refusal_carries_the_reasons(world: World) -> None:
    world.members["1234567890"].allowed = False
    out = at(world, Step.SECOND_FACTOR).handle(Code("123456"))
    assert isinstance(out, Finished) and not out.ok and out.code == "refused"
    assert out.message == "Your account is suspended, so it cannot use the VPN. Contact the IT help desk."


def test_a_wrong_code_asks_again(world: World) -> None:
    engine = at(world, Step.SECOND_FACTOR)
    out = engine.handle(Code("000000"))
    assert isinstance(out, Prompt) and out.error == "That code is not right. Check it and try again."
    assert engine.step is Step.SECOND_FACTOR


def test_a_replayed_code_says_wait_for_the_next(world: World) -> None:
    world.members["1234567890"].used.add("123456")
    out = at(world, Step.SECOND_FACTOR).handle(Code("123456"))
    assert isinstance(out, Prompt)
    assert out.error == "That code was already used. Wait for the next code in your app."


def test_the_failure_that_locks_ends_the_sign_in(world: World) -> None:
    world.lock_at_failure = 1
    out = at(world, Step.SECOND_FACTOR).handle(Code("000000"))
    assert isinstance(out, Finished) and out.code == "locked" and "locked until 2026-10-01 09:15 JST" in out.message


def test_a_throttled_code_step_is_not_checked(world: World) -> None:
    world.code_blocked = (Verdict(False, retry_at=NOW + timedelta(seconds=1)),)
    out = at(world, Step.SECOND_FACTOR).handle(Code("123456"))
    assert isinstance(out, Finished) and out.code == "throttled" and "Wait 1 second and" in out.message
    assert world.members["1234567890"].used == set()


def test_a_recovery_code_counts_down_in_the_message(world: World) -> None:
    world.members["1234567890"].recovery = {"AAAA-BBBB", "CCCC-DDDD"}
    out = at(world, Step.SECOND_FACTOR).handle(Code("AAAA-BBBB"))
    assert isinstance(out, Finished) and out.ok and out.recovery_left == 1
    assert out.message == "Welcome. You are connected. You used a recovery code; 1 of 10 left."


def test_trusting_the_device_issues_a_token_and_says_until_when(world: World) -> None:
    out = at(world, Step.SECOND_FACTOR).handle(Code("123456", trust_device=True, device_label="laptop"))
    assert isinstance(out, Finished) and out.device_token == "token-new"
    assert out.device_expires == NOW + timedelta(days=30)
    assert out.message.endswith("This device will not be asked for a code until 2026-10-31 09:00 JST.")


# --- REGISTRATION --RecoveryForRegistration--> ------------------------------------------------


def test_a_recovery_code_unlocks_registration(world: World) -> None:
    world.members["1234567890"].recovery = {"AAAA-BBBB"}
    engine = at(world, Step.REGISTRATION, Purpose.PORTAL)
    assert not engine.registration_unlocked
    out = engine.handle(RecoveryForRegistration("AAAA-BBBB"))
    assert isinstance(out, Prompt) and out.error is None and engine.registration_unlocked


def test_wrong_recovery_codes_ask_again_then_end_after_five(world: World) -> None:
    engine = at(world, Step.REGISTRATION, Purpose.PORTAL)
    for _ in range(4):
        out = engine.handle(RecoveryForRegistration("nope"))
        assert isinstance(out, Prompt) and out.needs_recovery_code
        assert out.error == "That recovery code is not right or was already used."
        engine = SignIn.restore(world.ports(), engine.snapshot(), None)  # the count survives a page change
    out = engine.handle(RecoveryForRegistration("nope"))
    assert english(out) == Finished(False, "bad_code", "Too many wrong recovery codes. Contact the IT help desk.")


# --- REGISTRATION --Registered--> -------------------------------------------------------------


def test_registered_with_a_confirmed_method_finishes_with_both_factors(world: World) -> None:
    out = at(world, Step.REGISTRATION, Purpose.PORTAL, unlocked=True).handle(Registered())
    assert isinstance(out, Finished) and out.ok and out.factors == 2 and out.used_method == "registration"


def test_registered_without_a_confirmed_method_is_illegal(world: World) -> None:
    world.members["1234567890"].state = MfaState.REGISTRATION_REQUIRED
    with pytest.raises(IllegalEvent, match="no confirmed method"):
        at(world, Step.REGISTRATION, Purpose.PORTAL, unlocked=True).handle(Registered())


# --- outside the table ------------------------------------------------------------------------


def test_snapshot_and_restore_keep_the_state_between_pages(world: World) -> None:
    engine = SignIn(world.ports(), Purpose.PORTAL, "192.0.2.1")
    engine.handle(Password("1234567890", "right"))
    again = SignIn.restore(world.ports(), engine.snapshot(), "192.0.2.1")
    assert (
        again.snapshot()
        == engine.snapshot()
        == {
            "purpose": "portal",
            "step": "second_factor",
            "username": "1234567890",
            "unlocked": False,
            "tries": 0,
        }
    )
    assert again.current_prompt().methods == (TOTP,)


def test_a_help_desk_pass_unlocks_only_a_registration(world: World) -> None:
    with pytest.raises(IllegalEvent):
        at(world, Step.SECOND_FACTOR).unlock_registration()
    engine = at(world, Step.REGISTRATION, Purpose.PORTAL)
    engine.unlock_registration()
    assert engine.registration_unlocked and engine.current_prompt().needs_recovery_code is False


# --- what VPN clients type into their one code field ------------------------------------------

from campusvpn.signin.typed_answer import typed_answer  # noqa: E402


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("123456", Code("123456", trust_device=False, device_label="c")),
        (" 123456 trust ", Code("123456", trust_device=True, device_label="c")),
        ("abcd-efgh remember", Code("abcd-efgh", trust_device=True, device_label="c")),
        ("SMS", SendCode(channel="sms")),
        ("call", SendCode(channel="voice")),
        ("trust", Code("trust", trust_device=False, device_label="c")),  # a lone word is taken as a code
        ("   ", None),
    ],
)
def test_a_typed_answer_becomes_the_same_event_for_every_vpn_protocol(typed: str, expected: object) -> None:
    assert typed_answer(typed, device_label="c") == expected
