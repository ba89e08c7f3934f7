"""Login throughput: full sign-ins per second a gateway completes for parallel real openconnect clients.

Each worker runs `openconnect --authenticate` again and again in the client namespace until the time
is up; a sign-in counts when the client got its session cookie. campusvpn signs in with password +
TOTP at the configured Argon2id cost, each sign-in as its own user (campusvpn accepts a TOTP code
once); ocserv (--password-only) with the same user and password every time. The clients run on the
same machine as the gateway, so the figure is what the whole machine completes, clients included.
Run on the host with the test bed up and the gateway running:
  python bench/login_rate.py --config CONF --pin PIN [--parallel 4 --seconds 10]
Prints `name value unit` lines.
"""

from __future__ import annotations

import argparse
import re
import threading
import time

from connect_time import PASSWORD, gateway_args, make_users, oc, signin_argv


def main() -> None:
    ap = argparse.ArgumentParser()
    gateway_args(ap, first_user=5000000000)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--users", type=int, default=250, help="campusvpn: one per sign-in (the run stops if used up)")
    args = ap.parse_args()

    password = PASSWORD
    if args.password_only:
        user, password = args.password_only
        pool: list[tuple[str, str | None]] = []
    else:
        pool = list(make_users(args.config, args.users, args.first_user))
    lock = threading.Lock()
    done: list[float] = []
    failures: list[str] = []
    ran_out = threading.Event()
    deadline = time.monotonic() + args.seconds

    def next_user() -> tuple[str, str | None] | None:
        if args.password_only:
            return user, None
        with lock:
            if not pool:
                ran_out.set()
                return None
            return pool.pop()

    def worker() -> None:
        while time.monotonic() < deadline:
            who = next_user()
            if who is None:
                return
            name, secret = who
            argv = [*signin_argv(args.pin, name, secret), "--authenticate", args.url]
            took, r = oc(args.ns, argv, password + "\n", timeout=30)
            ok = r.returncode == 0 and re.search(r"COOKIE='[^']+'", r.stdout) is not None
            with lock:
                if ok:
                    done.append(took)
                else:
                    failures.append(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"rc {r.returncode}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.seconds + 60)
    elapsed = time.monotonic() - t0
    if ran_out.is_set():
        print(f"# {args.name}: the {args.users} prepared users ran out; the rate counts until then")
    for why in sorted(set(failures))[:5]:
        print(f"# {args.name} failed sign-in: {why}")
    print(f"{args.name}.login.rate {len(done) / elapsed:.1f} sign-ins/s")
    print(f"{args.name}.login.parallel {args.parallel} count")
    print(f"{args.name}.login.failures {len(failures)} count")


if __name__ == "__main__":
    main()
