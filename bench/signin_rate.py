"""Sign-in throughput of the core (password + TOTP through the sign-in engine) on SQLite.

Prints full sign-ins per second at the configured Argon2id cost, and the cost of each part.
Usage: python bench/signin_rate.py [--users N] [--memory-kib K] [--time-cost T]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp

from campusvpn.core.hashing import Argon2Params, Hasher
from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import parse_config
from campusvpn.platform.secretbox import generate_key_file
from campusvpn.service import accounts, mfa, training
from campusvpn.service.context import open_context
from campusvpn.signin import Code, Finished, Password, Purpose, SignIn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--memory-kib", type=int, default=19456)
    ap.add_argument("--time-cost", type=int, default=2)
    args = ap.parse_args()

    hasher = Hasher(Argon2Params(args.time_cost, args.memory_kib, 1))
    h = hasher.hash("x" * 16)
    t = time.perf_counter()
    for _ in range(10):
        hasher.verify(h, "x" * 16)
    argon_ms = (time.perf_counter() - t) / 10 * 1000

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "campusvpn.toml"
        text = f"[passwords]\nargon2_time_cost = {args.time_cost}\nargon2_memory_kib = {args.memory_kib}\n"
        path.write_text(text)
        generate_key_file(Path(d) / "secret.keys")
        clock = FixedClock(datetime(2026, 10, 1, tzinfo=UTC))
        ctx = open_context(parse_config(text, path), clock)
        secrets = []
        for i in range(args.users):
            name = f"{1000000000 + i}"
            accounts.add_user(
                ctx,
                accounts.NewUser(name, "staff", start=datetime(2020, 4, 1).date()),
                actor="bench",
                password="bench password 123",
            )
            ctx_text = f"username,completed_on\n{name},2026-07-01\n"
            training.import_completions(ctx, ctx_text, actor="bench")
            mfa.apply(ctx, name, actor="bench")
            e = mfa.begin_totp(ctx, name, actor="bench")
            mfa.confirm_totp(ctx, name, pyotp.TOTP(e.secret).at(clock.now()), actor="bench")
            secrets.append((name, e.secret))
        clock.advance(timedelta(hours=1))
        times = []
        t0 = time.perf_counter()
        for name, secret in secrets:
            clock.advance(timedelta(seconds=30))  # a fresh TOTP step each time
            t = time.perf_counter()
            engine = SignIn(ctx, Purpose.VPN, source="127.0.0.1")
            engine.handle(Password(name, "bench password 123"))
            out = engine.handle(Code(pyotp.TOTP(secret).at(clock.now())))
            assert isinstance(out, Finished) and out.ok, out
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        ctx.engine.dispose()

    print(f"argon2id t={args.time_cost} m={args.memory_kib} KiB p=1: {argon_ms:.1f} ms per verify")
    print(f"full sign-ins (password + TOTP + policy + audit), {len(times)} users, one process:")
    print(
        f"  median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms, "
        f"{len(times) / total:.1f} sign-ins/s"
    )
    print(f"  non-Argon2 overhead ~{(statistics.median(times) * 1000 - argon_ms):.1f} ms per sign-in")


if __name__ == "__main__":
    main()
