"""Hold many idle tunnels open against a running campusvpn gateway and measure what they cost it.

A lightweight AnyConnect-protocol client: N TLS connections, each with `CONNECT /CSCOSSLC/tunnel`
and a session cookie, then idle except for a DPD request every --dpd seconds, whose answers are
counted. Sessions are opened directly through the service layer (one bench user; the sign-in path
is measured elsewhere), so N can reach 10,000 quickly.

Run inside the client namespace, with the gateway's config (a file both namespaces see):
  ip netns exec vb-client python bench/idle_sessions.py --config CONF --addr 10.99.0.2 \
      --sessions 1000 --hold 30 --gw-pid PID
Prints `name value unit` lines like the test bed's bench.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import resource
import ssl
import struct
import time
from pathlib import Path

from benchlib import ready_user

from campusvpn.platform.config import load_config
from campusvpn.service import phones, sessions
from campusvpn.service.context import open_context

CONNECT_ATTEMPTS = 3
DPD_REQ = b"STF\x01" + struct.pack(">HBB", 0, 3, 0)


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


def open_sessions(config: Path, n: int, user: str) -> list[str]:
    cfg = load_config(config)
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"max_sessions_per_user": n + 10})})
    ctx = open_context(cfg)
    try:
        ready_user(ctx, user)
        phones.add_phone(ctx, user, "mobile", "+819012345678", None, actor="bench")  # a method, so MFA is active
        tokens = []
        with ctx.tx() as s:
            u = ctx.user(s, user)
            for _ in range(n):
                tokens.append(
                    sessions.open_session(
                        ctx, s, u, profile=None, pool=cfg.vpn.pool, source="bench", client="idle bench"
                    ).token
                )
        return tokens
    finally:
        ctx.engine.dispose()


class Holder:
    def __init__(self) -> None:
        self.until = float("inf")  # set once every tunnel is up: then the idle window starts
        self.connected = 0
        self.failed = 0
        self.dpd_sent = 0
        self.dpd_answered = 0
        self.why: collections.Counter[str] = collections.Counter()  # failures by kind
        self.retried: collections.Counter[str] = collections.Counter()  # connects tried again, by why


async def hold_one(addr: str, port: int, token: str, tls: ssl.SSLContext, dpd: float, h: Holder) -> None:
    # Like openconnect, a client whose connection fails while connecting tries again after a pause (an
    # overloaded gateway drops handshakes it cannot finish in time); a refusal is final.
    for attempt in range(CONNECT_ATTEMPTS):
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port, ssl=tls), 60)
            writer.write(
                f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {addr}\r\nCookie: webvpn={token}\r\n"
                "X-CSTP-Version: 1\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            why = f"connect: {type(exc).__name__}"
            if writer is not None:
                writer.close()
            if attempt + 1 < CONNECT_ATTEMPTS:
                h.retried[why] += 1
                await asyncio.sleep(1 + random.random())
                continue
            h.failed += 1
            h.why[why] += 1
            return
        break
    if not head.startswith(b"HTTP/1.1 200 "):
        h.failed += 1
        h.why[head.split(b"\r\n", 1)[0].decode(errors="replace")] += 1
        writer.close()
        return
    h.connected += 1
    try:
        buf = b""
        while time.monotonic() < h.until:
            writer.write(DPD_REQ)
            h.dpd_sent += 1
            deadline = min(h.until, time.monotonic() + dpd)
            while time.monotonic() < deadline:
                try:
                    data = await asyncio.wait_for(reader.read(4096), max(0.05, deadline - time.monotonic()))
                except TimeoutError:
                    break
                if not data:
                    return
                buf += data
                while len(buf) >= 8:
                    length = struct.unpack(">H", buf[4:6])[0]
                    if len(buf) < 8 + length:
                        break
                    if buf[6] == 4:
                        h.dpd_answered += 1
                    buf = buf[8 + length :]
        writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        h.failed += 1
        h.why[f"tunnel: {type(exc).__name__}"] += 1


async def run(args: argparse.Namespace, tokens: list[str]) -> None:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    pid = args.gw_pid
    rss0, pss0 = proc_kib(pid, "VmRSS"), pss_kib(pid)
    h = Holder()
    start = time.monotonic()
    # Connect in waves so the gateway's pending-connection limit and the listen backlog are respected.
    tasks = []
    for i, token in enumerate(tokens):
        tasks.append(asyncio.create_task(hold_one(args.addr, args.port, token, tls, args.dpd, h)))
        if i % 200 == 199:
            await asyncio.sleep(0.2)
    t0 = time.monotonic()
    while h.connected + h.failed < len(tokens) and time.monotonic() - t0 < args.connect_timeout:
        await asyncio.sleep(0.5)
    connect_time = time.monotonic() - start
    h.until = time.monotonic() + args.hold + 2
    await asyncio.sleep(2)
    rss1, pss1 = proc_kib(pid, "VmRSS"), pss_kib(pid)
    cpu0, w0 = cpu_seconds(pid), time.monotonic()
    sent0, ans0 = h.dpd_sent, h.dpd_answered
    await asyncio.sleep(max(1.0, h.until - time.monotonic() - 1))
    cpu1, w1 = cpu_seconds(pid), time.monotonic()
    n = max(1, h.connected)
    tag = f"campusvpn.idle{len(tokens)}"
    print(f"{tag}.sessions_up {h.connected} count")
    print(f"{tag}.failed {h.failed} count")
    print(f"{tag}.connect_all {connect_time:.1f} s")
    print(f"{tag}.gw_rss_base {rss0} KiB")
    print(f"{tag}.gw_rss_per_session {(rss1 - rss0) / n:.1f} KiB")
    print(f"{tag}.gw_pss_per_session {(pss1 - pss0) / n:.1f} KiB")
    print(f"{tag}.gw_cpu {(cpu1 - cpu0) / (w1 - w0) * 100:.2f} % of one core")
    print(f"{tag}.dpd_sent {h.dpd_sent - sent0} count")
    print(f"{tag}.dpd_answered {h.dpd_answered - ans0} count")
    print(f"{tag}.connects_retried {sum(h.retried.values())} count")
    for why, count in h.why.most_common():
        print(f"# {tag} failed: {count} x {why}")
    for why, count in h.retried.most_common():
        print(f"# {tag} tried again: {count} x {why}")
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--addr", default="10.99.0.2")
    ap.add_argument("--port", type=int, default=443)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--hold", type=float, default=30)
    ap.add_argument("--dpd", type=float, default=10, help="seconds between DPD requests per session")
    ap.add_argument("--connect-timeout", type=float, default=300)
    ap.add_argument("--gw-pid", type=int, required=True)
    ap.add_argument("--user", default="3000000000")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.sessions + 1000)), hard))
    tokens = open_sessions(args.config, args.sessions, args.user)
    asyncio.run(run(args, tokens))


if __name__ == "__main__":
    main()
