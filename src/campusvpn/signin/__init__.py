"""The one sign-in state machine that the gateway, the portal, RADIUS and the CLI drive."""

from campusvpn.signin.engine import (
    Code,
    Finished,
    IllegalEvent,
    MethodChoice,
    Password,
    Prompt,
    Purpose,
    RecoveryForRegistration,
    Registered,
    SendCode,
    SignIn,
    Step,
)

__all__ = [
    "Code",
    "Finished",
    "IllegalEvent",
    "MethodChoice",
    "Password",
    "Prompt",
    "Purpose",
    "RecoveryForRegistration",
    "Registered",
    "SendCode",
    "SignIn",
    "Step",
]
