"""Sign-in throughput of the core (password + TOTP through the sign-in engine) on SQLite.

Prints full sign-ins per second at the configured Argon2id cost in one process without network,
the cost of one Argon2id verify, and how many verifies the whole machine does (one process per core).
Usage: python bench/signin_rate.py [--users N] [--memory-kib K] [--time-cost T]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
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
from campusvpn.service import accounts, authenticator, mfa, training
from campusvpn.service.context import open_context
from campusvpn.service.signin_ports import start_signin
from campusvpn.signin import Code, Finished, Password, Purpose


def _verify_many(job: tuple[int, int, str, int]) -> None:
    time_cost, memory_kib, h, n = job
    hasher = Hasher(Argon2Params(time_cost, memory_kib, 1))
    for _ in range(n):
        hasher.verify(h, "x" * 16)


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
    # What the whole machine can verify, one process per core: Argon2id is memory-bound, so cores
    # sharing the memory bus do not add up.
    cores = os.cpu_count() or 1
    per_core = 20
    t = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(cores) as pool:
        list(pool.map(_verify_many, [(args.time_cost, args.memory_kib, h, per_core)] * cores))
    machine_rate = cores * per_core / (time.perf_counter() - t)

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
            e = authenticator.begin_totp(ctx, name, actor="bench")
            authenticator.confirm_totp(ctx, name, pyotp.TOTP(e.secret).at(clock.now()), actor="bench")
            secrets.append((name, e.secret))
        clock.advance(timedelta(hours=1))
        times = []
        t0 = time.perf_counter()
        for name, secret in secrets:
            clock.advance(timedelta(seconds=30))  # a fresh TOTP step each time
            t = time.perf_counter()
            engine = start_signin(ctx, Purpose.VPN, source="127.0.0.1")
            engine.handle(Password(name, "bench password 123"))
            out = engine.handle(Code(pyotp.TOTP(secret).at(clock.now())))
            assert isinstance(out, Finished) and out.ok, out
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        ctx.engine.dispose()

    print(f"# argon2id t={args.time_cost} m={args.memory_kib} KiB p=1: {argon_ms:.1f} ms per verify")
    print(f"campusvpn.argon2.verify_ms {argon_ms:.1f} ms")
    print(f"campusvpn.argon2.machine_rate {machine_rate:.1f} verifies/s")
    print(f"campusvpn.core_signin.rate {len(times) / total:.1f} sign-ins/s")
    print(f"# full sign-ins (password + TOTP + policy + audit), {len(times)} users, one process, no network:")
    print(
        f"#   median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms, "
        f"{len(times) / total:.1f} sign-ins/s"
    )
    print(f"#   non-Argon2 overhead ~{(statistics.median(times) * 1000 - argon_ms):.1f} ms per sign-in")
    print(f"# argon2id, {cores} processes: {machine_rate:.1f} verifies/s for the whole machine")


if __name__ == "__main__":
    main()
