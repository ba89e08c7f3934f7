"""Run the real `campusvpn` command line as a child process, the way an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def clean_env(now: str | None = None) -> dict[str, str]:
    """This process's environment without any CAMPUSVPN_ setting, optionally with a pinned clock."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUSVPN_")}
    if now:
        env["CAMPUSVPN_FAKE_NOW"] = now
    return env


def run_campusvpn(
    config: Path | None, *args: str, stdin: str = "", now: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`campusvpn [--config CONFIG] ARGS...`; the caller checks the outcome."""
    pre = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "campusvpn", *pre, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(now),
        timeout=60,
        check=False,
    )
