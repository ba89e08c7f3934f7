"""DTLS with the real openconnect: it comes up, carries the traffic, falls back to TLS when UDP is
blocked, shrugs off foreign datagrams, and ends with the session.

A test bed of its own (namespace names carry the pid and "dtls"), so blocking UDP in its client
namespace cannot disturb other modules' tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.helpers_net import TCP_CLIENT, TCP_SERVER
from tests.e2e.test_openconnect import ADMIN_ENDED, recorder, totp_args
from tests.e2e.testbed import (
    CAMPUS_IP,
    GW_IP,
    PASSWORD,
    Testbed,
    missing_requirements,
    pid_alive,
    sh,
    wait_until,
)

_missing = missing_requirements()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"e2e DTLS tests: {_missing}")
MIB4 = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def dbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    tb = Testbed(tmp_path_factory.mktemp("dtls"), tag=f"dtls{os.getpid()}")
    try:
        tb.build()
        tb.init_site()
        tb.start_gateway()
        yield tb
    finally:
        tb.destroy()
        if tb.gw_log.exists():
            print("\n--- gateway log tail ---\n" + "\n".join(tb.gw_log.read_text().splitlines()[-20:]))


def connect(bed: Testbed, user: str, tag: str, *extra: str) -> tuple[int, Path]:
    u = bed.add_user(user)
    log = bed.dir / f"oc-{tag}.log"
    r = bed.connect_background(
        user, PASSWORD + "\n", script=recorder(bed, tag), extra=("-v", *totp_args(u["secret"]), *extra), log=log
    )
    assert r.returncode == 0, log.read_text()
    assert wait_until((bed.dir / f"done-{tag}-connect").exists, 15) is not None, log.read_text()
    return bed.clients[-1], log


def gateway_events(bed: Testbed, event: str) -> list[dict[str, object]]:
    out = []
    for line in bed.gw_log.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line[line.index("{") :]))
            except ValueError:
                continue
    return out


def gateway_udp(bed: Testbed) -> tuple[int, int]:
    """The gateway namespace's UDP datagrams in and out so far."""
    row = udp_counters(bed.ns_gw)
    return row["InDatagrams"], row["OutDatagrams"]


def udp_counters(ns: str) -> dict[str, int]:
    """A namespace's UDP counters (/proc/net/snmp)."""
    lines = [ln.split() for ln in sh("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").stdout.splitlines()]
    head, values = [ln for ln in lines if ln[0] == "Udp:"][:2]
    return {k: int(v) for k, v in zip(head[1:], values[1:], strict=True)}


def ping_and_tcp_both_ways(bed: Testbed, label: str) -> None:
    ping = bed.in_client("ping", "-c", "5", "-i", "0.2", "-W", "2", CAMPUS_IP)
    assert ping.returncode == 0, ping.stdout
    started = time.monotonic()
    server = subprocess.Popen(
        ["ip", "netns", "exec", bed.ns_campus, sys.executable, "-c", TCP_SERVER, CAMPUS_IP, str(MIB4)],
        stdout=subprocess.PIPE,
        text=True,
    )
    bed.procs.append(server)  # type: ignore[arg-type]
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    client = bed.in_client(sys.executable, "-c", TCP_CLIENT, CAMPUS_IP, str(MIB4), timeout=90)
    digest, verdict = client.stdout.split()
    assert verdict == "ok", client.stdout + client.stderr  # the 4 MiB came back intact
    assert server.stdout.readline().strip() == digest  # and the campus host got all 4 MiB
    took = time.monotonic() - started
    server.wait(10)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", ping.stdout)
    # For the report only (timings on a shared machine are noisy; nothing is asserted on them).
    print(f"{label}: ping avg {rtt.group(1) if rtt else '?'} ms; 4 MiB each way in {took:.2f} s")


def test_dtls_comes_up_and_carries_ping_and_4mib_both_ways(dbed: Testbed) -> None:
    pid, log = connect(dbed, "1000000101", "up")
    assert wait_until(lambda: "Established DTLS connection" in log.read_text(), 10) is not None, log.read_text()
    assert "DTLS connected" in log.read_text() or "Established DTLS connection" in log.read_text()
    ups = [e for e in gateway_events(dbed, "gateway.channel_up") if e.get("channel") == "dtls"]
    assert ups, "the gateway did not log the DTLS channel"
    env = (dbed.dir / "env-up-connect.txt").read_text()
    assert "INTERNAL_IP4_MTU=1434" in env  # the DTLS MTU for a 1500-byte link
    # The gateway sends in bursts openconnect's socket (Linux's default buffer) can hold: a TUN batch
    # sent at once lost 9-28 % of the datagrams there, bursts a median of 5 % (bench/ANALYSIS.md).
    # Loss depends on whether openconnect gets a core in time, so a busy machine may have one more
    # try (bounded): the old sending lost more than the bound in most transfers, not in one of two.
    for attempt in range(2):
        udp_in, _ = gateway_udp(dbed)
        client_before = udp_counters(dbed.ns_client)
        ping_and_tcp_both_ways(dbed, f"DTLS, transfer {attempt + 1}")
        udp_in2, _ = gateway_udp(dbed)
        client_after = udp_counters(dbed.ns_client)
        for ns in (dbed.ns_gw, dbed.ns_client):  # for the report: datagrams dropped by full socket buffers
            snmp = sh("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").stdout.splitlines()
            print(ns, [ln for ln in snmp if ln.startswith("Udp:")])
        got = client_after["InDatagrams"] - client_before["InDatagrams"]
        lost = client_after["RcvbufErrors"] - client_before["RcvbufErrors"]
        # 4 MiB each way in packets of at most 1434 bytes: thousands of datagrams each way, not TLS. (The
        # client counts what came down: the gateway's OutDatagrams counts a GSO send of many as one.)
        assert udp_in2 - udp_in > 2900 and got + lost > 2900, (udp_in2 - udp_in, got, lost)
        if lost < 0.1 * (got + lost):
            break
    assert lost < 0.1 * (got + lost), (lost, got)  # a bound, not a timing: the machine may be busy
    sh("kill", "-INT", str(pid))
    assert wait_until(lambda: not pid_alive(pid), 10) is not None


def test_udp_blocked_falls_back_to_tls(dbed: Testbed) -> None:
    table = f"dtlsblock{os.getpid()}"
    nft = ("ip", "netns", "exec", dbed.ns_client, "nft")
    sh(*nft, "add", "table", "inet", table)
    sh(*nft, "add", "chain", "inet", table, "out", "{ type filter hook output priority 0 ; }")
    # Every UDP datagram: with several workers each has its own DTLS port (443, 444, ...).
    sh(*nft, "add", "rule", "inet", table, "out", "meta", "l4proto", "udp", "drop")
    try:
        before = len(gateway_events(dbed, "gateway.channel_up"))
        udp_in, _ = gateway_udp(dbed)
        pid, log = connect(dbed, "1000000102", "blocked")
        ping_and_tcp_both_ways(dbed, "TLS (UDP blocked)")
        assert "Established DTLS connection" not in log.read_text()
        assert len(gateway_events(dbed, "gateway.channel_up")) == before
        assert gateway_udp(dbed)[0] - udp_in < 50  # the traffic went over TLS
        sh("kill", "-INT", str(pid))
        assert wait_until(lambda: not pid_alive(pid), 10) is not None
    finally:
        sh(*nft, "delete", "table", "inet", table, check=False)


def client_hello(session_id: bytes) -> bytes:
    """A DTLS 1.2 ClientHello resuming `session_id` (what a forger who learnt the id would send)."""
    body = b"\xfe\xfd" + os.urandom(32) + bytes([len(session_id)]) + session_id + b"\x00" + b"\x00\x02\x00\x9d\x01\x00"
    hs = b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big") + body
    return b"\x16\xfe\xfd" + b"\x00\x00" + b"\x00" * 6 + len(hs).to_bytes(2, "big") + hs


def test_garbage_and_dtls_from_another_address_do_no_harm(dbed: Testbed) -> None:
    pid, log = connect(dbed, "1000000103", "garbage", "--dump-http-traffic")
    assert wait_until(lambda: "Established DTLS connection" in log.read_text(), 10) is not None, log.read_text()
    found = re.search(r"X-DTLS-Session-ID: ([0-9A-F]{64})", log.read_text())
    assert found, "openconnect did not show the CONNECT answer"
    sid = bytes.fromhex(found.group(1))
    # The port of the worker holding this tunnel (each worker of several has its own DTLS port).
    port = re.search(r"X-DTLS-Port: (\d+)", log.read_text())
    assert port, "openconnect did not show the DTLS port"
    other = "10.200.0.3"
    sh("ip", "-n", dbed.ns_client, "addr", "add", f"{other}/24", "dev", f"{dbed.tag}cg")
    # From the client's own address but another port: garbage, and records that look encrypted.
    # From another address: garbage, and a hello that names the live session (a forger who learnt it).
    sender = (
        "import os, random, socket, sys, time\n"
        "gw = (sys.argv[1], int(sys.argv[4])); hello = bytes.fromhex(sys.argv[3])\n"
        "for src in (sys.argv[2], '10.200.0.2'):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0))\n"
        "    for i in range(300):\n"
        "        s.sendto(os.urandom(random.randint(1, 1500)), gw)\n"
        "        s.sendto(b'\\x17\\xfe\\xfd\\x00\\x01' + os.urandom(random.randint(8, 1400)), gw)\n"
        "        time.sleep(0.001)\n"  # a burst would only overflow the socket's buffer
        "    if src == sys.argv[2]:\n"
        "        time.sleep(0.2); s.sendto(hello, gw)\n"
    )
    udp_before = gateway_udp(dbed)[0]
    try:
        r = dbed.in_client(
            sys.executable, "-c", sender, GW_IP, other, client_hello(sid).hex(), port.group(1), timeout=30
        )
        assert r.returncode == 0, r.stderr
    finally:
        sh("ip", "-n", dbed.ns_client, "addr", "del", f"{other}/24", "dev", f"{dbed.tag}cg", check=False)
    assert gateway_udp(dbed)[0] - udp_before > 1000, "the datagrams did not reach the gateway"
    assert wait_until(
        lambda: any(e.get("reason") == "wrong source" for e in gateway_events(dbed, "gateway.dtls_refused")), 5
    )
    assert dbed.gateway_alive()
    udp_in, _ = gateway_udp(dbed)
    assert dbed.in_client("ping", "-c", "3", "-W", "2", CAMPUS_IP).returncode == 0  # still up, still over DTLS
    assert gateway_udp(dbed)[0] - udp_in >= 3
    downs = [e for e in gateway_events(dbed, "gateway.channel_down") if e.get("user") == "1000000103"]
    assert not downs, downs  # the real client's DTLS channel survived
    sh("kill", "-INT", str(pid))
    assert wait_until(lambda: not pid_alive(pid), 10) is not None


def test_session_kill_ends_both_channels(dbed: Testbed) -> None:
    pid, log = connect(dbed, "1000000104", "kill")
    assert wait_until(lambda: "Established DTLS connection" in log.read_text(), 10) is not None, log.read_text()
    [sess] = json.loads(dbed.cli(None, "session", "list", "--user", "1000000104", "--json").stdout)
    dbed.cli(None, "session", "kill", sess["id"])
    assert wait_until(lambda: not pid_alive(pid), 5) is not None, "the client was still connected 5 s later"
    assert ADMIN_ENDED in log.read_text()
    downs = [e for e in gateway_events(dbed, "gateway.channel_down") if e.get("user") == "1000000104"]
    assert downs and downs[0]["channel"] == "dtls"
