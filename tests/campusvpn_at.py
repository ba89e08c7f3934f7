"""The test harness's `campusvpn`: the real command line with the clock set, which production cannot do.

    python3 tests/campusvpn_at.py --now 2026-10-01T09:00+09:00 -- user add ...   # a clock stopped at that time
    python3 tests/campusvpn_at.py --now-file PATH -- serve --no-tun               # the time written in PATH, running

`campusvpn` itself always runs on the system clock; only this launcher hands another to its entry point.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from campusvpn.cli.main import main
from campusvpn.platform.clock import Clock, FileClock, FixedClock


def parse(argv: list[str]) -> tuple[Clock, list[str]]:
    p = argparse.ArgumentParser(prog="campusvpn_at.py", description="campusvpn with a clock of the test's")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--now", metavar="ISO", type=datetime.fromisoformat, help="a fixed time (ISO 8601)")
    when.add_argument("--now-file", metavar="PATH", help="a file holding the time; rewrite it to jump")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then the campusvpn arguments")
    ns = p.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    return (FixedClock(ns.now) if ns.now is not None else FileClock(ns.now_file)), args


if __name__ == "__main__":
    clock, args = parse(sys.argv[1:])
    main(args, clock=clock)
