"""Prepare the benchmark user of a campusvpn site: password, training, MFA (TOTP) and a trusted device.

Prints shell lines for gw.env: the TOTP secret and the trusted-device token, so the test bed's
repeated connects can sign in with the password alone from the trusted address (a replay-proof
gateway accepts each TOTP code once), while single connects use password + TOTP.
Usage: python bench/bench_user.py CONFIG USERNAME PASSWORD
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import pyotp

from campusvpn.platform.clock import SystemClock
from campusvpn.platform.config import load_config
from campusvpn.service import accounts, mfa, training
from campusvpn.service.context import open_context
from campusvpn.signin import Code, Finished, Password, Purpose, SignIn


def main() -> None:
    config, username, password = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctx = open_context(load_config(config), SystemClock())
    new = accounts.NewUser(username, "staff", start=date(2020, 4, 1))
    accounts.add_user(ctx, new, actor="bench", password=password)
    today = ctx.clock.now().date()
    training.import_completions(ctx, f"username,completed_on\n{username},{today.isoformat()}\n", actor="bench")
    mfa.apply(ctx, username, actor="bench")
    with ctx.tx() as s:  # the bench does not wait out the activation delay
        ctx.user(s, username).mfa_applied_at = ctx.clock.now() - ctx.config.mfa.activation_delay - timedelta(seconds=1)
    enrolment = mfa.begin_totp(ctx, username, actor="bench")
    totp = pyotp.TOTP(enrolment.secret)
    mfa.confirm_totp(ctx, username, totp.at(ctx.clock.now() - timedelta(seconds=30)), actor="bench")
    engine = SignIn(ctx, Purpose.PORTAL, source="bench")
    engine.handle(Password(username, password))
    done = engine.handle(Code(totp.now(), trust_device=True, device_label="benchmark client"))
    assert isinstance(done, Finished) and done.device_token, done
    print(f"BENCH_TOTP_SECRET={enrolment.secret}")
    print(f"BENCH_DEVICE_TOKEN={done.device_token}")


if __name__ == "__main__":
    main()
