"""Sign-in as an explicit state machine.

A front end feeds it events (what the user typed or chose) and shows what it returns: a
`Prompt` for the next step or a `Finished` outcome. It does no network I/O and reads time
only through the context's clock, so the gateway, the portal, RADIUS and `campusvpn verify`
behave identically and every path is testable without a network.

    PASSWORD --Password--> SECOND_FACTOR | REGISTRATION | DONE
    SECOND_FACTOR --SendCode--> SECOND_FACTOR
    SECOND_FACTOR --Code--> SECOND_FACTOR (wrong, may retry) | DONE
    REGISTRATION --RecoveryForRegistration--> REGISTRATION (unlocked) | DONE (out of attempts)
    REGISTRATION --Registered--> DONE
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.core.calendar import format_local
from campusvpn.core.phones import CHANNELS, PhoneKind
from campusvpn.core.policy import Decision, MfaState
from campusvpn.core.throttle import Counter, ThrottleRule, Verdict
from campusvpn.core.usernames import InvalidUsername
from campusvpn.service import audit, mfa, throttling, trusted
from campusvpn.service.context import Context
from campusvpn.service.eligibility import decision_for
from campusvpn.service.errors import ServiceError
from campusvpn.store.models import User


class Step(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 - a step name, not a secret
    SECOND_FACTOR = "second_factor"
    REGISTRATION = "registration"
    DONE = "done"


class Purpose(enum.StrEnum):
    VPN = "vpn"  # the result must allow VPN use
    PORTAL = "portal"  # a signed-in user may see why the VPN refuses them, and register methods


@dataclass(frozen=True)
class Password:
    username: str
    password: str
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


Event = Password | SendCode | Code | RecoveryForRegistration | Registered


@dataclass(frozen=True)
class MethodChoice:
    id: str
    kind: str  # totp | phone
    label: str
    channels: tuple[str, ...] = ()
    default: bool = False


@dataclass(frozen=True)
class Prompt:
    step: Step
    message: str
    methods: tuple[MethodChoice, ...] = ()
    needs_recovery_code: bool = False
    error: str | None = None  # why the last answer was not accepted


@dataclass(frozen=True)
class Finished:
    ok: bool  # authenticated, and (for VPN) allowed
    code: str  # ok | refused | bad_credentials | throttled | locked | bad_code | needs_registration | ...
    message: str  # what the user's client shows
    username: str | None = None
    factors: int = 0
    decision: Decision | None = None
    device_token: str | None = None
    device_expires: datetime | None = None
    used_method: str | None = None
    recovery_left: int | None = None
    trusted_device: bool = False


Output = Prompt | Finished


class IllegalEvent(Exception):
    """An event that makes no sense in the current step (a front-end bug or a forged request)."""


GENERIC_BAD_LOGIN = "The user name or password is incorrect."
MAX_REGISTRATION_TRIES = 5


@dataclass
class SignIn:
    ctx: Context
    purpose: Purpose = Purpose.VPN
    source: str | None = None
    step: Step = Step.PASSWORD
    username: str | None = None
    _device_token: str | None = None
    _registration_unlocked: bool = False
    _registration_tries: int = 0
    _result: Finished | None = field(default=None, repr=False)

    def start(self) -> Prompt:
        return Prompt(Step.PASSWORD, f"Sign in to {self.ctx.config.service.name} with your user name and password.")

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
    def restore(cls, ctx: Context, data: dict[str, Any], source: str | None) -> SignIn:
        engine = cls(ctx, Purpose(data["purpose"]), source, Step(data["step"]), data.get("username"))
        engine._registration_unlocked = bool(data.get("unlocked"))
        engine._registration_tries = int(data.get("tries", 0))
        return engine

    def current_prompt(self) -> Prompt:
        """What to ask for at the current step (a front end showing the page again)."""
        if self.step is Step.SECOND_FACTOR:
            with self.ctx.tx() as s:
                return self._second_factor_prompt(self._user(s), None)
        if self.step is Step.REGISTRATION:
            locked = not self._registration_unlocked
            return Prompt(Step.REGISTRATION, self._registration_text(locked), needs_recovery_code=locked)
        return self.start()

    def unlock_registration(self) -> None:
        """A help-desk one-time pass was accepted (checked by the caller) in place of a recovery code."""
        if self.step is not Step.REGISTRATION:
            raise IllegalEvent("no registration in progress")
        self._registration_unlocked = True

    def handle(self, event: Event) -> Output:
        table = {
            (Step.PASSWORD, Password): self._on_password,
            (Step.SECOND_FACTOR, SendCode): self._on_send,
            (Step.SECOND_FACTOR, Code): self._on_code,
            (Step.REGISTRATION, RecoveryForRegistration): self._on_registration_recovery,
            (Step.REGISTRATION, Registered): self._on_registered,
        }
        handler = table.get((self.step, type(event)))
        if handler is None:
            raise IllegalEvent(f"{type(event).__name__} is not expected at step {self.step.value}")
        result: Output = handler(event)  # type: ignore[operator]
        return result

    # --- steps ------------------------------------------------------------------------------

    def _on_password(self, ev: Password) -> Output:
        ctx, now = self.ctx, self.ctx.clock.now()
        try:
            name = ctx.usernames.normalise(ev.username)
        except InvalidUsername as exc:
            return self._prompt_again(Step.PASSWORD, str(exc).capitalize() + ".")
        user_key, src_key = throttling.keys("password", name, self.source)
        with ctx.tx() as s:
            blocked = self._throttled(s, user_key, src_key, now, ctx.password_throttle)
            if blocked is not None:
                self._audit_password(s, name, now, "throttled")
                return blocked
            user = s.scalars(select(User).where(User.username == name)).one_or_none()
            ok = ctx.hasher.verify(user.password_hash if user else None, ev.password)
            if not ok or user is None:
                self._failed(s, user_key, src_key, now, ctx.password_throttle)
                self._audit_password(s, name, now, "fail", known_user=user is not None)
                return self._finish(Finished(False, "bad_credentials", GENERIC_BAD_LOGIN))
            throttling.succeeded(s, user_key)
            if user.password_hash and ctx.hasher.needs_rehash(user.password_hash):
                user.password_hash = ctx.hasher.hash(ev.password)  # Argon2 parameters changed in config
            self._audit_password(s, name, now, "ok")
            self.username = user.username
            state = mfa.state_of(user)
            if state is MfaState.REGISTRATION_REQUIRED and self.purpose is Purpose.PORTAL:
                return self._to_registration(s, user)
            if state is not MfaState.ACTIVE:
                return self._decide(s, user, factors=1)
            device = trusted.check_device(ctx, s, user, ev.device_token or "", self.source)
            if device is not None:
                note = (
                    f"Code skipped: this device is trusted until {format_local(device.expires_at, ctx.policy.zone)}"
                    f' ("{device.label}"). You can revoke it in the portal.'
                )
                return self._decide(s, user, factors=2, trusted_device=True, note=note)
            self.step = Step.SECOND_FACTOR
            return self._second_factor_prompt(user, None)

    def _on_send(self, ev: SendCode) -> Output:
        with self.ctx.tx() as s:
            user = self._user(s)
            try:
                said = mfa.send_code(self.ctx, s, user, ev.method_id, ev.channel, self.source)
            except ServiceError as exc:
                return self._second_factor_prompt(user, str(exc))
            return Prompt(Step.SECOND_FACTOR, said + " Enter it below.", self._choices(user))

    def _on_code(self, ev: Code) -> Output:
        ctx, now = self.ctx, self.ctx.clock.now()
        with ctx.tx() as s:
            user = self._user(s)
            user_key, src_key = throttling.keys("second", user.username, self.source)
            blocked = self._throttled(s, user_key, src_key, now, ctx.second_factor_throttle)
            if blocked is not None:
                return blocked
            check = mfa.verify_code(ctx, s, user, ev.code, ev.method_id)
            if not check.ok:
                counter = self._failed(s, user_key, src_key, now, ctx.second_factor_throttle)
                audit.record(
                    s,
                    now,
                    "signin.second_factor",
                    actor=user.username,
                    subject=user.username,
                    source=self.source,
                    outcome="replay" if check.replayed else "fail",
                )
                why = (
                    "That code was already used. Wait for the next code in your app."
                    if check.replayed
                    else "That code is not right. Check it and try again."
                )
                if counter.locked_until is not None:
                    return self._finish(Finished(False, "locked", self._locked_message(counter.locked_until)))
                return self._second_factor_prompt(user, why)
            throttling.succeeded(s, user_key)
            audit.record(
                s,
                now,
                "signin.second_factor",
                actor=user.username,
                subject=user.username,
                source=self.source,
                method=check.method,
            )
            notes = []
            if check.method == "recovery":
                notes.append(
                    f"You used a recovery code; {check.recovery_left} of {ctx.config.mfa.recovery_code_count} left."
                )
            issued = None
            if ev.trust_device:
                issued = trusted.trust_device(ctx, s, user, ev.device_label, self.source)
                notes.append(
                    f"This device will not be asked for a code until "
                    f"{format_local(issued.expires_at, ctx.policy.zone)}."
                )
            return self._decide(
                s,
                user,
                factors=2,
                note=" ".join(notes) or None,
                used=check.method,
                recovery_left=check.recovery_left,
                issued=issued,
            )

    def _on_registration_recovery(self, ev: RecoveryForRegistration) -> Output:
        with self.ctx.tx() as s:
            user = self._user(s)
            left = mfa.use_recovery_code(self.ctx, s, user, ev.code, self.ctx.clock.now())
            if left is None:
                self._registration_tries += 1
                if self._registration_tries >= MAX_REGISTRATION_TRIES:
                    return self._finish(
                        Finished(
                            False,
                            "bad_code",
                            f"Too many wrong recovery codes. Contact {self.ctx.config.service.helpdesk}.",
                        )
                    )
                return Prompt(
                    Step.REGISTRATION,
                    self._registration_text(True),
                    needs_recovery_code=True,
                    error="That recovery code is not right or was already used.",
                )
            self._registration_unlocked = True
            return Prompt(Step.REGISTRATION, self._registration_text(False))

    def _on_registered(self, _ev: Registered) -> Output:
        with self.ctx.tx() as s:
            user = self._user(s)
            if mfa.state_of(user) is not MfaState.ACTIVE:
                raise IllegalEvent("Registered sent but the user still has no confirmed method")
            return self._decide(s, user, factors=2, used="registration")

    # --- helpers ----------------------------------------------------------------------------

    def _to_registration(self, s: Session, user: User) -> Output:
        self.step = Step.REGISTRATION
        needs = user.mfa_emptied_at is not None
        if needs and mfa.recovery_left(s, user) == 0:
            return self._finish(
                Finished(
                    False,
                    "needs_helpdesk",
                    "You removed every verification method and have no recovery code left. Contact "
                    f"{self.ctx.config.service.helpdesk} with your ID to get a one-time pass.",
                    username=user.username,
                )
            )
        self._registration_unlocked = not needs
        return Prompt(Step.REGISTRATION, self._registration_text(needs), needs_recovery_code=needs)

    def _registration_text(self, needs_recovery: bool) -> str:
        if needs_recovery:
            return "You removed every verification method. Enter one of your recovery codes to register a new one."
        return "Register a verification method: an authenticator app, or a phone for text or voice codes."

    @property
    def registration_unlocked(self) -> bool:
        return self.step is Step.REGISTRATION and self._registration_unlocked

    def _decide(
        self,
        s: Session,
        user: User,
        *,
        factors: int,
        note: str | None = None,
        used: str | None = None,
        recovery_left: int | None = None,
        issued: trusted.IssuedDevice | None = None,
        trusted_device: bool = False,
    ) -> Finished:
        decision = decision_for(self.ctx, s, user)
        allowed = decision.allowed
        if self.purpose is Purpose.VPN:
            ok = allowed and factors == 2
            message = "Welcome. You are connected." if ok else decision.user_message()
            code = "ok" if ok else "refused"
        else:
            ok = True
            message = "Signed in."
            code = "ok"
        if note:
            message = f"{message} {note}"
        audit.record(
            s,
            self.ctx.clock.now(),
            "signin.decision",
            actor=user.username,
            subject=user.username,
            source=self.source,
            outcome="ok" if ok else "refused",
            purpose=self.purpose.value,
            reasons=[r.code for r in decision.reasons],
            factors=factors,
        )
        return self._finish(
            Finished(
                ok,
                code,
                message,
                username=user.username,
                factors=factors,
                decision=decision,
                device_token=issued.token if issued else None,
                device_expires=issued.expires_at if issued else None,
                used_method=used,
                recovery_left=recovery_left,
                trusted_device=trusted_device,
            )
        )

    def _throttled(
        self, s: Session, user_key: str, src_key: str | None, now: datetime, rule: ThrottleRule
    ) -> Finished | None:
        verdicts: list[Verdict] = [throttling.verdict(s, user_key, now, rule)]
        if src_key:
            verdicts.append(throttling.verdict(s, src_key, now, self.ctx.source_throttle))
        blocked = [v for v in verdicts if not v.allowed]
        if not blocked:
            return None
        if any(v.locked for v in blocked):
            until = max(v.retry_at for v in blocked if v.locked and v.retry_at)
            return self._finish(Finished(False, "locked", self._locked_message(until)))
        until = max(v.retry_at for v in blocked if v.retry_at)
        secs = max(1, int((until - now).total_seconds() + 0.999))
        return self._finish(
            Finished(
                False,
                "throttled",
                f"Too many failed attempts. Wait {secs} second{'s' if secs != 1 else ''} "
                f"(until {format_local(until, self.ctx.policy.zone)}) and try again.",
            )
        )

    def _failed(self, s: Session, user_key: str, src_key: str | None, now: datetime, rule: ThrottleRule) -> Counter:
        """Count a failure against the user (with `rule`) and against the source address."""
        if src_key:
            throttling.failed(s, src_key, now, self.ctx.source_throttle)
        return throttling.failed(s, user_key, now, rule)

    def _audit_password(self, s: Session, name: str, now: datetime, outcome: str, **detail: Any) -> None:
        audit.record(
            s,
            now,
            "signin.password",
            actor=name,
            subject=name,
            source=self.source,
            outcome=outcome,
            purpose=self.purpose.value,
            **detail,
        )

    def _locked_message(self, until: datetime) -> str:
        return (
            f"Too many failed attempts: sign-in is locked until {format_local(until, self.ctx.policy.zone)}. "
            f"If this was not you, contact {self.ctx.config.service.helpdesk}."
        )

    def _user(self, s: Session) -> User:
        assert self.username is not None
        return s.scalars(select(User).where(User.username == self.username)).one()

    def _choices(self, user: User) -> tuple[MethodChoice, ...]:
        out = []
        for m in mfa.confirmed(user):
            channels = tuple(c.value for c in CHANNELS[PhoneKind(m.phone_kind)]) if m.phone_kind else ()
            out.append(MethodChoice(m.public_id, m.kind, mfa.method_label(m), channels, m.is_default))
        return tuple(out)

    def _second_factor_prompt(self, user: User, error: str | None) -> Prompt:
        choices = self._choices(user)
        first = choices[0]
        if first.kind == "totp":
            msg = "Enter the 6-digit code from your authenticator app, or a recovery code."
        else:
            msg = f"Ask for a code to be sent to your {first.label}, then enter it; or enter a recovery code."
        return Prompt(Step.SECOND_FACTOR, msg, choices, error=error)

    def _prompt_again(self, step: Step, error: str) -> Prompt:
        return Prompt(step, self.start().message if step is Step.PASSWORD else "", error=error)

    def _finish(self, result: Finished) -> Finished:
        self.step = Step.DONE
        self._result = result
        return result
