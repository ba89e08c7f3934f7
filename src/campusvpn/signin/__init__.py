"""The one sign-in state machine that the gateway, the portal, RADIUS and the CLI drive."""

from campusvpn.signin.engine import (
    TRANSITIONS,
    Code,
    Event,
    Federated,
    Finished,
    IllegalEvent,
    Passkey,
    Password,
    Prompt,
    RecoveryForRegistration,
    Registered,
    SendCode,
    SignIn,
    Step,
)
from campusvpn.signin.ports import MethodChoice, PasskeyAssertion, Ports, Purpose

__all__ = [
    "TRANSITIONS",
    "Code",
    "Event",
    "Federated",
    "Finished",
    "IllegalEvent",
    "MethodChoice",
    "Passkey",
    "PasskeyAssertion",
    "Password",
    "Ports",
    "Prompt",
    "Purpose",
    "RecoveryForRegistration",
    "Registered",
    "SendCode",
    "SignIn",
    "Step",
]
