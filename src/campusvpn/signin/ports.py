"""What the sign-in engine needs from the world, as small interfaces it is given.

The engine decides what happens next and what the user reads; these ports look things up and
record them. They are sized to a step (one to three calls per event), and the engine wraps each
event in `Ports.step()`, one unit of work (one transaction in `service.signin_ports`), so a front
end can run a whole step off its event loop (Argon2id is heavy) and tests can drive the engine
with in-memory implementations."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from campusvpn.core.policy import Decision, MfaState
from campusvpn.core.throttle import Verdict
from campusvpn.core.usernames import UsernameRule
from campusvpn.platform.clock import Clock
from campusvpn.texts.message import Message


class Purpose(enum.StrEnum):
    VPN = "vpn"  # the result must allow VPN use
    PORTAL = "portal"  # a signed-in user may see why the VPN refuses them, and register methods


@dataclass(frozen=True)
class MethodChoice:
    id: str
    kind: str  # totp | phone
    label: Message  # its name, rendered in the reader's language
    channels: tuple[str, ...] = ()
    default: bool = False


@dataclass(frozen=True)
class Account:
    """What the engine needs to know about a user once the first factor is right."""

    username: str
    mfa_state: MfaState
    methods: tuple[MethodChoice, ...]  # confirmed methods, the default first
    mfa_emptied: bool = False  # every method was removed: registering again needs a recovery code
    recovery_left: int | None = None  # unused recovery codes, counted only when mfa_emptied


@dataclass(frozen=True)
class PasswordOutcome:
    """The password step's answer. `blocked` non-empty: throttled, the password was not checked."""

    blocked: tuple[Verdict, ...] = ()
    account: Account | None = None  # None: unknown user or wrong password (never told apart)
    unavailable: bool = False  # the password could not be checked (the directory is down)


@dataclass(frozen=True)
class CodeOutcome:
    """A second-factor code's answer. `blocked` non-empty: throttled, the code was not checked."""

    blocked: tuple[Verdict, ...] = ()
    ok: bool = False
    replayed: bool = False
    spent_recovery: bool = False  # a recovery code that no longer works (used, or of a replaced set)
    method: str | None = None  # totp | phone | recovery
    recovery_left: int | None = None
    locked_until: datetime | None = None  # this failure locked the step
    methods: tuple[MethodChoice, ...] = ()  # to ask again


@dataclass(frozen=True)
class SendOutcome:
    methods: tuple[MethodChoice, ...]
    said: Message | None = None  # what was sent (sent.sms, sent.voice)
    refused: Message | None = None  # why nothing was sent


@dataclass(frozen=True)
class DeviceTrust:
    """A trusted device that skips the code."""

    label: str
    expires_at: datetime


@dataclass(frozen=True)
class IssuedDevice:
    token: str  # given to the client once
    expires_at: datetime


@dataclass(frozen=True)
class PasskeyAssertion:
    """A WebAuthn assertion as the browser sent it, and what it must match."""

    credential: Mapping[str, Any]
    challenge: bytes
    rp_id: str
    origin: str


@dataclass(frozen=True)
class PasskeyOutcome:
    username: str | None = None  # None: refused (unknown key, bad signature, revoked account)
    user_verified: bool = False  # the device checked its PIN or biometric


@dataclass(frozen=True)
class Settings:
    """Words and rules the messages need."""

    service_name: str
    helpdesk: str
    zone: ZoneInfo
    recovery_code_count: int
    usernames: UsernameRule


class Credentials(Protocol):
    def check_password(
        self, username: str, password: str, *, purpose: Purpose, source: str | None, device_token: str | None = None
    ) -> PasswordOutcome:
        """Throttle check, hash check, failure counting, audit, and rehash when parameters changed.
        `device_token` (a trusted device's, if the client sent one) makes the client one the
        account knows, which a stranger's failures do not throttle."""
        ...

    def check_passkey(self, assertion: PasskeyAssertion, *, source: str | None) -> PasskeyOutcome:
        """Verify a WebAuthn assertion against the stored key (and count its use), with audit."""
        ...


class SecondFactors(Protocol):
    def account(self, username: str) -> Account: ...

    def send_code(
        self, username: str, method_id: str | None, channel: str | None, source: str | None
    ) -> SendOutcome: ...

    def verify_second_factor(self, username: str, code: str, method_id: str | None, source: str | None) -> CodeOutcome:
        """Throttle check, code check (used up on success), failure counting, audit."""
        ...

    def use_recovery_code(self, username: str, code: str) -> int | None:
        """Spend a recovery code; how many are left, or None if it was not one."""
        ...


class TrustedDevices(Protocol):
    def check_device(self, username: str, token: str, source: str | None) -> DeviceTrust | None: ...

    def trust_device(self, username: str, label: str, source: str | None) -> IssuedDevice: ...


class Decisions(Protocol):
    def decide(self, username: str, *, purpose: Purpose, factors: int, source: str | None) -> Decision:
        """The VPN eligibility decision now, recorded in the audit trail with its outcome."""
        ...


@dataclass(frozen=True)
class Ports:
    settings: Settings
    clock: Clock
    step: Callable[[], AbstractContextManager[None]]  # one unit of work around each event
    credentials: Credentials
    second_factors: SecondFactors
    devices: TrustedDevices
    decisions: Decisions


def accepted(purpose: Purpose, decision: Decision, factors: int) -> bool:
    """Whether a sign-in with this many factors ends well: the VPN needs both and a yes; the
    portal lets every account in but a closed one (it is told why)."""
    if purpose is Purpose.PORTAL:
        return not any(r.code == "account_revoked" for r in decision.reasons)
    return decision.allowed and factors == 2
