"""An idle gateway worker's memory, and what it is made of.

Builds the e2e test bed (tests/e2e/testbed.py, namespaces named with this pid), sets [gateway] workers
and [vpn] dtls, starts the real `campusvpn serve` (TUN devices, as root), waits until every worker
listens and has idled for a few seconds, and prints for each worker (and its Argon2id pool process)
RSS, PSS and USS from /proc/PID/smaps_rollup, its thread count, and the biggest file mappings.

Then, unless --no-breakdown, it starts the gateway once more with a `sitecustomize` that writes each
process's module list when it exits, stops it, and in a fresh interpreter imports worker 0's modules
one top-level package at a time (the standard library first, then the other packages in the order
the worker first loaded them, campusvpn last), printing the RSS each step adds and what it pulled
in; finally the RSS that reading the parent's config, opening the context and building the gateway add.
Run as root from the project folder:
  PYTHONPATH=src python3 bench/worker_memory.py [--dtls on,off] [--workers 2] [--settle 5]
Prints numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# Written into a folder put first on PYTHONPATH for the breakdown run: every interpreter of the
# gateway (parent and workers) imports it at start and writes its module names when it exits.
SITECUSTOMIZE = """\
import atexit, json, os, sys
def _dump():
    out = os.environ.get("BENCH_MODULES_DIR")
    if out:
        with open(os.path.join(out, f"{os.getpid()}.json"), "w") as f:
            json.dump({"argv": sys.argv, "modules": list(sys.modules)}, f)
atexit.register(_dump)
"""


def rollup(pid: int) -> dict[str, int]:
    """KiB per field of /proc/PID/smaps_rollup, plus USS (private clean + private dirty)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def threads(pid: int) -> int:
    found = re.search(r"Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) if found else 0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def mappings(pid: int) -> dict[str, int]:
    """RSS in KiB per mapped file (its base name), "[anon]" for anonymous memory, "[heap]", "[stack]"."""
    sizes: dict[str, int] = defaultdict(int)
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = head[5] if len(head) > 5 else "[anon]"
            name = Path(path).name if path.startswith("/") else path
        elif head and head[0] == "Rss:":
            sizes[name] += int(head[1])
    return sizes


def worker_pids(log: Path) -> dict[int, int]:
    """Worker index -> pid of the workers the parent started last."""
    pids: dict[int, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"gateway.worker_started"' in line:
            e = json.loads(line)
            pids[int(e["index"])] = int(e["pid"])
    return pids


def mb(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def measure(dtls: bool, workers: int, settle: float, breakdown: bool, modules_out: Path | None) -> None:
    from tests.e2e.testbed import Testbed, wait_until

    tag = f"dtls_{'on' if dtls else 'off'}"
    with tempfile.TemporaryDirectory() as d:
        bed = Testbed(Path(d), tag=f"m{os.getpid() % 100000}{tag[5:7]}")
        try:
            bed.build()
            bed.init_site()
            text = bed.config.read_text()
            text = text.replace('workers = "auto"', f"workers = {workers}")
            text = text.replace("\ndtls = true\n", f"\ndtls = {'true' if dtls else 'false'}\n")
            bed.config.write_text(text)
            bed.start_gateway()
            wait_until(lambda: bed.gw_log.read_text().count("gateway.listening") >= workers, 60)
            time.sleep(settle)  # idle: start-up finished, nothing connected
            assert bed.gw_proc is not None
            serving = worker_pids(bed.gw_log) or {0: bed.gw_proc.pid}  # workers = 1: the gateway itself
            for index, pid in sorted(serving.items()):
                r = rollup(pid)
                print(
                    f"{tag}.worker{index} rss {mb(r['Rss'])} MB pss {mb(r['Pss'])} MB uss {mb(r['Uss'])} MB "
                    f"anon {mb(r['Anonymous'])} MB threads {threads(pid)}",
                    flush=True,
                )
                for child in children(pid):
                    c = rollup(child)
                    print(f"{tag}.worker{index}.pool rss {mb(c['Rss'])} MB pss {mb(c['Pss'])} MB uss {mb(c['Uss'])} MB")
                if index == 0:
                    top = sorted(mappings(pid).items(), key=lambda kv: -kv[1])[:14]
                    print(f"{tag}.worker0.mappings " + ", ".join(f"{n} {mb(k)}" for n, k in top) + " (MB RSS)")
            if workers > 1:
                parent = rollup(bed.gw_proc.pid)
                print(f"{tag}.parent rss {mb(parent['Rss'])} MB pss {mb(parent['Pss'])} MB", flush=True)
            bed.stop_gateway()
            if breakdown:
                modules = loaded_modules(bed, workers)
                last = modules[max(modules)]  # a worker without worker 0's chores (metrics, mail)
                for index, names in sorted(modules.items()):
                    tops = sorted({m.split(".")[0] for m in names} - {m.split(".")[0] for m in last})
                    beyond = f" (beyond the last: {' '.join(tops)})" if tops else ""
                    print(f"{tag}.worker{index} modules {len(names)}{beyond}")
                if modules_out is not None:
                    for index, names in modules.items():
                        (modules_out / f"{tag}.worker{index}.json").write_text(json.dumps(names))
                probe(last, bed.config)
        finally:
            bed.destroy()


def loaded_modules(bed: object, workers: int) -> dict[int, list[str]]:
    """Each worker's modules at exit (which are its modules when idle: nothing happened in between)."""
    from tests.e2e.testbed import Testbed, wait_until

    assert isinstance(bed, Testbed)
    with tempfile.TemporaryDirectory() as hook, tempfile.TemporaryDirectory() as out:
        Path(hook, "sitecustomize.py").write_text(SITECUSTOMIZE)
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "BENCH_MODULES_DIR")}
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [hook, saved["PYTHONPATH"]]))
        os.environ["BENCH_MODULES_DIR"] = out
        try:
            bed.gw_log.write_text("")
            bed.start_gateway()
            wait_until(lambda: bed.gw_log.read_text().count("gateway.listening") >= workers, 60)
            assert bed.gw_proc is not None
            pids = worker_pids(bed.gw_log) or {0: bed.gw_proc.pid}
            bed.stop_gateway()
            wait_until(lambda: all(Path(out, f"{pid}.json").exists() for pid in pids.values()), 15)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return {i: list(json.loads(Path(out, f"{pid}.json").read_text())["modules"]) for i, pid in pids.items()}


def probe(modules: list[str], config: Path) -> None:
    from campusvpn.platform.config import load_config

    # The config as the parent hands it to a worker (app.workers.config_fd): validated here.
    handed = config.with_suffix(".pickle")
    handed.write_bytes(pickle.dumps(load_config(config)))
    r = subprocess.run(
        [sys.executable, __file__, "--probe", str(handed)],
        input=json.dumps(modules),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    print(r.stdout.rstrip(), flush=True)
    if r.returncode:
        print(f"# probe failed: {r.stderr.strip()[-800:]}", flush=True)


def own_rss() -> int:
    return rollup(os.getpid())["Rss"]


def run_probe(config: Path) -> None:
    """In this fresh interpreter: import the worker's modules package by package, then start-up."""
    import importlib

    modules: list[str] = json.loads(sys.stdin.read())
    stdlib = set(sys.stdlib_module_names)
    order: list[str] = []
    for m in modules:
        top = m.split(".")[0]
        if top not in order and top not in ("__main__", "__mp_main__", "sitecustomize"):
            order.append(top)
    order.sort(key=lambda t: 0 if t in stdlib or t.startswith("_") else (2 if t == "campusvpn" else 1))
    total = before = own_rss()
    print(f"probe.interpreter rss {mb(before)} MB")
    rows: list[tuple[int, str, list[str]]] = []
    for top in order:
        have = {m.split(".")[0] for m in sys.modules}
        start = own_rss()
        for m in modules:
            if (m == top or m.startswith(top + ".")) and m not in sys.modules:
                try:
                    importlib.import_module(m)
                except Exception:  # noqa: S112 - a module that only imports in its own context (platform-specific, __mp_main__)
                    continue
        grown = own_rss() - start
        pulled = sorted({m.split(".")[0] for m in sys.modules} - have - {top})
        rows.append((grown, top, pulled))
    stdlib_total = sum(g for g, t, _ in rows if t in stdlib or t.startswith("_"))
    print(f"probe.import.stdlib rss +{mb(stdlib_total)} MB")
    for grown, top, pulled in sorted((r for r in rows if not (r[1] in stdlib or r[1].startswith("_"))), reverse=True):
        if grown >= 256:
            extra = f" (with {', '.join(pulled)})" if pulled else ""
            print(f"probe.import.{top} rss +{mb(grown)} MB{extra}")
    imported = own_rss()
    print(f"probe.imports rss {mb(imported)} MB (+{mb(imported - total)} MB)")
    from campusvpn.app.serve import build
    from campusvpn.app.workers import read_config
    from campusvpn.service.context import open_context

    cfg = read_config(os.open(config, os.O_RDONLY))
    loaded = own_rss()
    ctx = open_context(cfg, migrate=False)
    opened = own_rss()
    build(ctx, tun_fd=None)
    built = own_rss()
    print(
        f"probe.startup read_config +{mb(loaded - imported)} MB open_context +{mb(opened - loaded)} MB "
        f"build +{mb(built - opened)} MB -> rss {mb(built)} MB"
    )


def main() -> None:
    p = argparse.ArgumentParser(description="An idle gateway worker's memory, and what it is made of.")
    p.add_argument("--dtls", default="on,off", help="on, off or on,off")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--settle", type=float, default=5.0, help="seconds of idling before the reading")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-package breakdown")
    p.add_argument("--modules-out", metavar="DIR", type=Path, help="write each worker's module list here")
    p.add_argument("--probe", metavar="PICKLED_CONFIG", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.probe:
        run_probe(Path(a.probe))
        return
    from tests.e2e.testbed import missing_requirements

    missing = missing_requirements()
    if missing:
        sys.exit(f"worker_memory: {missing}")
    for setting in a.dtls.split(","):
        measure(setting == "on", a.workers, a.settle, not a.no_breakdown, a.modules_out)


if __name__ == "__main__":
    main()
