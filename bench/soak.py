"""Soak with faults: campusvpn under steady load while its process is killed and its database restarts.

For --minutes (default 10) the gateway carries, at once:
  - --idle tunnels (1,000) that only exchange DPD, like laptops left connected;
  - --signins-per-s full sign-ins (10/s) by the real openconnect (`--authenticate`, password + TOTP);
  - --pingers tunnels (20) each sending one ICMP echo a second to the campus host through the tunnel.
At --kill-at (a fraction of the run) the gateway gets SIGKILL and is started again at once; at
--pg-restart-at its PostgreSQL server restarts (`pg_ctl restart -m fast`). The tunnel clients behave
like openconnect after a drop: they reconnect with their session cookie, once a second.

Reported: tunnels lost (never resumed, or refused on resume), the longest and median resume time after
the kill (target <= 15 s), sign-ins failed (in and out of the fault windows), ping loss (in and out of
them), and the database's integrity afterwards (pg_amcheck, one live session per address, the tunnels
the clients hold against the sessions the database has).

One command, as root, with ../shared/testbed beside the project:
    python3 bench/soak.py run [--minutes 10 --idle 1000 --signins-per-s 10 --pingers 20]
It brings up the test bed's namespaces (vb-client, vb-gw, vb-campus), a private PostgreSQL in vb-gw,
and the gateway (bench/campusvpn-gw.sh), and removes all of them at the end. The `prepare` and `load`
subcommands are its parts, run inside the namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import resource
import shutil
import signal
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
TESTBED = PROJECT.parent / "shared" / "testbed"
GW_ADDR, GW_PORT, CAMPUS_HOST = "10.99.0.2", 443, "10.98.0.2"
PG_PORT = 55432
FAULT_WINDOW = 20.0  # seconds after a fault during which failures are counted as the fault's
DPD_REQ = b"STF\x01" + struct.pack(">HBB", 0, 3, 0)
DATA, DPD_RESP = 0, 4


# --- prepare (in vb-gw: the database is on its loopback) ----------------------------------------


def prepare(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from connect_time import make_users
    from idle_sessions import open_sessions

    tokens = open_sessions(args.config, args.idle + args.pingers, "3100000000")
    users = make_users(args.config, args.users, 5100000000)
    plan = {"idle": tokens[: args.idle], "pingers": tokens[args.idle :], "users": users}
    args.out.write_text(json.dumps(plan))


# --- load (in vb-client) ------------------------------------------------------------------------


@dataclass
class TunnelLog:
    ups: list[float] = field(default_factory=list)  # wall-clock times the tunnel came (back) up
    downs: list[float] = field(default_factory=list)  # times it dropped
    refused: str = ""  # a resume the gateway refused: the tunnel is lost
    pings: list[tuple[float, bool]] = field(default_factory=list)


def icmp_echo(src: str, ident: int, seq: int) -> bytes:
    def checksum(b: bytes) -> int:
        if len(b) % 2:
            b += b"\0"
        total = sum(struct.unpack(f">{len(b) // 2}H", b))
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        return ~total & 0xFFFF

    payload = struct.pack(">d", time.time()) + bytes(24)
    icmp = struct.pack(">BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack(">H", checksum(icmp)) + icmp[4:]
    s, d = (bytes(int(x) for x in a.split(".")) for a in (src, CAMPUS_HOST))
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0, s, d)
    head = head[:10] + struct.pack(">H", checksum(head)) + head[12:]
    return head + icmp


def cstp_data(packet: bytes) -> bytes:
    return b"STF\x01" + struct.pack(">HBB", len(packet), DATA, 0) + packet


class Window:
    """When the load stops: far away while the tunnels come up, then the end of the measured run."""

    until = float("inf")


async def hold(token: str, index: int, pinger: bool, log: TunnelLog, window: type[Window], tls: ssl.SSLContext) -> None:
    """One tunnel, resumed with its cookie after every drop (once a second, as openconnect does)."""
    while time.time() < window.until:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(GW_ADDR, GW_PORT, ssl=tls), 20)
            writer.write(
                f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {GW_ADDR}\r\nCookie: webvpn={token}\r\n"
                "X-CSTP-Version: 1\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            if not status.startswith("HTTP/1.1 200 "):
                if status.split()[1:2] in (["401"], ["403"], ["404"]):
                    log.refused = status
                    writer.close()
                    return
                raise ConnectionError(status)  # 503 and the like: the gateway is starting, try again
            address = next(
                (
                    ln.split(b":", 1)[1].strip().decode()
                    for ln in head.split(b"\r\n")
                    if ln.startswith(b"X-CSTP-Address:")
                ),
                "",
            )
            log.ups.append(time.time())
            await run_tunnel(reader, writer, index, pinger, address, log, window)
            writer.close()
            if time.time() >= window.until:
                return
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            if writer is not None:
                writer.close()
        if not log.downs or (log.ups and log.ups[-1] > log.downs[-1]):
            log.downs.append(time.time())
        await asyncio.sleep(0.8 + random.random() * 0.4)


async def run_tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    index: int,
    pinger: bool,
    address: str,
    log: TunnelLog,
    window: type[Window],
) -> None:
    interval = 1.0 if pinger else 30.0
    outstanding: dict[int, int] = {}  # ping seq -> index in log.pings
    seq = random.randrange(1 << 15)
    buf = b""
    next_send = time.time()
    while time.time() < window.until:
        now = time.time()
        if now >= next_send:
            if pinger and address:
                seq = (seq + 1) & 0xFFFF
                outstanding[seq] = len(log.pings)
                log.pings.append((now, False))
                writer.write(cstp_data(icmp_echo(address, index, seq)))
            else:
                writer.write(DPD_REQ)
            next_send = now + interval
        try:
            data = await asyncio.wait_for(reader.read(65536), max(0.05, next_send - time.time()))
        except TimeoutError:
            continue
        if not data:
            return
        buf += data
        while len(buf) >= 8:
            length = struct.unpack(">H", buf[4:6])[0]
            if len(buf) < 8 + length:
                break
            ftype, packet = buf[6], buf[8 : 8 + length]
            buf = buf[8 + length :]
            if ftype == DATA and len(packet) >= 28 and packet[9] == 1 and packet[20] == 0:  # an echo reply
                i = outstanding.pop(struct.unpack(">H", packet[26:28])[0], None)
                if i is not None:
                    log.pings[i] = (log.pings[i][0], True)


async def signins(
    users: list[list[str]], per_s: float, until: float, pin: str, out: list[tuple[float, bool, str]]
) -> None:
    """`openconnect --authenticate` at a steady rate, each user at most once per 30 s TOTP step."""
    sys.path.insert(0, str(HERE))
    from connect_time import PASSWORD, signin_argv

    running: set[asyncio.Task[None]] = set()

    async def one(name: str, secret: str) -> None:
        t = time.time()
        proc = await asyncio.create_subprocess_exec(
            "openconnect",
            *signin_argv(pin, name, secret),
            "--authenticate",
            f"https://{GW_ADDR}:{GW_PORT}/",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate((PASSWORD + "\n").encode()), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            out.append((t, False, "timed out after 30 s"))
            return
        text = stdout.decode(errors="replace")
        ok = proc.returncode == 0 and "COOKIE=" in text
        lines = text.strip().splitlines()
        out.append((t, ok, "" if ok else (lines[-1] if lines else f"exit {proc.returncode}")))

    i = 0
    next_at = time.time()
    while time.time() < until:
        if len(running) < 60:
            name, secret = users[i % len(users)]
            i += 1
            task = asyncio.create_task(one(name, secret))
            running.add(task)
            task.add_done_callback(running.discard)
        else:
            out.append((time.time(), False, "skipped: 60 sign-ins already in flight"))
        next_at += 1.0 / per_s
        await asyncio.sleep(max(0.0, next_at - time.time()))
    if running:
        await asyncio.wait(running, timeout=40)


async def load_main(args: argparse.Namespace) -> None:
    plan = json.loads(args.plan.read_text())
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    idle = [TunnelLog() for _ in plan["idle"]]
    pingers = [TunnelLog() for _ in plan["pingers"]]
    tasks = []
    for i, token in enumerate(plan["idle"]):
        tasks.append(asyncio.create_task(hold(token, i, False, idle[i], Window, tls)))
        if i % 100 == 99:
            await asyncio.sleep(0.3)  # waves: the listen backlog
    for i, token in enumerate(plan["pingers"]):
        tasks.append(asyncio.create_task(hold(token, i, True, pingers[i], Window, tls)))
    t0 = time.time()
    logs = idle + pingers
    while sum(1 for lg in logs if lg.ups) < len(logs) and time.time() - t0 < 300:
        await asyncio.sleep(0.5)
    start = time.time()
    until = Window.until = start + args.minutes * 60
    for lg in logs:  # the measured window starts now: earlier ramp-up failures do not count
        lg.downs = [d for d in lg.downs if d >= start]
    args.ready.write_text(json.dumps({"start": start, "until": until, "ramp_s": start - t0}))
    sign = []
    await signins(plan["users"], args.signins_per_s, until, args.pin, sign)
    await asyncio.wait(tasks, timeout=max(1.0, until - time.time() + 30))
    args.out.write_text(
        json.dumps(
            {
                "start": start,
                "until": until,
                "idle": [lg.__dict__ for lg in idle],
                "pingers": [lg.__dict__ for lg in pingers],
                "signins": sign,
            }
        )
    )


def load(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    asyncio.run(load_main(args))


# --- run (root namespace): the whole soak, faults and report --------------------------------------


def sh(*argv: str, check: bool = True, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, check=False, text=True, capture_output=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and r.returncode != 0:
        raise SystemExit(f"soak: {' '.join(argv[:6])}... failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return r


def pg_bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
    return str(versions[-1] / "bin" / name)


def as_postgres(*argv: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", "vb-gw", "runuser", "-u", "postgres", "--", *argv, timeout=timeout, check=check)


def within(t: float, faults: list[float]) -> bool:
    return any(f <= t < f + FAULT_WINDOW for f in faults)


def longest_gap(pings: list[list]) -> float:
    """The longest time between two answered pings of one tunnel."""
    answered = [p[0] for p in pings if p[1]]
    return max((b - a for a, b in itertools.pairwise(answered)), default=float("nan"))


def report(
    result: dict, faults: dict[str, float], marks: dict[str, float], checks: list[str], args: argparse.Namespace
) -> list[str]:
    kill = faults["kill"]
    fault_times = list(faults.values())
    idle, pingers, sign = result["idle"], result["pingers"], result["signins"]
    tunnels = idle + pingers
    lost = [t for t in tunnels if t["refused"] or (t["downs"] and (not t["ups"] or t["ups"][-1] < t["downs"][-1]))]
    resumes = []
    for t in tunnels:
        back = [u for u in t["ups"] if u >= kill]
        if back:
            resumes.append(back[0] - kill)
    dropped_elsewhere = sum(1 for t in tunnels for d in t["downs"] if not within(d, fault_times))
    pings = [p for t in pingers for p in t["pings"]]
    gaps = [longest_gap(t["pings"]) for t in pingers if t["pings"]]
    quiet_pings = [p for p in pings if not within(p[0], fault_times)]
    sign_quiet = [s for s in sign if not within(s[0], fault_times)]
    reasons: dict[str, int] = {}
    for s in sign:
        if not s[1]:
            reasons[s[2][:120]] = reasons.get(s[2][:120], 0) + 1

    def loss(ps: list) -> str:
        return f"{100.0 * sum(1 for p in ps if not p[1]) / len(ps):.2f} %" if ps else "n/a"

    lines = [
        f"soak.minutes {args.minutes} min",
        f"soak.tunnels {len(tunnels)} count",
        f"soak.tunnels_lost {len(lost)} count",
        f"soak.tunnels_resumed_after_kill {len(resumes)} count",
        f"soak.gateway_listening_after_kill {marks['gateway_listening'] - kill:.1f} s",
        f"soak.resume_after_kill_median {statistics.median(resumes) if resumes else float('nan'):.1f} s",
        f"soak.resume_after_kill_max {max(resumes) if resumes else float('nan'):.1f} s",
        f"soak.drops_outside_faults {dropped_elsewhere} count",
        f"soak.signins {len(sign)} count",
        f"soak.signins_failed {sum(1 for s in sign if not s[1])} count",
        f"soak.signins_failed_outside_faults {sum(1 for s in sign_quiet if not s[1])} count",
        f"soak.signin_rate {len(sign) / (result['until'] - result['start']):.1f} per s",
        f"soak.pings {len(pings)} count",
        f"soak.ping_loss {loss(pings)}",
        f"soak.ping_loss_outside_faults {loss(quiet_pings)}",
        f"soak.ping_longest_gap_max {max(gaps, default=float('nan')):.1f} s",
        f"soak.ping_longest_gap_median {statistics.median(gaps) if gaps else float('nan'):.1f} s",
    ]
    lines += [f"# sign-in failure: {n} x {why}" for why, n in sorted(reasons.items(), key=lambda x: -x[1])[:8]]
    lines += [f"# lost tunnel: {t['refused'] or 'not back up at the end'}" for t in lost[:5]]
    lines += [f"# fault: {name} at +{at - result['start']:.1f} s" for name, at in faults.items()]
    lines += checks
    return lines


def session_counts(dbname: str) -> list[str]:
    """The database's live and connected sessions, and whether any address is given twice."""
    query = (
        "SELECT count(*) FILTER (WHERE ended_at IS NULL), count(*) FILTER (WHERE ended_at IS NULL AND connected), "
        "count(DISTINCT address) FILTER (WHERE ended_at IS NULL) FROM vpn_sessions"
    )
    r = as_postgres("psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-At", "-F", " ", "-c", query, dbname)
    live, connected, addresses = (int(x) for x in r.stdout.split())
    return [
        f"soak.db_live_sessions {live} count",
        f"soak.db_connected_sessions_15s_before_end {connected} count",
        f"soak.db_live_addresses_distinct {'ok' if addresses == live else 'DUPLICATES'}",
    ]


def amcheck(dbname: str) -> list[str]:
    """PostgreSQL's own check of every table and index (heap and B-tree structure)."""
    r = as_postgres(
        pg_bin("pg_amcheck"),
        "--install-missing",
        "-h",
        "127.0.0.1",
        "-p",
        str(PG_PORT),
        dbname,
        timeout=600,
        check=False,
    )
    ok = r.returncode == 0 and not r.stdout.strip()
    out = [f"soak.db_amcheck {'ok' if ok else 'FAILED'}"]
    if not ok:
        out.append("# pg_amcheck: " + (r.stdout + r.stderr).strip().replace("\n", " | ")[:500])
    return out


def run(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        sys.exit("soak: run as root (network namespaces, PostgreSQL as its own user)")
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix=f"campusvpn-soak-{stamp}-", dir="/var/tmp"))
    os.chmod(work, 0o755)  # noqa: S103  # PostgreSQL's own user works in a folder inside
    state, pgdata, plan, result, ready = (
        work / "gw",
        work / "pg",
        work / "plan.json",
        work / "result.json",
        work / "ready",
    )
    gw = str(HERE / "campusvpn-gw.sh")
    py = sys.executable
    env = {**os.environ, "PYTHON": py}
    load_proc: subprocess.Popen[str] | None = None
    pg_started = False
    sh(str(TESTBED / "netns-testbed.sh"), "up", "--no-install")
    try:
        pgdata.mkdir()
        shutil.chown(pgdata, "postgres", "postgres")
        as_postgres(pg_bin("initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres")
        as_postgres(
            pg_bin("pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(pgdata / "log"),
            "-o",
            f"-p {PG_PORT} -k {pgdata} -c listen_addresses=127.0.0.1 -c max_connections=200",
            "start",
        )
        pg_started = True
        dbname = "campusvpn_soak"
        as_postgres("createdb", "-h", "127.0.0.1", "-p", str(PG_PORT), dbname)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{PG_PORT}/{dbname}"
        start = ["start", "--dtls", "off", "--workers", args.workers, "--database", url, "--state", str(state)]
        pin = sh(gw, *start, env=env).stdout.split()[-1]
        conf = state / "site" / "campusvpn.toml"
        print(
            f"# soak: gateway up ({url}); preparing {args.idle + args.pingers} sessions, {args.users} users", flush=True
        )
        sh(
            "ip",
            "netns",
            "exec",
            "vb-gw",
            py,
            __file__,
            "prepare",
            "--config",
            str(conf),
            "--idle",
            str(args.idle),
            "--pingers",
            str(args.pingers),
            "--users",
            str(args.users),
            "--out",
            str(plan),
            timeout=1800,
        )
        load_proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                "vb-client",
                py,
                __file__,
                "load",
                "--plan",
                str(plan),
                "--pin",
                pin,
                "--minutes",
                str(args.minutes),
                "--signins-per-s",
                str(args.signins_per_s),
                "--out",
                str(result),
                "--ready",
                str(ready),
            ],
            text=True,
        )
        deadline = time.time() + 400
        while not ready.exists() and time.time() < deadline and load_proc.poll() is None:
            time.sleep(1)
        if not ready.exists():
            raise SystemExit("soak: the tunnels did not come up in time")
        window = json.loads(ready.read_text())
        print(
            f"# soak: {args.idle + args.pingers} tunnels up after {window['ramp_s']:.0f} s; "
            f"{args.minutes} min of load begins",
            flush=True,
        )
        faults: dict[str, float] = {}
        marks: dict[str, float] = {}
        for name, fraction in sorted((("kill", args.kill_at), ("pg_restart", args.pg_restart_at)), key=lambda x: x[1]):
            time.sleep(max(0.0, window["start"] + fraction * args.minutes * 60 - time.time()))
            faults[name] = time.time()
            if name == "kill":
                pid = int((state / "gateway.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                for _ in range(100):  # gone, its listening socket with it: else "listening" is the old one
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)
                sh(gw, "restart", "--state", str(state), env=env)
                marks["gateway_listening"] = time.time()
                print(
                    f"# soak: gateway killed (-9) and started again in {time.time() - faults[name]:.1f} s", flush=True
                )
            else:
                as_postgres(
                    pg_bin("pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-w",
                    "-m",
                    "fast",
                    "-l",
                    str(pgdata / "log"),
                    "restart",
                    "-o",
                    f"-p {PG_PORT} -k {pgdata} -c listen_addresses=127.0.0.1 -c max_connections=200",
                )
                print(f"# soak: PostgreSQL restarted in {time.time() - faults[name]:.1f} s", flush=True)
        time.sleep(max(0.0, window["until"] - 15 - time.time()))
        counts = session_counts(dbname)  # while every tunnel should still be up
        load_proc.wait(timeout=args.minutes * 60 + 300)
        data = json.loads(result.read_text())
        up_at_end = sum(
            1
            for t in data["idle"] + data["pingers"]
            if t["ups"] and not t["refused"] and (not t["downs"] or t["ups"][-1] > t["downs"][-1])
        )
        lines = report(
            data, faults, marks, counts + amcheck(dbname) + [f"soak.client_tunnels_up_at_end {up_at_end} count"], args
        )
        print("\n".join(lines))
        if args.save:
            args.save.write_text("\n".join(lines) + "\n")
    finally:
        if load_proc is not None and load_proc.poll() is None:
            load_proc.kill()
        sh(gw, "stop", "--state", str(state), check=False, env=env)
        if pg_started:
            as_postgres(pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop", check=False)
        sh(str(TESTBED / "netns-testbed.sh"), "down", check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--minutes", type=float, default=10)
    r.add_argument("--idle", type=int, default=1000)
    r.add_argument("--pingers", type=int, default=20)
    r.add_argument("--signins-per-s", type=float, default=10)
    r.add_argument("--users", type=int, default=400, help="sign-in users (each signs in at most once per 30 s)")
    r.add_argument("--kill-at", type=float, default=0.4, help="fraction of the run")
    r.add_argument("--pg-restart-at", type=float, default=0.7, help="fraction of the run")
    r.add_argument("--workers", default="2", help="[gateway] workers (a number or auto); the kill hits the parent")
    r.add_argument("--save", type=Path, help="also write the figures to this file")
    r.add_argument("--keep", action="store_true", help="keep the work folder (logs, site, database)")
    p = sub.add_parser("prepare")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--idle", type=int, required=True)
    p.add_argument("--pingers", type=int, required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--plan", type=Path, required=True)
    lo.add_argument("--pin", required=True)
    lo.add_argument("--minutes", type=float, required=True)
    lo.add_argument("--signins-per-s", type=float, required=True)
    lo.add_argument("--out", type=Path, required=True)
    lo.add_argument("--ready", type=Path, required=True)
    args = ap.parse_args()
    {"run": run, "prepare": prepare, "load": load}[args.cmd](args)


if __name__ == "__main__":
    main()
