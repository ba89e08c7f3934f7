"""Prepare the benchmark user of a campusvpn site: password, training, MFA (TOTP) and a trusted device.

Prints shell lines for gw.env: the TOTP secret and the trusted-device token, so the test bed's
repeated connects can sign in with the password alone from the trusted address (a replay-proof
gateway accepts each TOTP code once), while single connects use password + TOTP.
Usage: python bench/bench_user.py CONFIG USERNAME PASSWORD
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyotp
from benchlib import enrol_totp, ready_user

from campusvpn.platform.clock import SystemClock
from campusvpn.platform.config import load_config
from campusvpn.service.context import open_context
from campusvpn.service.signin_ports import start_signin
from campusvpn.signin import Code, Finished, Password, Purpose


def main() -> None:
    config, username, password = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctx = open_context(load_config(config), SystemClock())
    ready_user(ctx, username, password=password)
    secret = enrol_totp(ctx, username)
    totp = pyotp.TOTP(secret)
    engine = start_signin(ctx, Purpose.PORTAL, source="bench")
    engine.handle(Password(username, password))
    done = engine.handle(Code(totp.now(), trust_device=True, device_label="benchmark client"))
    assert isinstance(done, Finished) and done.device_token, done
    print(f"BENCH_TOTP_SECRET={secret}")
    print(f"BENCH_DEVICE_TOKEN={done.device_token}")


if __name__ == "__main__":
    main()
