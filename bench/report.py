"""Build bench/RESULTS.md and its charts from one bench/run.sh run (ocserv and campusvpn figures).

Usage: python bench/report.py RUN_DIR BENCH_DIR
RUN_DIR holds ocserv/figures.txt and campusvpn/figures.txt as written by the test bed's run-all.sh,
and campusvpn-fortinet/figures.txt (campusvpn over the FortiGate protocol, tunnel figures) when run.sh
took them.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# (figure suffix, label, unit, better: "high" or "low", target ratio campusvpn/ocserv or None)
ROWS = [
    ("tunnel.tcp_c2s_1stream", "TCP client→campus, 1 stream", "Mbit/s", "high", 1.0),
    ("tunnel.tcp_s2c_1stream", "TCP campus→client, 1 stream", "Mbit/s", "high", 1.0),
    ("tunnel.tcp_c2s_4streams", "TCP client→campus, 4 streams", "Mbit/s", "high", 1.0),
    ("tunnel.tcp_s2c_4streams", "TCP campus→client, 4 streams", "Mbit/s", "high", 1.0),
    ("tunnel.ping_rtt_median", "ping RTT through the tunnel (median)", "ms", "low", 1.2),
    ("setup.connect_median", "full connect (auth + tunnel + first ping), median", "s", "low", 1.0),
    ("setup.connect_p95", "full connect, p95", "s", "low", None),
    ("setup.handshake_median", "gateway part of the connect, median", "s", "low", 1.0),
    ("memory.gw_rss_per_session", "gateway RSS per idle session (50 sessions)", "KiB", "low", 0.1),
    ("memory.gw_pss_per_session", "gateway PSS per idle session (50 sessions)", "KiB", "low", None),
    ("memory.gw_rss_base", "gateway RSS with no session", "KiB", "low", None),
    ("idle.gw_cpu", "gateway CPU, 50 idle sessions", "% of a core", "low", None),
]


EXTRA_ROWS = [
    ("signin.auth_median", "sign-in until the cookie (campusvpn: password + TOTP; ocserv: password)", "s", "≤ 1.0"),
    ("signin.resume_median", "tunnel up from a cookie (resumption)", "s", ""),
    ("signin.connect_median", "sign-in + tunnel up", "s", "≤ 1.0"),
    ("login.rate", "login throughput (4 parallel openconnect clients on the same machine)", "sign-ins/s", ""),
    ("core_signin.rate", "… campusvpn's sign-in core alone (one process, no network)", "sign-ins/s", ""),
    ("argon2.verify_ms", "… one Argon2id verify at the configured cost", "ms", ""),
    ("argon2.machine_rate", "… Argon2id verifies the whole machine does (a process per core)", "verifies/s", ""),
]

# campusvpn over the FortiGate protocol: its result folder and its gateway name in the figures.
FORTINET = "campusvpn-fortinet"

# Processes of the test bed's own, not the gateway's, in its CPU log.
NOT_GATEWAY = {"iperf3-server", "iperf3-client", "openconnect", "wall", "ncpu"}
THROUGHPUT_TAGS = [
    ("c2s-1", "client→campus, 1 stream"),
    ("s2c-1", "campus→client, 1 stream"),
    ("c2s-4", "client→campus, 4 streams"),
    ("s2c-4", "campus→client, 4 streams"),
]


def figures(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                out[parts[0]] = float(parts[1])
    return out


def cpu_per_gbit(gw_dir: Path, mode: str = "off") -> dict[str, float]:
    """Gateway CPU (% of one core, all its processes) per Gbit/s of tunnel throughput, median of the runs.

    From the test bed's CPU log (`tag role=NN%(uX/kY) ...`, sampled during each iperf3 run) and its
    run log (`tag MBPS Mbit/s ...`); a run repeated for CPU steal counts with its last attempt."""
    cpu_log, runs_log = gw_dir / f"dtls-{mode}-cpu.txt", gw_dir / f"dtls-{mode}-runs.txt"
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
    for short, _label in THROUGHPUT_TAGS:
        per = sorted(
            gw_pct[tag] / (mbps[tag] / 1000)
            for tag in gw_pct
            if tag.startswith(f"tun-{short}-r") and mbps.get(tag, 0) > 0
        )
        if per:
            out[short] = per[len(per) // 2]
    return out


def pick(figs: dict[str, float], name: str, suffix: str, mode: str = "off") -> float | None:
    return figs.get(f"{name}.dtls-{mode}.{suffix}")


def version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).splitlines()[0].strip()  # ocserv prints its version on stderr
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def main() -> None:
    run, bench = Path(sys.argv[1]), Path(sys.argv[2])
    oc = figures(run / "ocserv" / "figures.txt")
    cv = figures(run / "campusvpn" / "figures.txt")
    cf = figures(run / FORTINET / "figures.txt")  # empty for runs from before the FortiGate protocol
    fortinet_head, fortinet_rule = (" campusvpn, FortiGate protocol (TLS only) |", "---|") if cf else ("", "")
    lines = [
        "# campusvpn against ocserv",
        "",
        f"One run of `bash bench/run.sh` started {_started(run)}: the test bed in "
        "`../shared/testbed` (three network namespaces, the real openconnect client), ocserv first, then campusvpn, "
        f"same machine. Raw figures: `bench/results/{run.name}/`.",
        "",
        f"| figure | ocserv (TLS only) | campusvpn (TLS only) |{fortinet_head} unit "
        "| ratio campusvpn/ocserv | target |",
        f"|---|---|---|{fortinet_rule}---|---|---|",
    ]
    for suffix, label, unit, better, target in ROWS:
        o, c = pick(oc, "ocserv", suffix), pick(cv, "campusvpn", suffix)
        ratio = _ratio(o, c)
        if target is None:
            goal = ""
        else:
            goal = f"{'≥' if better == 'high' else '≤'} {target}"
            if o and c is not None:
                met = (c / o >= target) if better == "high" else (c / o <= target)
                goal += " ✔" if met else " ✘"
        f = f" {_fmt(pick(cf, FORTINET, suffix))} |" if cf else ""
        lines.append(f"| {label} | {_fmt(o)} | {_fmt(c)} |{f} {unit} | {ratio} | {goal} |")
    oc_cpu, cv_cpu = cpu_per_gbit(run / "ocserv"), cpu_per_gbit(run / "campusvpn")
    cf_cpu = cpu_per_gbit(run / FORTINET)
    for short, label in THROUGHPUT_TAGS:
        o, c = oc_cpu.get(short), cv_cpu.get(short)
        ratio = _ratio(o, c)
        f = f" {_fmt(cf_cpu.get(short))} |" if cf else ""
        lines.append(f"| gateway CPU per Gbit/s, {label} | {_fmt(o)} | {_fmt(c)} |{f} % of a core | {ratio} | |")
    extra = figures(run / "extra-figures.txt")
    if extra:
        lines += [
            "",
            "### Sign-in, resumption, many idle tunnels",
            "",
            "| figure | ocserv | campusvpn | unit | ratio | target |",
            "|---|---|---|---|---|---|",
        ]
        for key, label, unit, target in EXTRA_ROWS:
            o, c = extra.get(f"ocserv.{key}"), extra.get(f"campusvpn.{key}")
            ratio = _ratio(o, c)
            lines.append(f"| {label} | {_fmt(o)} | {_fmt(c)} | {unit} | {ratio} | {target} |")
        for n in (1000, 10000):
            tag = f"campusvpn.idle{n}"
            if f"{tag}.sessions_up" in extra:
                lines.append(
                    f"| {n} idle tunnels held (campusvpn): up / failed | - | {extra[f'{tag}.sessions_up']:.0f} / "
                    f"{extra.get(f'{tag}.failed', 0):.0f} | count | - | {'' if n < 10000 else '10,000 held'} |"
                )
                if f"{tag}.connects_retried" in extra:
                    lines.append(
                        f"| … connects tried again after the gateway dropped them (clients retry) | - | "
                        f"{extra[f'{tag}.connects_retried']:.0f} | count | - | |"
                    )
                lines.append(
                    f"| … RSS per idle tunnel at {n} | - | {_fmt(extra.get(f'{tag}.gw_rss_per_session'))} "
                    f"| KiB | - | ≤ 640 |"
                )
                lines.append(
                    f"| … PSS per idle tunnel at {n} | - | {_fmt(extra.get(f'{tag}.gw_pss_per_session'))} | KiB | - | |"
                )
                lines.append(
                    f"| … gateway CPU with {n} idle tunnels | - | {_fmt(extra.get(f'{tag}.gw_cpu'))} "
                    f"| % of a core | - | {'< 10' if n == 10000 else ''} |"
                )
                lines.append(
                    f"| … DPD requests answered / sent | - | {extra.get(f'{tag}.dpd_answered', 0):.0f} / "
                    f"{extra.get(f'{tag}.dpd_sent', 0):.0f} | count | - | all |"
                )
    dtls = pick(oc, "ocserv", "tunnel.tcp_c2s_1stream", "on")
    raw = oc.get("raw.tcp_c2s_1stream")
    lines += [
        "",
        f"For reference: ocserv with DTLS, 1 stream client→campus: {_fmt(dtls)} Mbit/s; plain forwarding "
        f"without VPN: {_fmt(raw)} Mbit/s. campusvpn has no DTLS yet, so its clients run CSTP over TLS.",
        "",
        "campusvpn's connects sign in with the password from a trusted device (the test bed repeats connects "
        "faster than one TOTP step, and campusvpn accepts each TOTP code once); ocserv's with a password only.",
        *(
            [
                "",
                "The FortiGate-protocol column is the same campusvpn gateway measured with "
                "`openconnect --protocol=fortinet` (PPP over TLS instead of CSTP), tunnel figures only: that "
                "protocol has no trusted-device URL, so its one connect signs in with password + TOTP and the "
                "setup and memory phases' rapid reconnects are not taken.",
            ]
            if cf
            else []
        ),
        "",
        "![throughput](throughput.png)",
        "",
        "![memory per session](memory.png)",
        "",
        "## Machine and versions",
        "",
        f"- {platform.node()}: {platform.machine()}, {_cpus()} CPUs, Linux {platform.release()}",
        f"- {version(['ocserv', '--version'])}; {version(['openconnect', '--version'])}",
        f"- Python {platform.python_version()}",
    ]
    analysis = bench / "ANALYSIS.md"  # hand-written: what limits the figures still short of a target
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    (bench / "RESULTS.md").write_text("\n".join(lines) + "\n")
    _charts(oc, cv, cf, bench)


def _started(run: Path) -> str:
    """When the run began, from its directory name (run.sh names it by UTC time), not when this report ran."""
    try:
        return datetime.strptime(run.name, "%Y%m%d-%H%M").strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return f"at an unknown time ({run.name})"


def _ratio(ocserv: float | None, campusvpn: float | None) -> str:
    return f"{campusvpn / ocserv:.2f}" if ocserv and campusvpn is not None else "-"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.0f}"


def _cpus() -> str:
    import os

    return str(os.cpu_count())


def _charts(oc: dict[str, float], cv: dict[str, float], cf: dict[str, float], bench: Path) -> None:
    names = ["tcp_c2s_1stream", "tcp_s2c_1stream", "tcp_c2s_4streams", "tcp_s2c_4streams"]
    labels = ["c→s 1", "s→c 1", "c→s 4", "s→c 4"]
    o = [pick(oc, "ocserv", f"tunnel.{n}") or 0 for n in names]
    c = [pick(cv, "campusvpn", f"tunnel.{n}") or 0 for n in names]
    series = [("ocserv (TLS only)", o), ("campusvpn (TLS only)", c)]
    if cf:
        series.append(("campusvpn, FortiGate protocol", [pick(cf, FORTINET, f"tunnel.{n}") or 0 for n in names]))
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(names))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        ax.bar([x + (i - (len(series) - 1) / 2) * width for x in xs], values, width, label=label)
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("Mbit/s")
    ax.set_title("TCP throughput through the tunnel (streams)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(bench / "throughput.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    key = "memory.gw_rss_per_session"
    vals = [pick(oc, "ocserv", key) or 0, pick(cv, "campusvpn", key) or 0]
    ax.bar(["ocserv", "campusvpn"], vals, color=["tab:blue", "tab:orange"])
    ax.set_ylabel("KiB per idle session (RSS)")
    ax.set_title("Gateway memory per session (50 sessions)")
    fig.tight_layout()
    fig.savefig(bench / "memory.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
