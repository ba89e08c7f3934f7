"""What the bench programs share: bench users made ready for the VPN without waiting."""

from __future__ import annotations

from datetime import date, timedelta

import pyotp

from campusvpn.service import accounts, authenticator, mfa, training
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid


def ready_user(ctx: Context, name: str, *, password: str | None = None) -> None:
    """A staff account with this year's training done and MFA applied long enough ago (no method yet)."""
    accounts.add_user(ctx, accounts.NewUser(name, "staff", start=date(2020, 4, 1)), actor="bench", password=password)
    training.import_completions(ctx, f"username,completed_on\n{name},{ctx.clock.now().date()}\n", actor="bench")
    mfa.apply(ctx, name, actor="bench")
    with ctx.tx() as s:  # a benchmark does not wait out the activation delay
        ctx.user(s, name).mfa_applied_at = ctx.clock.now() - ctx.config.mfa.activation_delay * 2


def enrol_totp(ctx: Context, name: str) -> str:
    """An authenticator app confirmed with the previous step's code, so the current one stays fresh."""
    e = authenticator.begin_totp(ctx, name, actor="bench")

    # On a loaded machine a 30 s boundary can pass between making the code and checking it (the code is
    # then two steps old): make it again.
    def confirm() -> None:
        code = pyotp.TOTP(e.secret).at(ctx.clock.now() - timedelta(seconds=30))
        authenticator.confirm_totp(ctx, name, code, actor="bench")

    for _ in range(2):
        try:
            confirm()
            return e.secret
        except Invalid:
            pass
    confirm()  # a third failure is not a boundary: let it raise
    return e.secret
