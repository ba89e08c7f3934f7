"""Small helpers shared by the tests."""

from __future__ import annotations

import re
import socket
import subprocess
from datetime import timedelta

import pyotp

from campusvpn.platform.clock import FixedClock
from campusvpn.service import authenticator, mfa
from campusvpn.service.context import Context
from campusvpn.service.signin_ports import start_signin
from campusvpn.signin import Code, Finished, Password, Prompt, Purpose

PASSWORD = "correct horse battery staple"


def sent_code(text: str) -> str:
    """The 6-digit code in an SMS as the user reads it (in either language)."""
    found = re.search(r"(?<!\d)(\d{6})(?!\d)", text)
    assert found, text
    return found.group(1)


def enrol_totp(ctx: Context, clock: FixedClock, name: str = "1234567890") -> tuple[str, list[str]]:
    """Apply, register an authenticator app, wait out the activation delay. Returns (secret, codes)."""
    mfa.apply(ctx, name, actor="test")
    e = authenticator.begin_totp(ctx, name, actor="test")
    codes = authenticator.confirm_totp(ctx, name, pyotp.TOTP(e.secret).at(clock.now()), actor="test")
    assert codes is not None
    clock.advance(timedelta(minutes=41))
    return e.secret, codes


def totp_now(secret: str, clock: FixedClock) -> str:
    return str(pyotp.TOTP(secret).at(clock.now()))


def sign_in(
    ctx: Context,
    code: str | None,
    *,
    name: str = "1234567890",
    password: str = PASSWORD,
    purpose: Purpose = Purpose.VPN,
    source: str = "192.0.2.10",
    device_token: str | None = None,
    trust: bool = False,
) -> Prompt | Finished:
    engine = start_signin(ctx, purpose, source=source)
    out = engine.handle(Password(name, password, device_token))
    if isinstance(out, Prompt) and code is not None:
        out = engine.handle(Code(code, trust_device=trust, device_label="test laptop"))
    return out


def free_port() -> int:
    """A TCP port free on loopback now (the peer a test starts binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> None:
    """Stop a server a test started, by its PID: SIGTERM, then SIGKILL if it has not ended in 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
