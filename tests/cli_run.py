"""Run the real `campusvpn` command line as a child process, the way an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AT = Path(__file__).resolve().parent / "campusvpn_at.py"


def clean_env() -> dict[str, str]:
    """This process's environment without any CAMPUSVPN_ setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CAMPUSVPN_")}


def campusvpn_command(*, now: str | None = None, now_file: Path | None = None) -> list[str]:
    """`campusvpn`, or with a clock of the test's: stopped at `now` (ISO 8601) or read from `now_file`."""
    if now_file is not None:
        return [sys.executable, str(AT), "--now-file", str(now_file), "--"]
    if now:
        return [sys.executable, str(AT), "--now", now, "--"]
    return [sys.executable, "-m", "campusvpn"]


def run_campusvpn(
    config: Path | None, *args: str, stdin: str = "", now: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`campusvpn [--config CONFIG] ARGS...`; the caller checks the outcome."""
    pre = ["--config", str(config)] if config else []
    return subprocess.run(
        [*campusvpn_command(now=now), *pre, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
