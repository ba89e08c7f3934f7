"""DTLS against TLS through the tunnel, with the real openconnect on the e2e test bed.

Builds its own three namespaces (names carry this pid), starts the gateway there, and for each round
connects openconnect twice, once with DTLS and once with --no-dtls (alternating, a fresh user each
time since a TOTP code counts once), and measures through the tunnel:
    ping      200 pings at 10 ms to the campus host (a busy path): median and p90 RTT
    slowping  30 pings at 200 ms (the path goes idle between them, as in tests/e2e/test_dtls.py)
    up/down   a TCP transfer of --size bytes client→campus and campus→client: seconds
    drops     UDP RcvbufErrors in the client namespace during the download (openconnect's socket
              overrun) and in the gateway namespace during the upload
    cpu       CPU seconds openconnect and the gateway (all its processes) used per transfer
Prints each round and then `name median [min..max]` per figure. Everything started is stopped by
PID and the namespaces are removed.

    sudo PYTHONPATH=$PWD/src:$PWD python3 bench/dtls_path.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.e2e.test_openconnect import recorder, totp_args
from tests.e2e.testbed import CAMPUS_IP, PASSWORD, Testbed, pid_alive, sh, wait_until

# On the campus host: one connection at a time; the first byte says which way ("U": the client
# sends n bytes and gets one byte back once all arrived; "D": the host sends n bytes and closes).
SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5002)); s.listen(4)
print("ready", flush=True)
block = b"x" * 65536
while True:
    c, _ = s.accept()
    head = c.recv(16).decode()
    mode, n = head[0], int(head[1:].strip())
    if mode == "U":
        got = 0
        while got < n:
            chunk = c.recv(262144)
            if not chunk: break
            got += len(chunk)
        c.sendall(b"k")
    else:
        left = n
        while left > 0:
            left -= c.send(block[: min(left, len(block))])
    c.close()
"""

CLIENT = r"""
import socket, sys, time
mode, n = sys.argv[2], int(sys.argv[3])
t = time.monotonic()
c = socket.create_connection((sys.argv[1], 5002), timeout=60)
c.sendall(f"{mode}{n:<15}".encode())
if mode == "U":
    block = b"y" * 65536; left = n
    while left > 0:
        left -= c.send(block[: min(left, len(block))])
    assert c.recv(1) == b"k"
else:
    got = 0
    while got < n:
        chunk = c.recv(262144)
        if not chunk: break
        got += len(chunk)
    assert got == n, got
print(f"{time.monotonic() - t:.4f}")
"""


def udp_counters(ns: str) -> dict[str, int]:
    lines = [ln.split() for ln in sh("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").stdout.splitlines()]
    head, values = [ln for ln in lines if ln[0] == "Udp:"][:2]
    return {k: int(v) for k, v in zip(head[1:], values[1:], strict=True)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (still running)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo += children.get(p, [])
    return total


def ping(bed: Testbed, count: int, interval: float) -> tuple[float, float]:
    r = bed.in_client(
        "ping", "-c", str(count), "-i", str(interval), "-W", "2", CAMPUS_IP, timeout=count * interval * 2 + 30
    )
    rtts = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout))
    if len(rtts) < count * 0.9:
        raise RuntimeError(f"ping lost packets: {r.stdout[-500:]}")
    return statistics.median(rtts), rtts[int(len(rtts) * 0.9)]


def transfer(bed: Testbed, mode: str, size: int) -> float:
    r = bed.in_client(sys.executable, "-c", CLIENT, CAMPUS_IP, mode, str(size), timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"transfer {mode} failed: {r.stderr[-500:]}")
    return float(r.stdout.strip())


def connect(bed: Testbed, user: str, secret: object, dtls: bool) -> tuple[int, Path]:
    tag = f"{user}-{'d' if dtls else 't'}"
    log = bed.dir / f"oc-{tag}.log"
    extra = ("-v", *totp_args(secret), *(() if dtls else ("--no-dtls",)))
    r = bed.connect_background(user, PASSWORD + "\n", script=recorder(bed, tag), extra=extra, log=log)
    if r.returncode != 0 or wait_until((bed.dir / f"done-{tag}-connect").exists, 20) is None:
        raise RuntimeError(f"openconnect did not connect: {log.read_text()[-2000:]}")
    if dtls and wait_until(lambda: "Established DTLS connection" in log.read_text(), 15) is None:
        raise RuntimeError(f"DTLS did not come up: {log.read_text()[-2000:]}")
    return bed.clients[-1], log


def disconnect(pid: int) -> None:
    os.kill(pid, signal.SIGINT)
    if wait_until(lambda: not pid_alive(pid), 10) is None:
        os.kill(pid, signal.SIGKILL)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}..{max(values):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=16 * 1024 * 1024, help="bytes per transfer")
    ap.add_argument("--pings", type=int, default=200, help="pings at 10 ms (a busy path)")
    ap.add_argument("--slow-pings", type=int, default=30, help="pings at 200 ms (an idle path between them)")
    ap.add_argument("--workers", default="1", help='gateway workers ("auto" or a number)')
    ap.add_argument("--modes", default="dtls,tls", help="which of dtls,tls to measure")
    ap.add_argument("--keep", action="store_true", help="leave the test bed up at the end (for profiling)")
    ap.add_argument("--hold", type=float, default=0, help="seconds to wait after connecting (attach a profiler)")
    args = ap.parse_args()

    bed = Testbed(Path(tempfile.mkdtemp(prefix="dtls-path-")), tag=f"dp{os.getpid() % 100000}")
    results: dict[str, dict[str, list[float]]] = {"dtls": {}, "tls": {}}
    try:
        bed.build()
        bed.init_site()
        if args.workers != "auto":
            text = bed.config.read_text()
            bed.config.write_text(text.replace('workers = "auto"', f"workers = {int(args.workers)}"))
        bed.start_gateway()
        users = [(f"20000{i:05d}", bed.add_user(f"20000{i:05d}")["secret"]) for i in range(2 * args.rounds)]
        server = subprocess.Popen(
            ["ip", "netns", "exec", bed.ns_campus, sys.executable, "-c", SERVER, CAMPUS_IP],
            stdout=subprocess.PIPE,
            text=True,
        )
        bed.procs.append(server)  # type: ignore[arg-type]
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        for rnd in range(args.rounds):
            # Alternate which mode goes first, so a drift in machine load favours neither.
            order = ("dtls", "tls") if rnd % 2 == 0 else ("tls", "dtls")
            modes = [m for m in order if m in args.modes.split(",")]
            for i, mode in enumerate(modes):
                user, secret = users[2 * rnd + i]
                pid, _ = connect(bed, user, secret, mode == "dtls")
                if args.hold:
                    print(f"connected ({mode}); openconnect pid {pid}; holding {args.hold} s", flush=True)
                    time.sleep(args.hold)
                time.sleep(0.5)
                r = results[mode]
                med, p90 = ping(bed, args.pings, 0.01)
                slow_med, slow_p90 = ping(bed, args.slow_pings, 0.2)
                gw_pid = bed.gw_proc.pid if bed.gw_proc else 0
                g0 = udp_counters(bed.ns_gw)
                oc0, gw0 = cpu_seconds(pid), cpu_seconds(gw_pid)
                up = transfer(bed, "U", args.size)
                c1, g1 = udp_counters(bed.ns_client), udp_counters(bed.ns_gw)
                oc1, gw1 = cpu_seconds(pid), cpu_seconds(gw_pid)
                down = transfer(bed, "D", args.size)
                c2 = udp_counters(bed.ns_client)
                oc2, gw2 = cpu_seconds(pid), cpu_seconds(gw_pid)
                row = {
                    "ping_median_ms": med,
                    "ping_p90_ms": p90,
                    "slowping_median_ms": slow_med,
                    "slowping_p90_ms": slow_p90,
                    "up_s": up,
                    "down_s": down,
                    "up_gw_rcvbuf_errors": g1["RcvbufErrors"] - g0["RcvbufErrors"],
                    "down_client_rcvbuf_errors": c2["RcvbufErrors"] - c1["RcvbufErrors"],
                    "down_client_udp_in": c2["InDatagrams"] - c1["InDatagrams"],
                    "up_cpu_oc_s": oc1 - oc0,
                    "up_cpu_gw_s": gw1 - gw0,
                    "down_cpu_oc_s": oc2 - oc1,
                    "down_cpu_gw_s": gw2 - gw1,
                }
                for k, v in row.items():
                    r.setdefault(k, []).append(float(v))
                print(f"round {rnd + 1} {mode}: " + " ".join(f"{k}={v:g}" for k, v in row.items()), flush=True)
                disconnect(pid)
        print(f"\n{args.rounds} rounds, {args.size} bytes per transfer, {args.pings} pings at 10 ms")
        for mode, r in results.items():
            for k, vals in r.items():
                print(f"{mode}_{k} {spread(vals)}")
        if args.keep:
            print(f"test bed left up: {bed.tag}; press Enter to tear down", flush=True)
            input()
    finally:
        bed.destroy()


if __name__ == "__main__":
    main()
