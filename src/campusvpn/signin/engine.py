"""Sign-in as an explicit state machine.

A front end feeds it events (what the user typed or chose) and shows what it returns: a
`Prompt` for the next step or a `Finished` outcome. It does no I/O itself: storage, hashing,
throttling, trusted devices, audit and the eligibility decision come in through `Ports`
(implemented by `service.signin_ports`), and time through their clock. So the gateway, the
portal, RADIUS and `campusvpn verify` behave identically and every path is testable alone.

    PASSWORD --Password--> SECOND_FACTOR | REGISTRATION | DONE
    PASSWORD --Passkey--> DONE
    PASSWORD --Federated--> SECOND_FACTOR | REGISTRATION | DONE (the identity provider's MFA trusted)
    SECOND_FACTOR --SendCode--> SECOND_FACTOR
    SECOND_FACTOR --Code--> SECOND_FACTOR (wrong, may retry) | DONE
    REGISTRATION --RecoveryForRegistration--> REGISTRATION (unlocked) | DONE (out of attempts)
    REGISTRATION --Registered--> DONE
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campusvpn.core.calendar import first_minute_from
from campusvpn.core.policy import Decision, MfaState
from campusvpn.core.throttle import Verdict
from campusvpn.core.usernames import InvalidUsername
from campusvpn.signin.ports import (
    Account,
    IssuedDevice,
    MethodChoice,
    PasskeyAssertion,
    Ports,
    Purpose,
    accepted,
)
from campusvpn.texts.codes import Code as Text  # `Code` is the event of typing a code
from campusvpn.texts.message import Message, Said, say
from campusvpn.texts.render import render


class Step(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 - a step name, not a secret
    SECOND_FACTOR = "second_factor"
    REGISTRATION = "registration"
    DONE = "done"


@dataclass(frozen=True)
class Password:
    username: str
    password: str
    device_token: str | None = None


@dataclass(frozen=True)
class Passkey:
    """A WebAuthn assertion in place of password and code; with user verification it is both factors."""

    assertion: PasskeyAssertion


@dataclass(frozen=True)
class Federated:
    """The first factor given at the university's identity provider (its token already checked).
    `idp_mfa`: the evidence that its MFA is trusted as the second factor too, else None."""

    username: str
    idp_mfa: str | None = None
    device_token: str | None = None


@dataclass(frozen=True)
class SendCode:
    method_id: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class Code:
    code: str
    method_id: str | None = None
    trust_device: bool = False
    device_label: str = ""


@dataclass(frozen=True)
class RecoveryForRegistration:
    code: str


@dataclass(frozen=True)
class Registered:
    pass


Event = Password | Passkey | Federated | SendCode | Code | RecoveryForRegistration | Registered
EVENTS: tuple[type[Event], ...] = (Password, Passkey, Federated, SendCode, Code, RecoveryForRegistration, Registered)


@dataclass(frozen=True)
class Prompt:
    step: Step
    said: Said  # what to ask; front ends render it (texts.render) in their reader's language
    methods: tuple[MethodChoice, ...] = ()
    needs_recovery_code: bool = False
    why: Said = ()  # why the last answer was not accepted; () when it was

    @property
    def message(self) -> str:
        return render(self.said, "en")

    @property
    def error(self) -> str | None:
        """`why` in English (the CLI), None when nothing was wrong."""
        return render(self.why, "en") if self.why else None


@dataclass(frozen=True)
class Finished:
    ok: bool  # authenticated, and (for VPN) allowed
    code: str  # ok | refused | bad_credentials | unavailable | throttled | locked | bad_code | needs_registration | ...
    said: Said  # what the user's client shows, rendered by the front end in the reader's language
    username: str | None = None
    factors: int = 0
    decision: Decision | None = None
    device_token: str | None = None
    device_expires: datetime | None = None
    used_method: str | None = None
    recovery_left: int | None = None
    trusted_device: bool = False

    @property
    def message(self) -> str:
        """In English (the CLI, logs)."""
        return render(self.said, "en")


Output = Prompt | Finished


class IllegalEvent(Exception):
    """An event that makes no sense in the current step (a front-end bug or a forged request)."""


MAX_REGISTRATION_TRIES = 5
BAD_LOGIN = (say(Text.ENGINE_BAD_CREDENTIALS),)  # the same for a wrong name, password or passkey


@dataclass
class SignIn:
    ports: Ports
    purpose: Purpose = Purpose.VPN
    source: str | None = None
    step: Step = Step.PASSWORD
    username: str | None = None
    _registration_unlocked: bool = False
    _registration_tries: int = 0
    _result: Finished | None = field(default=None, repr=False)

    def start(self) -> Prompt:
        return Prompt(Step.PASSWORD, (say(Text.ENGINE_START, service=self.ports.settings.service_name),))

    @property
    def result(self) -> Finished | None:
        return self._result

    def snapshot(self) -> dict[str, Any]:
        """The state between two steps, for front ends that keep it outside the process (the portal)."""
        return {
            "purpose": self.purpose.value,
            "step": self.step.value,
            "username": self.username,
            "unlocked": self._registration_unlocked,
            "tries": self._registration_tries,
        }

    @classmethod
    def restore(cls, ports: Ports, data: dict[str, Any], source: str | None) -> SignIn:
        engine = cls(ports, Purpose(data["purpose"]), source, Step(data["step"]), data.get("username"))
        engine._registration_unlocked = bool(data.get("unlocked"))
        engine._registration_tries = int(data.get("tries", 0))
        return engine

    def current_prompt(self) -> Prompt:
        """What to ask for at the current step (a front end showing the page again)."""
        if self.step is Step.SECOND_FACTOR:
            return self._second_factor_prompt(self._account().methods, None)
        if self.step is Step.REGISTRATION:
            locked = not self._registration_unlocked
            return Prompt(Step.REGISTRATION, (self._registration_text(locked),), needs_recovery_code=locked)
        return self.start()

    def unlock_registration(self) -> None:
        """A help-desk one-time pass was accepted (checked by the caller) in place of a recovery code."""
        if self.step is not Step.REGISTRATION:
            raise IllegalEvent("no registration in progress")
        self._registration_unlocked = True

    @property
    def registration_unlocked(self) -> bool:
        return self.step is Step.REGISTRATION and self._registration_unlocked

    def handle(self, event: Event) -> Output:
        handler = TRANSITIONS.get((self.step, type(event)))
        if handler is None:
            raise IllegalEvent(f"{type(event).__name__} is not expected at step {self.step.value}")
        with self.ports.step():
            return handler(self, event)

    # --- steps ------------------------------------------------------------------------------

    def _on_password(self, ev: Password) -> Output:
        settings, now = self.ports.settings, self.ports.clock.now()
        try:
            name = settings.usernames.normalise(ev.username)
        except InvalidUsername as exc:
            return Prompt(Step.PASSWORD, self.start().said, why=(exc.said,))
        checked = self.ports.credentials.check_password(
            name, ev.password, purpose=self.purpose, source=self.source, device_token=ev.device_token
        )
        if checked.blocked:
            return self._throttled(checked.blocked, now)
        if checked.unavailable:
            return self._finish(Finished(False, "unavailable", (say(Text.ENGINE_UNAVAILABLE),)))
        account = checked.account
        if account is None:
            return self._finish(Finished(False, "bad_credentials", BAD_LOGIN))
        return self._after_first_factor(account, ev.device_token)

    def _on_federated(self, ev: Federated) -> Output:
        account = self.ports.second_factors.account(ev.username)
        if ev.idp_mfa and account.mfa_state is not MfaState.REGISTRATION_REQUIRED:
            self.username = account.username
            return self._decide(factors=2, used="idp_mfa")
        return self._after_first_factor(account, ev.device_token)

    def _after_first_factor(self, account: Account, device_token: str | None) -> Output:
        settings = self.ports.settings
        self.username = account.username
        if account.mfa_state is MfaState.REGISTRATION_REQUIRED and self.purpose is Purpose.PORTAL:
            # Registration skips the decision, but a closed account must be told so instead.
            decision = self.ports.decisions.decide(
                account.username, purpose=self.purpose, factors=1, source=self.source
            )
            if not accepted(self.purpose, decision, 1):
                return self._finish(
                    Finished(False, "account_revoked", _closed(decision), account.username, 1, decision)
                )
            return self._to_registration(account)
        if account.mfa_state is not MfaState.ACTIVE:
            return self._decide(factors=1)
        device = self.ports.devices.check_device(account.username, device_token or "", self.source)
        if device is not None:
            note = say(Text.ENGINE_CODE_SKIPPED, until=device.expires_at.astimezone(settings.zone), device=device.label)
            return self._decide(factors=2, trusted_device=True, notes=(note,))
        self.step = Step.SECOND_FACTOR
        return self._second_factor_prompt(account.methods, None)

    def _on_passkey(self, ev: Passkey) -> Output:
        checked = self.ports.credentials.check_passkey(ev.assertion, source=self.source)
        if checked.username is None:
            return self._finish(Finished(False, "bad_credentials", BAD_LOGIN))
        self.username = checked.username
        # The device and its PIN or biometric: two factors, and phishing-resistant.
        return self._decide(factors=2 if checked.user_verified else 1, used="passkey")

    def _on_send(self, ev: SendCode) -> Output:
        sent = self.ports.second_factors.send_code(self._name(), ev.method_id, ev.channel, self.source)
        if sent.said is None:
            return self._second_factor_prompt(sent.methods, sent.refused)
        return Prompt(Step.SECOND_FACTOR, (say(Text.ENGINE_CODE_SENT, sent=sent.said),), sent.methods)

    def _on_code(self, ev: Code) -> Output:
        username, now = self._name(), self.ports.clock.now()
        check = self.ports.second_factors.verify_second_factor(username, ev.code, ev.method_id, self.source)
        if check.blocked:
            return self._throttled(check.blocked, now)
        if not check.ok:
            if check.locked_until is not None:
                return self._finish(Finished(False, "locked", self._locked_message(check.locked_until)))
            if check.replayed:
                why = Text.ENGINE_REPLAYED_CODE
            elif check.spent_recovery:
                why = Text.ENGINE_SPENT_RECOVERY_CODE
            else:
                why = Text.ENGINE_WRONG_CODE
            return self._second_factor_prompt(check.methods, say(why))
        settings = self.ports.settings
        notes = []
        if check.method == "recovery":
            notes.append(
                say(Text.ENGINE_RECOVERY_USED, left=check.recovery_left or 0, total=settings.recovery_code_count)
            )
        issued = None
        if ev.trust_device:
            issued = self.ports.devices.trust_device(username, ev.device_label, self.source)
            notes.append(say(Text.ENGINE_DEVICE_TRUSTED, until=issued.expires_at.astimezone(settings.zone)))
        return self._decide(
            factors=2,
            notes=tuple(notes),
            used=check.method,
            recovery_left=check.recovery_left,
            issued=issued,
        )

    def _on_registration_recovery(self, ev: RecoveryForRegistration) -> Output:
        left = self.ports.second_factors.use_recovery_code(self._name(), ev.code)
        if left is None:
            self._registration_tries += 1
            if self._registration_tries >= MAX_REGISTRATION_TRIES:
                return self._finish(
                    Finished(
                        False, "bad_code", (say(Text.ENGINE_TOO_MANY_RECOVERY, helpdesk=self.ports.settings.helpdesk),)
                    )
                )
            return Prompt(
                Step.REGISTRATION,
                (self._registration_text(True),),
                needs_recovery_code=True,
                why=(say(Text.ENGINE_RECOVERY_WRONG),),
            )
        self._registration_unlocked = True
        return Prompt(Step.REGISTRATION, (self._registration_text(False),))

    def _on_registered(self, _ev: Registered) -> Output:
        if self._account().mfa_state is not MfaState.ACTIVE:
            raise IllegalEvent("Registered sent but the user still has no confirmed method")
        return self._decide(factors=2, used="registration")

    # --- helpers ----------------------------------------------------------------------------

    def _to_registration(self, account: Account) -> Output:
        self.step = Step.REGISTRATION
        needs = account.mfa_emptied
        if needs and account.recovery_left == 0:
            return self._finish(
                Finished(
                    False,
                    "needs_helpdesk",
                    (say(Text.ENGINE_NEEDS_HELPDESK, helpdesk=self.ports.settings.helpdesk),),
                    username=account.username,
                )
            )
        self._registration_unlocked = not needs
        return Prompt(Step.REGISTRATION, (self._registration_text(needs),), needs_recovery_code=needs)

    def _registration_text(self, needs_recovery: bool) -> Message:
        return say(Text.ENGINE_REGISTRATION_LOCKED if needs_recovery else Text.ENGINE_REGISTRATION)

    def _decide(
        self,
        *,
        factors: int,
        notes: Said = (),
        used: str | None = None,
        recovery_left: int | None = None,
        issued: IssuedDevice | None = None,
        trusted_device: bool = False,
    ) -> Finished:
        username = self._name()
        decision = self.ports.decisions.decide(username, purpose=self.purpose, factors=factors, source=self.source)
        ok = accepted(self.purpose, decision, factors)
        said: Said
        if self.purpose is Purpose.VPN:
            said = (say(Text.ENGINE_WELCOME),) if ok else decision.said
            code = "ok" if ok else "refused"
        elif ok:
            said, code = (say(Text.ENGINE_SIGNED_IN),), "ok"
        else:  # a closed account: the reason, not "wrong password"
            said, code = _closed(decision), "account_revoked"
        return self._finish(
            Finished(
                ok,
                code,
                said + notes,
                username=username,
                factors=factors,
                decision=decision,
                device_token=issued.token if issued else None,
                device_expires=issued.expires_at if issued else None,
                used_method=used,
                recovery_left=recovery_left,
                trusted_device=trusted_device,
            )
        )

    def _throttled(self, blocked: tuple[Verdict, ...], now: datetime) -> Finished:
        if any(v.locked for v in blocked):
            until = max(v.retry_at for v in blocked if v.locked and v.retry_at)
            return self._finish(Finished(False, "locked", self._locked_message(until)))
        until = max(v.retry_at for v in blocked if v.retry_at)
        secs = max(1, int((until - now).total_seconds() + 0.999))
        if secs < 60:  # a clock time adds nothing to a wait of seconds (and its minute looks wrong)
            wait = say(Text.ENGINE_THROTTLED_SECONDS, n=secs)
        else:
            wait = say(Text.ENGINE_THROTTLED_MINUTES, n=-(-secs // 60), until=self._from(until))
        return self._finish(Finished(False, "throttled", (wait,)))

    def _locked_message(self, until: datetime) -> Said:
        return (say(Text.ENGINE_LOCKED, until=self._from(until), helpdesk=self.ports.settings.helpdesk),)

    def _from(self, at: datetime) -> datetime:
        """When something becomes possible: its first whole minute, in the service's zone."""
        return first_minute_from(at).astimezone(self.ports.settings.zone)

    def _name(self) -> str:
        assert self.username is not None
        return self.username

    def _account(self) -> Account:
        return self.ports.second_factors.account(self._name())

    def _second_factor_prompt(self, choices: tuple[MethodChoice, ...], why: Message | None) -> Prompt:
        first = choices[0]
        if first.kind == "totp":
            msg = say(Text.ENGINE_PROMPT_TOTP)
        else:
            msg = say(Text.ENGINE_PROMPT_PHONE, method=first.label)
        return Prompt(Step.SECOND_FACTOR, (msg,), choices, why=(why,) if why else ())

    def _finish(self, result: Finished) -> Finished:
        self.step = Step.DONE
        self._result = result
        return result


def _closed(decision: Decision) -> Said:
    return tuple(r.said for r in decision.reasons if r.code == "account_revoked")


# The transition table: (step, event type) -> handler. Every other pair raises IllegalEvent.
TRANSITIONS: dict[tuple[Step, type[Event]], Callable[[SignIn, Any], Output]] = {
    (Step.PASSWORD, Password): SignIn._on_password,
    (Step.PASSWORD, Passkey): SignIn._on_passkey,
    (Step.PASSWORD, Federated): SignIn._on_federated,
    (Step.SECOND_FACTOR, SendCode): SignIn._on_send,
    (Step.SECOND_FACTOR, Code): SignIn._on_code,
    (Step.REGISTRATION, RecoveryForRegistration): SignIn._on_registration_recovery,
    (Step.REGISTRATION, Registered): SignIn._on_registered,
}
