"""Every fuzz target for 20 seconds (bench/fuzz/run.py): no crash, no hang, within a time bound.

The long runs (10 minutes a target) and their figures are in bench/FUZZ.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 20
BOUND = 9 * SECONDS // 2 + 180  # 9 targets two at a time, plus start-up and slack


def test_every_fuzz_target_runs_clean_for_20_seconds(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    run = [sys.executable, str(ROOT / "bench/fuzz/run.py"), "--seconds", str(SECONDS), "--jobs", "2"]
    done = subprocess.run([*run, "--work", str(tmp_path)], capture_output=True, text=True, timeout=BOUND, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary) == 9
    for target in summary:
        assert target["executions"] > 0 and target["coverage"] > 0, target
        assert target["crashes"] == 0 and target["hangs"] == 0, target
