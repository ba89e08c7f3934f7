"""Two gateway workers sharing the port, with the real openconnect: distinct addresses, a session resumed
on the other worker, revocation reaching every worker, and a worker killed with SIGKILL restarted.

Its own test bed (namespaces named with this process's pid and "cores"), since the shared one runs
the configured default.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest
from tests.e2e.test_openconnect import env_of, recorder, totp_args
from tests.e2e.testbed import CAMPUS_IP, GW_IP, PASSWORD, Testbed, missing_requirements, pid_alive, sh, wait_until

_missing = missing_requirements()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"e2e gateway tests: {_missing}")


@pytest.fixture(scope="module")
def bed2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    tb = Testbed(tmp_path_factory.mktemp("e2e-cores"), tag=f"c{os.getpid() % 100000}cores")
    try:
        tb.build()
        tb.init_site()
        text = tb.config.read_text()
        assert 'workers = "auto"' in text
        tb.config.write_text(text.replace('workers = "auto"', "workers = 2"))
        tb.start_gateway()
        assert wait_until(lambda: len(worker_pids(tb)) == 2, 20) is not None, tb.gw_log.read_text()
        yield tb
    finally:
        tb.destroy()
        print(f"\n--- gateway log ({tb.gw_log}) tail ---\n" + "\n".join(tb.gw_log.read_text().splitlines()[-20:]))


def log_lines(bed: Testbed) -> list[dict[str, object]]:
    out = []
    for line in bed.gw_log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def worker_pids(bed: Testbed) -> dict[int, int]:
    """Worker index -> pid of the live workers, as the parent logged them."""
    pids: dict[int, int] = {}
    for e in log_lines(bed):
        if e["event"] == "gateway.worker_started":
            pids[int(str(e["index"]))] = int(str(e["pid"]))
    return {i: p for i, p in pids.items() if pid_alive(p)}


def tunnel_workers(bed: Testbed, session_id: str) -> list[str]:
    """Which worker each tunnel of this session came up on, in order."""
    return [
        str(e["worker"]) for e in log_lines(bed) if e["event"] == "gateway.tunnel_up" and e["session"] == session_id
    ]


def connect(bed: Testbed, name: str, tag: str) -> tuple[int, str, str]:
    """Sign `name` in with openconnect in the background: its pid, its session id and its address."""
    u = bed.add_user(name)
    log = bed.dir / f"oc-{tag}.log"
    r = bed.connect_background(name, PASSWORD + "\n", script=recorder(bed, tag), extra=totp_args(u["secret"]), log=log)
    assert r.returncode == 0, log.read_text()
    address = env_of(bed, tag)["INTERNAL_IP4_ADDRESS"]
    [sess] = json.loads(bed.cli(None, "session", "list", "--user", name, "--json").stdout)
    return bed.clients[-1], str(sess["id"]), address


def test_two_clients_get_different_addresses_and_both_pass_traffic(bed2: Testbed) -> None:
    seen: dict[str, str] = {}
    for i in range(4):  # enough clients that both workers serve some (the kernel spreads the accepts)
        _, sid, address = connect(bed2, f"200000000{i}", f"w{i}")
        seen[sid] = address
        assert bed2.in_client("ping", "-c", "1", "-W", "2", CAMPUS_IP).returncode == 0
    assert len(set(seen.values())) == len(seen), seen
    workers = {tunnel_workers(bed2, sid)[-1] for sid in seen}
    print(f"tunnels on workers {sorted(workers)}")
    for pid in list(bed2.clients):
        sh("kill", "-INT", str(pid))
        assert wait_until(lambda p=pid: not pid_alive(p), 10) is not None  # type: ignore[misc]
    bed2.clients.clear()


def test_resumes_on_the_other_worker_after_the_tcp_connection_drops(bed2: Testbed) -> None:
    pid, sid, first = connect(bed2, "2000000010", "res")
    start = tunnel_workers(bed2, sid)[-1]
    done = bed2.dir / "done-res-reconnect"
    for attempt in range(1, 21):  # noqa: B007 - printed below; each reconnect is a new TCP connection, accepted by either worker
        done.unlink(missing_ok=True)
        before = len(tunnel_workers(bed2, sid))
        bed2.in_client("ss", "-K", "dst", GW_IP, "dport", "=", "443", check=True)
        again = env_of(bed2, "res", "reconnect", timeout=30)  # openconnect has set the tunnel up again
        assert len(tunnel_workers(bed2, sid)) > before
        if tunnel_workers(bed2, sid)[-1] != start:
            break
    else:
        pytest.fail("20 reconnects all landed on the same worker")
    print(f"resumed on worker {tunnel_workers(bed2, sid)[-1]} (began on {start}) after {attempt} reconnect(s)")
    assert pid_alive(pid)
    assert again["INTERNAL_IP4_ADDRESS"] == first
    assert wait_until(lambda: bed2.in_client("ping", "-c", "1", "-W", "1", CAMPUS_IP).returncode == 0, 15) is not None
    [listed] = json.loads(bed2.cli(None, "session", "list", "--user", "2000000010", "--json").stdout)
    assert listed["connected"] and listed["id"] == sid
    assert str(listed["node"]).endswith(f"/{tunnel_workers(bed2, sid)[-1]}")  # the worker holding it now


def test_revoke_reaches_tunnels_on_every_worker_within_5_seconds(bed2: Testbed) -> None:
    on: dict[str, tuple[int, str]] = {}  # worker -> (openconnect pid, user) of a tunnel there
    for i in range(12):  # sign in until both workers hold a tunnel
        name = f"20000001{i:02d}"
        pid, sid, _ = connect(bed2, name, f"rv{i}")
        on.setdefault(tunnel_workers(bed2, sid)[-1], (pid, name))
        if len(on) == 2:
            break
    assert len(on) == 2, "twelve sign-ins all landed on one worker"
    for worker, (pid, name) in sorted(on.items()):
        bed2.cli(None, "user", "revoke", name)
        took = wait_until(lambda p=pid: not pid_alive(p), 5)  # type: ignore[misc]
        assert took is not None, f"the tunnel on worker {worker} was still up 5 s after the revocation"
        print(f"revoked on worker {worker}: tunnel ended {took:.2f} s after the command")


def test_a_worker_killed_with_sigkill_is_restarted(bed2: Testbed) -> None:
    before = worker_pids(bed2)
    victim = before[1]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: len(worker_pids(bed2)) == 2 and victim not in worker_pids(bed2).values(), 20) is not None
    died = [e for e in log_lines(bed2) if e["event"] == "gateway.worker_died"]
    assert died and died[-1]["pid"] == victim and "signal 9" in str(died[-1]["status"])
    assert bed2.gateway_alive()
    # The restarted worker serves: sign-ins keep working whichever worker accepts them.
    for i in range(3):
        pid, _, _ = connect(bed2, f"200000003{i}", f"k{i}")
        sh("kill", "-INT", str(pid))
        assert wait_until(lambda p=pid: not pid_alive(p), 10) is not None  # type: ignore[misc]
