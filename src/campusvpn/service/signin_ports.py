"""The sign-in engine's ports, implemented over the stored data.

The engine wraps each event in `step()`, one transaction for all the calls it makes then
(one to three), as before the ports existed; it never sees a database session. `start_signin` and `resume_signin`
are how front ends get an engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.core.phones import CHANNELS, PhoneKind
from campusvpn.core.policy import Decision
from campusvpn.service import audit, first_factor, mfa, throttling, trusted
from campusvpn.service.context import Context
from campusvpn.service.eligibility import decision_for
from campusvpn.service.errors import ServiceError
from campusvpn.signin.engine import SignIn, Step
from campusvpn.signin.ports import (
    Account,
    CodeOutcome,
    DeviceTrust,
    IssuedDevice,
    MethodChoice,
    PasskeyAssertion,
    PasskeyOutcome,
    PasswordOutcome,
    Ports,
    Purpose,
    SendOutcome,
    Settings,
    accepted,
)
from campusvpn.store.models import Passkey, User


def ports_for(ctx: Context) -> Ports:
    stored = StoredSignIn(ctx)
    settings = Settings(
        service_name=ctx.config.service.name,
        helpdesk=ctx.config.service.helpdesk,
        zone=ctx.policy.zone,
        recovery_code_count=ctx.config.mfa.recovery_code_count,
        usernames=ctx.usernames,
    )
    return Ports(settings, ctx.clock, stored.step, stored, stored, stored, stored)


def start_signin(
    ctx: Context,
    purpose: Purpose = Purpose.VPN,
    source: str | None = None,
    step: Step = Step.PASSWORD,
    username: str | None = None,
) -> SignIn:
    """A new sign-in (or, with `step` and `username`, a step-up for someone signed in)."""
    return SignIn(ports_for(ctx), purpose, source, step, username)


def resume_signin(ctx: Context, data: dict[str, Any], source: str | None) -> SignIn:
    """A sign-in from its `snapshot()` (the portal keeps it between pages)."""
    return SignIn.restore(ports_for(ctx), data, source)


@dataclass(frozen=True)
class Way:
    """One way to give the second factor, as "Sign in another way" lists it."""

    kind: str  # totp | sms | voice | recovery | passkey
    method_id: str | None = None
    label: str = ""  # an authenticator's own name, if it has one
    phone_kind: str | None = None  # mobile | alternate | office
    ending: str = ""  # the phone number's last two digits (enough to recognise, as in `masked`)

    @property
    def key(self) -> str:
        """What the page's button carries: `sms:ID`, `totp:ID`, `recovery`, `passkey`."""
        return f"{self.kind}:{self.method_id}" if self.method_id else self.kind


def ways(ctx: Context, username: str) -> tuple[Way, ...]:
    """Every way this user can give the second factor now: each confirmed method (a phone once per
    channel its kind can take), recovery codes while some are left, a passkey if one is registered.
    The default method comes first."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        out: list[Way] = []
        for m in mfa.confirmed(user):
            if m.kind == "totp":
                out.append(Way("totp", m.public_id, label=m.label or ""))
            elif m.phone_kind:
                for ch in CHANNELS[PhoneKind(m.phone_kind)]:
                    out.append(Way(ch.value, m.public_id, phone_kind=m.phone_kind, ending=(m.phone_number or "")[-2:]))
        if mfa.recovery_left(s, user):
            out.append(Way("recovery"))
        if s.scalars(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)).first() is not None:
            out.append(Way("passkey"))
        return tuple(out)


@dataclass
class StoredSignIn:
    """Every port over one context: credentials, second factors, trusted devices, decisions."""

    ctx: Context
    _step: Session | None = field(default=None, repr=False)

    @contextmanager
    def step(self) -> Iterator[None]:
        """One transaction for every call the engine makes while it handles one event."""
        with self.ctx.tx() as s:
            self._step = s
            try:
                yield
            finally:
                self._step = None

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        if self._step is not None:
            yield self._step
        else:
            with self.ctx.tx() as s:
                yield s

    # --- credentials --------------------------------------------------------------------------

    def check_password(
        self, username: str, password: str, *, purpose: Purpose, source: str | None, device_token: str | None = None
    ) -> PasswordOutcome:
        ctx, now = self.ctx, self.ctx.clock.now()

        def audit_password(s: Session, outcome: str, **detail: Any) -> None:
            audit.record(
                s,
                now,
                "signin.password",
                actor=username,
                subject=username,
                source=source,
                outcome=outcome,
                purpose=purpose.value,
                **detail,
            )

        with self._tx() as s:
            attempt = throttling.Attempt(
                "password", username, source, throttling.client_of(s, username, source, device_token, now)
            )
            blocked = throttling.blocked(s, attempt, now, ctx.password_throttle, ctx.source_throttle)
            if blocked:
                audit_password(s, "throttled", client=attempt.client.value)
                return PasswordOutcome(blocked=blocked)
            checked = first_factor.check(ctx, s, username, password)
            if checked.unavailable:  # not the user's failure: nothing counted
                audit_password(s, "unavailable", client=attempt.client.value, **checked.detail)
                return PasswordOutcome(unavailable=True)
            user = checked.user
            if user is None:
                throttling.count_failure(s, attempt, now, ctx.password_throttle, ctx.source_throttle)
                audit_password(s, "fail", client=attempt.client.value, **checked.detail)
                return PasswordOutcome()
            throttling.count_success(s, attempt)
            audit_password(s, "ok", **checked.detail)
            return PasswordOutcome(account=self._account(s, user))

    def check_passkey(self, assertion: PasskeyAssertion, *, source: str | None) -> PasskeyOutcome:
        with self._tx() as s:
            from campusvpn.service import passkeys  # WebAuthn (7 MB) only for the portal's passkey sign-ins

            return passkeys.check(self.ctx, s, assertion, source)

    # --- second factors -----------------------------------------------------------------------

    def account(self, username: str) -> Account:
        with self._tx() as s:
            return self._account(s, self._user(s, username))

    def send_code(self, username: str, method_id: str | None, channel: str | None, source: str | None) -> SendOutcome:
        with self._tx() as s:
            user = self._user(s, username)
            try:
                said = mfa.send_code(self.ctx, s, user, method_id, channel, source)
            except ServiceError as exc:
                return SendOutcome(self._choices(user), refused=exc.said)
            return SendOutcome(self._choices(user), said=said)

    def verify_second_factor(self, username: str, code: str, method_id: str | None, source: str | None) -> CodeOutcome:
        ctx, now = self.ctx, self.ctx.clock.now()
        with self._tx() as s:
            user = self._user(s, username)
            # A trusted device never gets here (it skips the code): only the address can be known.
            attempt = throttling.Attempt(
                "second", user.username, source, throttling.client_of(s, user.username, source, None, now)
            )
            blocked = throttling.blocked(s, attempt, now, ctx.second_factor_throttle, ctx.source_throttle)
            if blocked:
                return CodeOutcome(blocked=blocked)
            check = mfa.verify_code(ctx, s, user, code, method_id)
            if not check.ok:
                # A code this user already used is the owner's own (openconnect signing in again
                # within one 30-second step): "wait for the next code", not a failure.
                locked_until = (
                    None
                    if check.replayed
                    else throttling.count_failure(s, attempt, now, ctx.second_factor_throttle, ctx.source_throttle)
                )
                audit.record(
                    s,
                    now,
                    "signin.second_factor",
                    actor=user.username,
                    subject=user.username,
                    source=source,
                    outcome="replay" if check.replayed else "fail",
                    client=attempt.client.value,
                )
                return CodeOutcome(
                    replayed=check.replayed,
                    spent_recovery=check.spent_recovery,
                    locked_until=locked_until,
                    methods=self._choices(user) if locked_until is None else (),
                )
            throttling.count_success(s, attempt)
            audit.record(
                s,
                now,
                "signin.second_factor",
                actor=user.username,
                subject=user.username,
                source=source,
                method=check.method,
            )
            return CodeOutcome(ok=True, method=check.method, recovery_left=check.recovery_left)

    def use_recovery_code(self, username: str, code: str) -> int | None:
        with self._tx() as s:
            return mfa.use_recovery_code(self.ctx, s, self._user(s, username), code, self.ctx.clock.now())

    # --- trusted devices ----------------------------------------------------------------------

    def check_device(self, username: str, token: str, source: str | None) -> DeviceTrust | None:
        with self._tx() as s:
            device = trusted.check_device(self.ctx, s, self._user(s, username), token, source)
            return DeviceTrust(device.label, device.expires_at) if device is not None else None

    def trust_device(self, username: str, label: str, source: str | None) -> IssuedDevice:
        with self._tx() as s:
            issued = trusted.trust_device(self.ctx, s, self._user(s, username), label, source)
            return IssuedDevice(issued.token, issued.expires_at)

    # --- decisions ----------------------------------------------------------------------------

    def decide(self, username: str, *, purpose: Purpose, factors: int, source: str | None) -> Decision:
        with self._tx() as s:
            user = self._user(s, username)
            decision = decision_for(self.ctx, s, user)
            audit.record(
                s,
                self.ctx.clock.now(),
                "signin.decision",
                actor=user.username,
                subject=user.username,
                source=source,
                outcome="ok" if accepted(purpose, decision, factors) else "refused",
                purpose=purpose.value,
                reasons=[r.code for r in decision.reasons],
                factors=factors,
            )
            return decision

    # --- helpers ------------------------------------------------------------------------------

    def _user(self, s: Session, username: str) -> User:
        return s.scalars(select(User).where(User.username == username)).one()

    def _account(self, s: Session, user: User) -> Account:
        emptied = user.mfa_emptied_at is not None and not mfa.may_reregister_freely(self.ctx, user)
        return Account(
            user.username,
            mfa.state_of(user),
            self._choices(user),
            mfa_emptied=emptied,
            recovery_left=mfa.recovery_left(s, user) if emptied else None,
        )

    def _choices(self, user: User) -> tuple[MethodChoice, ...]:
        out = []
        for m in mfa.confirmed(user):
            channels = tuple(c.value for c in CHANNELS[PhoneKind(m.phone_kind)]) if m.phone_kind else ()
            out.append(MethodChoice(m.public_id, m.kind, mfa.method_label(m), channels, m.is_default))
        return tuple(out)
