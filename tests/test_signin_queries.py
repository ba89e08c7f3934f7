"""What one sign-in costs the database: the throttle counters an attempt is judged and cleared by are read
together, not one query per counter (a sign-in wave is bound by its per-sign-in work; issue 17)."""

from __future__ import annotations

from typing import Any

import pyotp
from sqlalchemy import event
from tests.conftest import PASSWORD, add_user
from tests.helpers import enrol_totp

from campusvpn.anyconnect import xmlauth
from campusvpn.anyconnect.login import GatewayLogin
from campusvpn.platform.clock import FixedClock
from campusvpn.service.context import Context


def test_a_sign_in_reads_its_throttle_counters_once_per_check(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    statements: list[str] = []

    def seen(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(ctx.engine, "before_cursor_execute", seen)
    try:
        lg = GatewayLogin(ctx, source="192.0.2.7", user_agent="Open AnyConnect VPN Agent v9.01-3", cert_sha1="AB")
        lg.handle_request(xmlauth.AuthRequest(kind="init"))
        lg.handle_request(
            xmlauth.AuthRequest(
                kind="auth-reply", handle=lg.handle, fields={"username": "1234567890", "password": PASSWORD}
            )
        )
        code = pyotp.TOTP(secret).at(clock.now())
        done = lg.handle_request(
            xmlauth.AuthRequest(kind="auth-reply", handle=lg.handle, fields={"secondary_password": code})
        )
    finally:
        event.remove(ctx.engine, "before_cursor_execute", seen)
    assert done.token
    throttle_reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "throttle_counters" in s]
    # Two steps (password, code), each judged before its secret is checked and cleared after success.
    assert len(throttle_reads) == 4, throttle_reads
