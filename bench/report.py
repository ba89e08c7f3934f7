"""Build bench/RESULTS.md and its charts from one bench/run.sh run: ocserv and campusvpn in alternating rounds.

Usage: python bench/report.py RUN_DIR BENCH_DIR
RUN_DIR holds what run.sh wrote: figures.txt (`TAG name value unit` lines; TAG r1, r2… is the round, r0 the
plain-forwarding baseline, `idle` and `core` the once-per-run figures), meta.txt, load.txt (load average and
/proc/stat's cpu line at every slot's start and end) and rN/<gateway>-dtls-<on|off>/{cpu,runs}.txt (the test
bed's CPU and per-run logs). Every figure is reported as the median over the rounds with its min–max, and
each campusvpn/ocserv ratio both as the ratio of the medians and as the spread of the per-round ratios.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

THROUGHPUT = [
    ("tcp_c2s_1stream", "TCP client→campus, 1 stream"),
    ("tcp_s2c_1stream", "TCP campus→client, 1 stream"),
    ("tcp_c2s_4streams", "TCP client→campus, 4 streams"),
    ("tcp_s2c_4streams", "TCP campus→client, 4 streams"),
]
# Processes of the test bed's own, not the gateway's, in its CPU log.
NOT_GATEWAY = {"iperf3-server", "iperf3-client", "openconnect", "wall", "ncpu"}
CPU_TAGS = {
    "c2s-1": "tcp_c2s_1stream",
    "s2c-1": "tcp_s2c_1stream",
    "c2s-4": "tcp_c2s_4streams",
    "s2c-4": "tcp_s2c_4streams",
}


@dataclass(frozen=True)
class Row:
    label: str
    ocserv: str  # figure names (without the round tag)
    campusvpn: str
    unit: str
    better: str  # "high" or "low"
    target: float | None = None


def rows() -> list[tuple[str, list[Row]]]:
    tunnel = []
    for mode, what in (("on", "DTLS"), ("off", "TLS only")):
        for key, label in THROUGHPUT:
            o, c = f"ocserv.dtls-{mode}.tunnel.{key}", f"campusvpn.dtls-{mode}.tunnel.{key}"
            tunnel.append(Row(f"{what}: {label}", o, c, "Mbit/s", "high", 1.0))
        o, c = f"ocserv.dtls-{mode}.tunnel.ping_rtt_median", f"campusvpn.dtls-{mode}.tunnel.ping_rtt_median"
        tunnel.append(Row(f"{what}: ping RTT through the tunnel (median of 20)", o, c, "ms", "low", 1.2))
    signin = [
        Row(
            "connect: sign-in + tunnel + first ping (campusvpn password + TOTP, ocserv password)",
            "ocserv.signin.connect_median",
            "campusvpn.signin.connect_median",
            "s",
            "low",
            1.0,
        ),
        Row("… sign-in until the cookie", "ocserv.signin.auth_median", "campusvpn.signin.auth_median", "s", "low"),
        Row("… tunnel up from the cookie", "ocserv.signin.resume_median", "campusvpn.signin.resume_median", "s", "low"),
        Row(
            "… first echo reply through the tunnel",
            "ocserv.signin.first_ping_median",
            "campusvpn.signin.first_ping_median",
            "s",
            "low",
        ),
        Row(
            "… connects that failed (no cookie, no tunnel, or no echo reply within 5 s)",
            "ocserv.signin.failures",
            "campusvpn.signin.failures",
            "count",
            "low",
        ),
        Row(
            "sign-ins/s, campusvpn all workers (password + TOTP, configured Argon2id) vs ocserv (password)",
            "ocserv.login.rate",
            "campusvpn.workers-all.login.rate",
            "sign-ins/s",
            "high",
            0.9,
        ),
        Row(
            "sign-ins/s, campusvpn one worker",
            "ocserv.login.rate",
            "campusvpn.workers-1.login.rate",
            "sign-ins/s",
            "high",
        ),
        Row(
            f"gateway RSS per idle session ({'{sessions}'} sessions)",
            "ocserv.dtls-off.memory.gw_rss_per_session",
            "campusvpn.dtls-off.memory.gw_rss_per_session",
            "KiB",
            "low",
            0.1,
        ),
        Row(
            "gateway PSS per idle session",
            "ocserv.dtls-off.memory.gw_pss_per_session",
            "campusvpn.dtls-off.memory.gw_pss_per_session",
            "KiB",
            "low",
        ),
        Row(
            "gateway RSS with no session (campusvpn: one worker and its hash pool)",
            "ocserv.dtls-off.memory.gw_rss_base",
            "campusvpn.dtls-off.memory.gw_rss_base",
            "KiB",
            "low",
        ),
        Row(
            "gateway CPU while those sessions idle",
            "ocserv.dtls-off.idle.gw_cpu",
            "campusvpn.dtls-off.idle.gw_cpu",
            "% of a core",
            "low",
        ),
    ]
    cpu = [
        Row(
            f"gateway CPU per Gbit/s, DTLS {mode}, {label[4:]}",
            f"ocserv.cpu.dtls-{mode}.{key}",
            f"campusvpn.cpu.dtls-{mode}.{key}",
            "% of a core",
            "low",
        )
        for mode in ("on", "off")
        for key, label in THROUGHPUT
    ]
    return [("Tunnel", tunnel), ("Sign-in, connect, memory", signin), ("Gateway CPU per Gbit/s", cpu)]


def read_figures(path: Path) -> dict[str, dict[str, float]]:
    """{tag: {name: value}} from run.sh's figures.txt."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                out[parts[0]][parts[1]] = float(parts[2])
    return out


def cpu_per_gbit(slot: Path) -> dict[str, float]:
    """The gateway's CPU (% of one core, all its processes) per Gbit/s in each throughput run of one slot.

    From the test bed's CPU log (`tag role=NN%(uX/kY) ...`, sampled during each iperf3 run) and its run
    log (`tag MBPS Mbit/s ...`); a run repeated for CPU steal counts with its last attempt."""
    cpu_log, runs_log = slot / "cpu.txt", slot / "runs.txt"
    if not cpu_log.exists() or not runs_log.exists():
        return {}
    gw_pct: dict[str, float] = {}
    for line in cpu_log.read_text().splitlines():
        tag, *fields = line.split()
        if not tag.startswith("tun-") or not fields or fields[0] == "drops:":
            continue
        total = 0.0
        for f in fields:
            role, sep, value = f.partition("=")
            if sep and role not in NOT_GATEWAY and not role.startswith("sys_") and value.endswith(")"):
                with contextlib.suppress(ValueError):
                    total += float(value.split("%")[0])
        gw_pct[tag] = total
    mbps: dict[str, float] = {}
    for line in runs_log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith("tun-") and parts[2] == "Mbit/s":
            with contextlib.suppress(ValueError):
                mbps[parts[0]] = float(parts[1])
    out: dict[str, float] = {}
    for tag in sorted(gw_pct):  # attempts sort after the run they repeat: the last one wins
        short = tag.removeprefix("tun-").split("-r")[0]
        if short in CPU_TAGS and mbps.get(tag, 0) > 0:
            out[CPU_TAGS[short]] = gw_pct[tag] / (mbps[tag] / 1000)
    return out


def add_cpu_figures(run: Path, figs: dict[str, dict[str, float]]) -> None:
    for slot in sorted(run.glob("r*/*-dtls-*")):
        gw, _, mode = slot.name.partition("-dtls-")
        if mode in ("on", "off"):
            for key, value in cpu_per_gbit(slot).items():
                figs[slot.parent.name][f"{gw}.cpu.dtls-{mode}.{key}"] = value


def rounds_of(figs: dict[str, dict[str, float]]) -> list[str]:
    return sorted((t for t in figs if t[:1] == "r" and t[1:].isdigit() and t != "r0"), key=lambda t: int(t[1:]))


def spread(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = statistics.median(xs)
    return _fmt(m) if len(xs) == 1 else f"{_fmt(m)} [{_fmt(min(xs))}–{_fmt(max(xs))}]"


def table_row(row: Row, figs: dict[str, dict[str, float]], rounds: list[str], sessions: str) -> str:
    o = [figs[t][row.ocserv] for t in rounds if row.ocserv in figs[t]]
    c = [figs[t][row.campusvpn] for t in rounds if row.campusvpn in figs[t]]
    per_round = [
        figs[t][row.campusvpn] / figs[t][row.ocserv]
        for t in rounds
        if figs[t].get(row.ocserv) and row.campusvpn in figs[t]
    ]
    ratio = statistics.median(c) / statistics.median(o) if o and c and statistics.median(o) else None
    goal = ""
    if row.target is not None:
        goal = f"{'≥' if row.better == 'high' else '≤'} {row.target}"
        if ratio is not None:

            def met(x: float) -> bool:
                return x >= row.target if row.better == "high" else x <= row.target  # type: ignore[operator]

            if met(ratio):
                goal += " ✔" if all(met(x) for x in per_round) else " ✔ (median; not every round)"
            else:
                goal += " ✘"
    label = row.label.replace("{sessions}", sessions)
    ratio_s = "-" if ratio is None else f"{ratio:.2f}"
    rr = "-"
    if per_round:
        rr = f"{min(per_round):.2f}–{max(per_round):.2f}" if len(per_round) > 1 else f"{per_round[0]:.2f}"
    return f"| {label} | {spread(o)} | {spread(c)} | {row.unit} | {ratio_s} | {rr} | {goal} |"


def load_line(run: Path) -> str:
    """The machine's load during the run: 1-minute load average at the slots' edges, CPU busy and steal."""
    path = run / "load.txt"
    if not path.exists():
        return "Machine load: not recorded."
    samples = []
    for line in path.read_text().splitlines():
        p = line.split()
        if len(p) >= 13 and p[5] == "cpu":
            samples.append((float(p[2]), [int(x) for x in p[6:14]]))
    if len(samples) < 2:
        return "Machine load: not recorded."
    loads = [s[0] for s in samples]
    first, last = samples[0][1], samples[-1][1]
    d = [b - a for a, b in zip(first, last, strict=True)]
    total = sum(d) or 1
    steal, idle = d[7] / total * 100, (d[3] + d[4]) / total * 100
    worst = 0.0
    for (_, a), (_, b) in itertools.pairwise(samples):
        dd = [y - x for x, y in zip(a, b, strict=True)]
        worst = max(worst, dd[7] / (sum(dd) or 1) * 100)
    return (
        f"Machine load during the run: 1-minute load average {min(loads):.2f}–{max(loads):.2f} "
        f"(median {statistics.median(loads):.2f}) on {_cpus()} cores at the {len(samples)} slot edges; "
        f"CPU busy {100 - idle:.0f} % of both cores over the whole run (the bench itself and other work on the "
        f"machine); hypervisor steal {steal:.1f} % over the run, at most {worst:.1f} % in one slot."
    )


def main() -> None:
    run, bench = Path(sys.argv[1]), Path(sys.argv[2])
    figs = read_figures(run / "figures.txt")
    add_cpu_figures(run, figs)
    rounds = rounds_of(figs)
    meta = _meta(run)
    opts = dict(kv.split("=", 1) for kv in meta.get("options", "").split() if "=" in kv)
    sessions = opts.get("sessions", "50")
    lines = [
        "# campusvpn against ocserv",
        "",
        f"One run of `bash bench/run.sh` started {meta.get('started', '?')} ({meta.get('options', '')}): "
        f"{len(rounds)} alternating round{'s' if len(rounds) != 1 else ''} on the test bed in `../shared/testbed` "
        "(three network namespaces, the real openconnect client). Each round starts each gateway afresh, in the "
        "order ocserv DTLS on, campusvpn DTLS on, ocserv DTLS off, campusvpn DTLS off, and the reverse in every "
        "other round, so that a noisy minute falls on both. "
        f"The run took {_duration(meta)}. Raw figures and logs: `bench/results/{run.name}/`.",
        "",
        load_line(run),
        "",
        "Each cell is the median over the rounds with [min–max]; *ratio* is campusvpn's median over ocserv's, "
        "*per round* the spread of the ratios taken within each round. A target marked ✔ is met by the ratio "
        'of the medians; "not every round" says some round\'s own ratio missed it.',
    ]
    for title, group in rows():
        lines += [
            "",
            f"### {title}",
            "",
            "| figure | ocserv | campusvpn | unit | ratio | per round | target |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [table_row(r, figs, rounds, sessions) for r in group if _present(r, figs, rounds)]
    once = {**figs.get("idle", {}), **figs.get("core", {}), **figs.get("r0", {})}
    lines += ["", "### Once per run", "", "| figure | value | unit | target |", "|---|---|---|---|"]
    for name in sorted(n for n in once if n.startswith("campusvpn.idle")):
        n = name.split(".")[1].removeprefix("idle")
        what = name.split(".", 2)[2]
        target = {"gw_cpu": "< 10", "gw_rss_per_session": "≤ 640"}.get(what, "")
        if what == "gw_cpu" and n.isdigit() and int(n) >= 10000:
            target += " ✔" if once[name] < 10 else " ✘"
        lines.append(f"| campusvpn, {int(n):,} idle tunnels: {what} | {_fmt(once[name])} | {_unit(what)} | {target} |")
    for name, label, unit in (
        ("campusvpn.core_signin.rate", "campusvpn's sign-in core alone (one process, no network)", "sign-ins/s"),
        ("campusvpn.argon2.verify_ms", "one Argon2id verify at the configured cost", "ms"),
        ("campusvpn.argon2.machine_rate", "Argon2id verifies by the whole machine (a process per core)", "verifies/s"),
        ("raw.ping_rtt_median", "plain forwarding without VPN: ping RTT", "ms"),
        ("raw.tcp_c2s_1stream", "plain forwarding: TCP client→campus, 1 stream", "Mbit/s"),
        ("raw.tcp_s2c_1stream", "plain forwarding: TCP campus→client, 1 stream", "Mbit/s"),
    ):
        if name in once:
            lines.append(f"| {label} | {_fmt(once[name])} | {unit} | |")
    lines += [
        "",
        "The tunnel figures are one iperf3 run per round and figure (bench.sh `--reps 1`); campusvpn runs with "
        '`[gateway] workers = "auto"` (one per core) except in the one-worker slot, which also takes its RSS per '
        "idle session after its sign-ins started the hash pool. The idle tunnels (bench/idle_sessions.py: a DPD "
        "request every 10 s per tunnel, keepalive 60 s) are held by one worker, whose pid is measured.",
        "",
        "![throughput](throughput.png)",
        "",
        "![memory per session](memory.png)",
        "",
        "## Machine and versions",
        "",
        *(f"- {k}: {v}" for k, v in meta.items() if k not in ("started", "finished", "options", "duration")),
    ]
    analysis = bench / "ANALYSIS.md"  # hand-written: what limits the figures still short of a target
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    (bench / "RESULTS.md").write_text("\n".join(lines) + "\n")
    _charts(figs, rounds, bench)


def _present(row: Row, figs: dict[str, dict[str, float]], rounds: list[str]) -> bool:
    return any(row.ocserv in figs[t] or row.campusvpn in figs[t] for t in rounds)


def _meta(run: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    path = run / "meta.txt"
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                out[key] = value
    return out


def _duration(meta: dict[str, str]) -> str:
    with contextlib.suppress(KeyError, ValueError):
        s = int(meta["duration"].split()[0])
        return f"{s // 60} min {s % 60} s"
    return "an unrecorded time"


def _unit(what: str) -> str:
    if "rss" in what or "pss" in what:
        return "KiB"
    return {"gw_cpu": "% of a core", "connect_all": "s"}.get(what, "count")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == int(v):
        return str(int(v))
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}"  # three significant digits below 10


def _cpus() -> str:
    import os

    return str(os.cpu_count())


def _charts(figs: dict[str, dict[str, float]], rounds: list[str], bench: Path) -> None:
    def vals(name: str) -> list[float]:
        return [figs[t][name] for t in rounds if name in figs[t]]

    series = [
        ("ocserv, DTLS", "ocserv.dtls-on"),
        ("campusvpn, DTLS", "campusvpn.dtls-on"),
        ("ocserv, TLS only", "ocserv.dtls-off"),
        ("campusvpn, TLS only", "campusvpn.dtls-off"),
    ]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(series)
    for i, (label, prefix) in enumerate(series):
        med, lo, hi = [], [], []
        for key, _ in THROUGHPUT:
            xs = vals(f"{prefix}.tunnel.{key}") or [0.0]
            m = statistics.median(xs)
            med.append(m)
            lo.append(m - min(xs))
            hi.append(max(xs) - m)
        xs_pos = [x + (i - (len(series) - 1) / 2) * width for x in range(len(THROUGHPUT))]
        ax.bar(xs_pos, med, width, yerr=[lo, hi], capsize=3, label=label)
    ax.set_xticks(range(len(THROUGHPUT)), ["c→s 1", "s→c 1", "c→s 4", "s→c 4"])
    ax.set_ylabel("Mbit/s (median, bars: min–max of the rounds)")
    ax.set_title("TCP throughput through the tunnel (streams)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(bench / "throughput.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    key = "dtls-off.memory.gw_rss_per_session"
    meds = [statistics.median(vals(f"{gw}.{key}") or [0.0]) for gw in ("ocserv", "campusvpn")]
    ax.bar(["ocserv", "campusvpn"], meds, color=["tab:blue", "tab:orange"])
    ax.set_ylabel("KiB per idle session (RSS, median)")
    ax.set_title("Gateway memory per idle session")
    fig.tight_layout()
    fig.savefig(bench / "memory.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
