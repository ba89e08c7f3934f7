"""A short run of the benchmark programs against the e2e test bed, so the bench code keeps working.

The full comparison (`bash bench/run.sh`) needs the shared test bed and about 25 minutes; this checks in
seconds that each program still runs and reports sane figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.testbed import CAMPUS_IP, GW_IP, Testbed, missing_requirements, sh

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"bench smoke: {missing_requirements()}")


def figures(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#"):
            out[parts[0]] = float(parts[1])
    return out


def test_idle_sessions_bench_holds_tunnels_and_gets_dpd_answers(bed: Testbed) -> None:
    assert bed.gw_proc is not None
    r = sh(
        "ip",
        "netns",
        "exec",
        bed.ns_client,
        sys.executable,
        str(BENCH / "idle_sessions.py"),
        "--config",
        str(bed.config),
        "--addr",
        GW_IP,
        "--sessions",
        "20",
        "--hold",
        "4",
        "--dpd",
        "1",
        "--gw-pid",
        str(bed.gw_proc.pid),
        "--user",
        "3000000020",
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    f = figures(r.stdout)
    assert f["campusvpn.idle20.sessions_up"] == 20
    assert f["campusvpn.idle20.failed"] == 0
    assert f["campusvpn.idle20.dpd_answered"] > 0
    assert f["campusvpn.idle20.dpd_answered"] >= f["campusvpn.idle20.dpd_sent"] - 20  # answers still in flight
    assert f["campusvpn.idle20.gw_rss_base"] > 0
    bed.cli(None, "session", "kill", "--user", "3000000020")


def run_signin_bench(bed: Testbed, script: str, *args: str) -> dict[str, float]:
    """Run one of the bench programs that sign in with openconnect against the e2e gateway."""
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH / script),
            *("--config", str(bed.config), "--pin", bed.pin, "--url", f"https://{GW_IP}/", "--ns", bed.ns_client),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return figures(r.stdout)


def test_connect_time_bench_signs_in_with_totp_resumes_and_pings(bed: Testbed) -> None:
    args = ("--rounds", "2", "--first-user", "4000000100", "--campus", CAMPUS_IP)
    f = run_signin_bench(bed, "connect_time.py", *args)
    assert f["campusvpn.signin.rounds"] == 2 and f["campusvpn.signin.failures"] == 0
    assert 0 < f["campusvpn.signin.auth_median"] < 10
    assert 0 < f["campusvpn.signin.resume_median"] < 10
    assert 0 < f["campusvpn.signin.first_ping_median"] < 10


def test_login_rate_bench_counts_parallel_sign_ins(bed: Testbed) -> None:
    args = ("--parallel", "2", "--seconds", "2", "--users", "12", "--first-user", "5000000100")
    f = run_signin_bench(bed, "login_rate.py", *args)
    assert f["campusvpn.login.failures"] == 0, f
    assert f["campusvpn.login.rate"] > 0
    assert f["campusvpn.login.parallel"] == 2


def test_report_gives_medians_spreads_and_per_round_ratios(tmp_path: Path) -> None:
    run = tmp_path / "run"
    lines = []
    for r, (oc, cv) in enumerate(((900, 630), (1000, 1100), (800, 880)), start=1):
        lines += [
            f"r{r} ocserv.dtls-off.tunnel.tcp_c2s_1stream {oc} Mbit/s",
            f"r{r} campusvpn.dtls-off.tunnel.tcp_c2s_1stream {cv} Mbit/s",
            f"r{r} ocserv.dtls-off.memory.gw_rss_per_session 6400 KiB",
            f"r{r} campusvpn.dtls-off.memory.gw_rss_per_session {400 + r} KiB",
        ]
        # the test bed's CPU and run logs of one slot: the gateway's CPU per Gbit/s comes from them
        slot = run / f"r{r}" / "campusvpn-dtls-off"
        slot.mkdir(parents=True)
        (slot / "cpu.txt").write_text(
            "tun-c2s-1-r1 wall=7.5s openconnect=60%(u9/k51) campusvpn=78%(u40/k38) sys_user=30% ncpu=2\n"
            "tun-c2s-1-r1 drops: gw_tun_tx=0\n"
        )
        (slot / "runs.txt").write_text(f"tun-c2s-1-r1 {cv} Mbit/s retr=3 steal=0%\n")
    lines += ["idle campusvpn.idle10000.gw_cpu 6.5 % of one core", "r0 raw.tcp_c2s_1stream 13000 Mbit/s"]
    (run / "figures.txt").write_text("\n".join(lines) + "\n# a note\n")
    (run / "meta.txt").write_text("started: 2026-12-02T03:00:00Z\noptions: rounds=3 sessions=50\nduration: 1500 s\n")
    (run / "load.txt").write_text(
        "1 start 1.50 1.0 0.5 cpu 100 0 50 800 10 0 5 5 0 0\n2 end 3.00 2.0 1.0 cpu 300 0 150 1000 10 0 15 25 0 0\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), str(run), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    text = (out / "RESULTS.md").read_text()
    # medians 900 and 880: ratio 0.98, though two of the three rounds' own ratios are 1.10
    row = "| TLS only: TCP client→campus, 1 stream | 900 [800–1000] | 880 [630–1100] | Mbit/s | 0.98 | 0.70–1.10 | ≥ 1.0 ✘ |"
    assert row in text
    assert "| gateway RSS per idle session (50 sessions) | 6400 [6400–6400] | 402 [401–403] | KiB | 0.06 |" in text
    # 78 % of a core at 0.88 Gbit/s in the median round
    assert "| gateway CPU per Gbit/s, DTLS off, client→campus, 1 stream | - | 89 [71–124] |" in text
    assert "load average 1.50–3.00" in text and "steal 3.8 %" in text and "25 min 0 s" in text
    assert "| campusvpn, 10,000 idle tunnels: gw_cpu | 6.5 | % of a core | < 10 ✔ |" in text
    assert (out / "throughput.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "memory.png").stat().st_size > 1000
