"""Gateway workers: the sign-in rate with one worker and with one per core, and each idle worker's RSS.

For each worker count it builds the e2e test bed (tests/e2e/testbed.py: client, gateway and campus
namespaces, named with this pid and "cores"), sets [gateway] workers and the configured (default)
Argon2id cost, starts `campusvpn serve`, reads every worker's RSS once it has been idle for a few
seconds, then runs bench/login_rate.py (real openconnect, password + TOTP, one user per sign-in).
Run as root from the project folder:
  PYTHONPATH=src python3 bench/cores.py [--seconds 15] [--parallel 4] [--counts 1,auto]
Prints `name value unit` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.e2e.testbed import GW_IP, Testbed, missing_requirements, wait_until  # noqa: E402

DEFAULT_COST = ("argon2_time_cost = 1", "argon2_memory_kib = 8192")  # the test bed's cheap cost, undone here


def rss_kib(pid: int) -> int:
    found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) if found else 0


def serving_pids(bed: Testbed, count: int) -> list[int]:
    """The processes that serve: the workers (as the parent logged them), or the gateway itself."""
    assert bed.gw_proc is not None
    if count == 1:
        return [bed.gw_proc.pid]
    pids: dict[str, int] = {}
    for line in bed.gw_log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"gateway.worker_started"' in line:
            e = json.loads(line)
            pids[str(e["index"])] = int(e["pid"])
    return list(pids.values())


def run(count: str, seconds: float, parallel: int, users: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        bed = Testbed(Path(d), tag=f"b{os.getpid() % 100000}cores")
        try:
            bed.build()
            bed.init_site()
            text = bed.config.read_text()
            for cheap, default in zip(DEFAULT_COST, ("argon2_time_cost = 2", "argon2_memory_kib = 19456"), strict=True):
                text = text.replace(cheap, default)
            if count != "auto":
                text = text.replace('workers = "auto"', f"workers = {int(count)}")
            text = text.replace("max_sessions_per_user = 3", "max_sessions_per_user = 100")
            bed.config.write_text(text)
            n = len(os.sched_getaffinity(0)) if count == "auto" else int(count)
            bed.start_gateway()
            wait_until(lambda: bed.gw_log.read_text().count("gateway.listening") >= n, 30)
            time.sleep(5)  # idle: start-up's garbage collected, nothing connected
            rss = [rss_kib(p) for p in serving_pids(bed, n)]
            name = f"campusvpn.workers{n}"
            for i, r in enumerate(rss):
                print(f"{name}.idle_rss.worker{i} {r / 1024:.1f} MB", flush=True)
            r = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "login_rate.py"),
                    "--config",
                    str(bed.config),
                    "--pin",
                    bed.pin,
                    "--url",
                    f"https://{GW_IP}/",
                    "--ns",
                    bed.ns_client,
                    "--seconds",
                    str(seconds),
                    "--parallel",
                    str(parallel),
                    "--users",
                    str(users),
                    "--name",
                    name,
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 600,
                check=False,
                cwd=HERE,
            )
            print(r.stdout.strip(), flush=True)
            if r.returncode:
                print(f"# login_rate failed: {r.stderr.strip()[-500:]}", flush=True)
        finally:
            bed.destroy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--users", type=int, default=250)
    ap.add_argument("--counts", default="1,auto", help="worker counts to measure, comma-separated")
    args = ap.parse_args()
    missing = missing_requirements()
    if missing:
        sys.exit(f"bench/cores.py {missing}")
    print(f"# Argon2id at the default cost (t=2, m=19456 KiB); {os.cpu_count()} cores; {args.parallel} clients")
    for count in args.counts.split(","):
        run(count.strip(), args.seconds, args.parallel, args.users)


if __name__ == "__main__":
    main()
