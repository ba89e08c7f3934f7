"""Runs the fuzz targets: `python3 bench/fuzz/run.py [--seconds N] [--jobs J] [targets...]`.

Each target (`bench/fuzz/<target>.py`) runs under libFuzzer for N seconds, starting from its seed
corpus in git (`corpus/<target>/`) plus what earlier runs found (`work/corpus/<target>/`, not in
git). A crash or hang (an input over `--timeout` seconds) is kept in `work/artifacts/<target>/`,
and the target is started again for the rest of its time. Prints per target: executions, exec/s,
coverage (libFuzzer's `cov:`), crashes and hangs; exits 1 if any were found.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
TARGETS = (
    "http_request",
    "anyconnect_xml",
    "cstp",
    "ppp_framing",
    "ppp_link",
    "fortinet_login",
    "csv_rows",
    "imports",
    "config_loader",
)
# Inputs big enough for the largest frame (16 KiB) and for deep nesting; the rest keep libFuzzer's default.
MAX_LEN = {"cstp": 20000, "ppp_framing": 20000, "ppp_link": 20000, "config_loader": 8192, "imports": 2048}
MAX_RESTARTS = 20


@dataclass
class Result:
    target: str
    seconds: float = 0.0
    executions: int = 0
    coverage: int = 0
    crashes: int = 0
    hangs: int = 0
    restarts: int = 0

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


def run_target(target: str, seconds: int, work: Path, timeout: int, quiet: bool) -> Result:
    corpus, artifacts, logs = (work / d / target for d in ("corpus", "artifacts", "logs"))
    for d in (corpus, artifacts, logs):
        d.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    result = Result(target)
    start = time.monotonic()
    while result.restarts <= MAX_RESTARTS:
        left = int(seconds - (time.monotonic() - start))
        if left < 1:
            break
        before = {p.name for p in artifacts.iterdir()}
        cmd = [
            sys.executable,
            str(HERE / f"{target}.py"),
            f"-max_total_time={left}",
            f"-timeout={timeout}",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/",
            *([f"-max_len={MAX_LEN[target]}"] if target in MAX_LEN else []),
            str(corpus),  # new inputs are written to the first folder
            str(HERE / "corpus" / target),
        ]
        log = logs / f"run{result.restarts}.log"
        with log.open("w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work, check=False)
        text = log.read_text(errors="replace")
        execs = re.findall(r"stat::number_of_executed_units: (\d+)", text) or re.findall(r"^#(\d+)\s", text, re.M)
        result.executions += int(execs[-1]) if execs else 0
        covs = re.findall(r"\bcov: (\d+)", text)
        result.coverage = max([result.coverage, *(int(c) for c in covs)])
        new = sorted({Path(p).name for p in re.findall(r"Test unit written to (\S+)", text)})
        repeated = bool(new) and set(new) <= before  # the same input again (a seed that fails): nothing new to learn
        result.crashes += sum(1 for n in new if n.startswith(("crash-", "oom-", "leak-")))
        result.hangs += sum(1 for n in new if n.startswith("timeout-"))
        if proc.returncode == 0:
            break
        if not new:  # it failed without an input to blame (a broken harness): stop, do not loop
            result.crashes += 1
            if not quiet:
                print(f"{target}: exited {proc.returncode} without an artifact; see {log}", file=sys.stderr)
            break
        result.restarts += 1
        if repeated:
            break
        if not quiet:
            print(f"{target}: found {', '.join(new)}; see {log}", file=sys.stderr)
    result.seconds = time.monotonic() - start
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", choices=[[], *TARGETS], metavar="target", help=", ".join(TARGETS))
    ap.add_argument("--seconds", type=int, default=600, help="per target (default 600)")
    ap.add_argument("--jobs", type=int, default=2, help="targets run at once (default 2: a 2-core machine)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it is a hang")
    ap.add_argument("--work", type=Path, default=HERE / "work", help="found inputs, artifacts, logs (not in git)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    targets = args.targets or list(TARGETS)
    work: Path = args.work.resolve()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda t: run_target(t, args.seconds, work, args.timeout, args.quiet), targets))
    print(f"{'target':<16}{'seconds':>9}{'executions':>12}{'exec/s':>9}{'cov':>7}{'crashes':>9}{'hangs':>7}")
    for r in results:
        print(
            f"{r.target:<16}{r.seconds:>9.0f}{r.executions:>12}{r.rate:>9.0f}{r.coverage:>7}{r.crashes:>9}{r.hangs:>7}"
        )
    summary = [asdict(r) | {"exec_per_s": round(r.rate)} for r in results]
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    if any(r.crashes or r.hangs for r in results):
        print(f"crashes or hangs: inputs in {work / 'artifacts'}; replay one with python3 bench/fuzz/<target>.py FILE")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
