"""Full sign-in time with password + TOTP, cookie-resume time and the first ping, with the real openconnect.

Each round uses its own user (its own TOTP secret), because campusvpn accepts each TOTP code once.
Run on the host with the test bed up and the gateway running:
  python bench/connect_time.py --config CONF --pin PIN --rounds 10
Prints `name value unit` lines.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import enrol_totp, ready_user

from campusvpn.platform.config import load_config
from campusvpn.service.context import open_context

NOROUTE = Path(__file__).resolve().parent.parent.parent / "shared" / "testbed" / "oc-noroute-script.sh"
PASSWORD = "bench-pass-12345"
TUN = "vbct0"  # the measured tunnel's device in the client namespace


def make_users(config: Path, n: int, first: int) -> list[tuple[str, str]]:
    """n users with password and an authenticator app, made by one process per core (each costs an
    Argon2id hash at the configured cost)."""
    workers = max(1, min(os.cpu_count() or 1, n // 20))
    names = [str(first + i) for i in range(n)]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        parts = pool.map(_make_some, [config] * workers, [names[i::workers] for i in range(workers)])
        return [user for part in parts for user in part]


def _make_some(config: Path, names: list[str]) -> list[tuple[str, str]]:
    cfg = load_config(config)
    # No recovery codes: ten Argon2id hashes per user that no sign-in here reads (the password is still
    # hashed at the configured cost, and that is what each sign-in verifies).
    cfg = cfg.model_copy(update={"mfa": cfg.mfa.model_copy(update={"recovery_code_count": 0})})
    ctx = open_context(cfg)
    out = []
    try:
        for name in names:
            ready_user(ctx, name, password=PASSWORD)
            out.append((name, enrol_totp(ctx, name)))
    finally:
        ctx.engine.dispose()
    return out


def oc(ns: str, args: list[str], stdin: str, timeout: float = 60) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run openconnect in the client namespace; the time is until it returns (with --background: the
    tunnel is up). Output goes to a file: a backgrounded child would hold a pipe open."""
    with tempfile.TemporaryFile("w+") as out:
        t = time.monotonic()
        r = subprocess.run(
            ["ip", "netns", "exec", ns, "openconnect", *args],
            input=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        took = time.monotonic() - t
        out.seek(0)
        r.stdout = out.read()
    return took, r


def gateway_args(ap: argparse.ArgumentParser, first_user: int) -> None:
    """The options of the bench programs that sign in with openconnect against either gateway."""
    ap.add_argument("--config", type=Path, help="campusvpn's config (not needed with --password-only)")
    ap.add_argument("--pin", required=True)
    ap.add_argument("--url", default="https://10.99.0.2:443/")
    ap.add_argument("--ns", default="vb-client")
    ap.add_argument("--first-user", type=int, default=first_user)
    ap.add_argument("--name", default="campusvpn", help="figure prefix")
    ap.add_argument(
        "--password-only",
        nargs=2,
        metavar=("USER", "PASSWORD"),
        help="a gateway without MFA (ocserv): the same user and password every time",
    )


def signin_argv(pin: str, name: str, secret: str | None) -> list[str]:
    """openconnect's options for a sign-in by password, and by TOTP when the user has a secret."""
    argv = ["--servercert", pin, "--user", name, "--passwd-on-stdin", "--non-inter"]
    if secret:
        argv += ["--token-mode=totp", f"--token-secret=base32:{secret}"]
    return argv


def _last_line(r: subprocess.CompletedProcess[str]) -> str:
    out = r.stdout.strip().splitlines()
    return out[-1] if out else f"exit status {r.returncode}"


def first_ping(ns: str, campus: str) -> float | None:
    """Seconds until the campus host answers an echo request sent through the tunnel device, ≤ 5 s.

    `openconnect --background` returns before its script has brought the device up, so until the device
    exists ping fails at once and is started again; then it sends a request every 10 ms until the
    first reply (a request lost while the tunnel settles costs 10 ms)."""
    t = time.monotonic()
    while (left := 5 - (time.monotonic() - t)) > 0:
        r = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "ping",
                "-n",
                "-q",
                "-c1",
                "-i0.01",
                f"-w{max(1, int(left))}",
                "-I",
                TUN,
                campus,
            ],
            capture_output=True,
            timeout=15,
            check=False,
        )
        if r.returncode == 0:
            return time.monotonic() - t
        time.sleep(0.01)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    gateway_args(ap, first_user=4000000000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--campus", default="10.98.0.2", help="host behind the gateway that answers the first ping")
    args = ap.parse_args()
    global PASSWORD
    if args.password_only:
        user, PASSWORD = args.password_only
        users: list[tuple[str, str | None]] = [(user, None)] * args.rounds
    else:
        users = list(make_users(args.config, args.rounds, args.first_user))
    auth_times, connect_times, resume_times, ping_times, failures = [], [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, secret in users:
            common = signin_argv(args.pin, name, secret)
            # 1. sign-in only (TLS, password, TOTP, session): what the user waits for before the tunnel.
            took, r = oc(args.ns, [*common, "--authenticate", args.url], PASSWORD + "\n")
            found = re.search(r"COOKIE='([^']*)'", r.stdout)  # "openconnect_strapkey=…; webvpn=…"
            cookie = found.group(1) if found else None
            if r.returncode != 0 or cookie is None:
                failures += 1
                print(f"# {args.name} sign-in failed: {_last_line(r)}")
                continue
            auth_times.append(took)
            # 2. tunnel up with that cookie (a resumption: no password, no code).
            pidfile = Path(tmp) / f"{name}.pid"
            pidfile.unlink(missing_ok=True)  # ocserv's rounds share one user
            took, r = oc(
                args.ns,
                [
                    "--servercert",
                    args.pin,
                    "--cookie-on-stdin",
                    "--background",
                    f"--pid-file={pidfile}",
                    "--script",
                    str(NOROUTE),
                    f"--interface={TUN}",
                    args.url,
                ],
                cookie + "\n",
            )
            if r.returncode != 0 or not pidfile.exists():
                failures += 1
                print(f"# {args.name} tunnel from the cookie failed: {_last_line(r)}")
                continue
            pid = int(pidfile.read_text())
            # 3. the first echo reply from the campus host through the new tunnel (bound to its device:
            # the script sets no route, so without the binding the ping would take the plain path).
            ping = first_ping(args.ns, args.campus)
            if ping is None:
                failures += 1
                print(f"# {args.name} no echo reply through the tunnel within 5 s")
            else:
                resume_times.append(took)
                ping_times.append(ping)
                connect_times.append(auth_times[-1] + took + ping)
            os.kill(pid, signal.SIGINT)  # BYE
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
    for label, xs in (
        ("auth", auth_times),
        ("connect", connect_times),
        ("resume", resume_times),
        ("first_ping", ping_times),
    ):
        if xs:
            print(f"{args.name}.signin.{label}_median {statistics.median(xs):.3f} s")
            print(f"{args.name}.signin.{label}_max {max(xs):.3f} s")
    print(f"{args.name}.signin.rounds {len(connect_times)} count")
    print(f"{args.name}.signin.failures {failures} count")


if __name__ == "__main__":
    main()
