"""`campusvpn serve` started as root gives up root once it listens, and openconnect still tunnels through it.

A system user unique to the run is created (by `serve` itself) and deleted afterwards. When this Python
lives where that user cannot reach (pyenv under /root), the gateway and the CLI run it through a bind
mount in their own mount namespace, so the host is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli_run import clean_env
from tests.e2e.testbed import CAMPUS_IP, PASSWORD, Testbed, missing_requirements, sh, wait_until
from tests.helpers import sent_code

from campusvpn.platform import state_files
from campusvpn.platform.privileges import parse_status

_missing = missing_requirements() or next(
    (f"needs {t}" for t in ("useradd", "userdel", "unshare", "mount") if shutil.which(t) is None), None
)
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"e2e privilege tests: {_missing}")


class Site:
    def __init__(self, bed: Testbed, user: str, mount: Path) -> None:
        self.bed, self.user, self.mount = bed, user, mount
        prefix = Path(sys.base_prefix).resolve()
        self.bind: tuple[Path, Path] | None = None
        self.venv = sys.prefix != sys.base_prefix
        if self.venv:
            # The venv's own python (a link into the base installation): resolving it would leave the
            # venv, and with it campusvpn's packages. Both folders must be within the user's reach.
            self.python = Path(sys.executable)
            return
        python = Path(sys.executable).resolve()
        self.python = python
        if state_files.unreachable(prefix, -1, []) and python.is_relative_to(prefix):
            self.bind = (prefix, mount)
            self.python = mount / python.relative_to(prefix)

    def command(self, *args: str) -> list[str]:
        """`campusvpn ARGS` with a Python the service user can reach (to run in a private mount namespace)."""
        run = [str(self.python), "-m", "campusvpn", "--config", str(self.bed.config), *args]
        if self.bind is None:
            return run
        return ["sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", *map(str, self.bind), *run]

    def cli_as_operator(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "slave", *self.command(*args)],
            input=stdin,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
            check=False,
        )


@pytest.fixture
def site() -> Iterator[Site]:
    user = f"cvp{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="cvpriv-"))
    work.chmod(0o711)  # the service user passes through to its folder, and sees nothing else here
    bed = Testbed(work)
    (work / "python").mkdir()
    s = Site(bed, user, work / "python")
    out_of_reach = (
        [Path(sys.prefix), Path(sys.base_prefix).resolve()] if s.venv else [Path(sys.executable).resolve().parent]
    )
    blocked = next((p for p in out_of_reach if s.bind is None and state_files.unreachable(p, -1, [])), None)
    if blocked is not None:
        pytest.skip(f"e2e privilege tests: {blocked} (the Python running the tests) is out of a service user's reach")
    try:
        bed.build()
        bed.init_site()
        text = bed.config.read_text()
        assert 'user = ""' in text
        # One process, as the tests below read the serving process's credentials from the gateway's
        # pid; test_workers_run_as_the_service_user covers several workers.
        text = text.replace('user = ""', f'user = "{user}"').replace('workers = "auto"', "workers = 1")
        bed.config.write_text(text)
        yield s
    finally:
        bed.destroy()
        sh("userdel", user, check=False)
        shutil.rmtree(work, ignore_errors=True)
        print(f"\n--- gateway log tail ---\n{_tail(bed.gw_log)}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text().splitlines()[-15:]) if log.exists() else ""


def start_gateway(s: Site) -> int:
    bed = s.bed
    seen = bed.gw_log.stat().st_size if bed.gw_log.exists() else 0  # a restart: only this run's lines count
    with bed.gw_log.open("ab") as log:
        bed.gw_proc = subprocess.Popen(
            ["ip", "netns", "exec", bed.ns_gw, *s.command("serve")], stdout=log, stderr=log, env=clean_env()
        )
    ok = wait_until(lambda: "gateway.privileges_dropped" in bed.gw_log.read_text()[seen:] or bed.gw_proc.poll(), 30)
    assert ok is not None and bed.gw_proc.poll() is None, f"gateway did not drop root: {_tail(bed.gw_log)}"
    return bed.gw_proc.pid


def status(pid: int) -> dict[int, str]:
    return {int(t.name): (t / "status").read_text() for t in Path(f"/proc/{pid}/task").iterdir()}


def test_serve_runs_as_the_service_user_without_capabilities_and_still_tunnels(site: Site) -> None:
    bed = site.bed
    u = bed.add_user("1000000001")  # the root CLI before the gateway ever ran: the files are root's
    pid = start_gateway(site)

    main = parse_status(Path(f"/proc/{pid}/status").read_text())
    assert 0 not in main.uids and 0 not in main.gids and main.groups == ()
    assert (main.cap_eff, main.cap_prm, main.cap_inh, main.cap_amb, main.no_new_privs) == (0, 0, 0, 0, True)
    assert main.uids[0] == int(sh("id", "-u", site.user).stdout)
    for tid, text in status(pid).items():  # the metrics thread and the worker threads as well
        assert parse_status(text).leftovers() == [], (tid, text)
    listening = sh("ip", "netns", "exec", bed.ns_gw, "ss", "-Htlnp").stdout
    assert f"pid={pid}," in listening and ":443" in listening and ":9180" in listening

    oc = bed.connect_background(
        "1000000001",
        PASSWORD + "\n",
        script="/usr/share/vpnc-scripts/vpnc-script",
        extra=("--token-mode=totp", f"--token-secret=base32:{u['secret']}"),
        log=bed.dir / "oc.log",
    )
    assert oc.returncode == 0, (bed.dir / "oc.log").read_text()
    # The TUN descriptor opened as root still carries packets (once vpnc-script has set the routes).
    routed = wait_until(lambda: "10.201.0.0/24" in bed.in_client("ip", "route").stdout, 15)
    assert routed is not None, bed.in_client("ip", "route").stdout
    ping = bed.in_client("ping", "-c", "3", "-W", "2", CAMPUS_IP)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # Every file the gateway and SQLite made, and every file of the state, is the service user's alone.
    for f in [bed.site, *bed.site.rglob("*")]:
        st = f.stat()
        assert (st.st_uid, st.st_mode & 0o077) == (main.uids[0], 0), f
    assert (bed.site / "campusvpn.db-wal").exists()


def test_workers_run_as_the_service_user_and_tunnel(site: Site) -> None:
    """With several workers the parent stays root (TUN devices, routes, restarts) and reads nothing from
    the network; every worker, which does, has dropped root like a single gateway."""
    bed = site.bed
    bed.config.write_text(bed.config.read_text().replace("workers = 1", "workers = 2"))
    u = bed.add_user("1000000005")
    start_gateway(site)
    dropped = wait_until(lambda: bed.gw_log.read_text().count("gateway.privileges_dropped") >= 2, 60)
    assert dropped is not None, _tail(bed.gw_log)
    workers = [
        int(e["pid"])
        for e in (json.loads(x) for x in bed.gw_log.read_text().splitlines() if x.startswith("{"))
        if e["event"] == "gateway.worker_started"
    ]
    assert len(workers) == 2
    service_uid = int(sh("id", "-u", site.user).stdout)
    for pid in workers:
        assert parse_status(Path(f"/proc/{pid}/status").read_text()).uids[0] == service_uid
        for tid, text in status(pid).items():
            assert parse_status(text).leftovers() == [], (pid, tid, text)
    oc = bed.connect_background(
        "1000000005",
        PASSWORD + "\n",
        script="/usr/share/vpnc-scripts/vpnc-script",
        extra=("--token-mode=totp", f"--token-secret=base32:{u['secret']}"),
        log=bed.dir / "oc5.log",
    )
    assert oc.returncode == 0, (bed.dir / "oc5.log").read_text()
    routed = wait_until(lambda: "10.201.0.0/24" in bed.in_client("ip", "route").stdout, 15)
    assert routed is not None, bed.in_client("ip", "route").stdout
    ping = bed.in_client("ping", "-c", "3", "-W", "2", CAMPUS_IP)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_after_root_cli_commands_the_gateway_still_writes(site: Site) -> None:
    bed = site.bed
    bed.add_user("1000000002", totp=False, phone="+819012345678")
    pid = start_gateway(site)
    uid = parse_status(Path(f"/proc/{pid}/status").read_text()).uids[0]

    # An operator, as root, with the gateway up: a plain root command, then one that becomes the service user.
    bed.cli(None, "user", "add", "1000000003", "--role", "staff", "--password-stdin", stdin=PASSWORD + "\n")
    r = site.cli_as_operator("user", "add", "1000000004", "--role", "staff")
    assert r.returncode == 0, r.stdout + r.stderr
    probe = site.cli_as_operator("audit", "--user", "1000000004", "--json")
    assert json.loads(probe.stdout)[0]["actor"] == "cli:root"  # who ran it is kept, whoever it acts as

    # Stop the gateway so SQLite removes its companions, and let the root CLI make them anew.
    bed.stop_gateway()
    bed.cli(None, "user", "show", "1000000003")
    for f in bed.site.rglob("*"):
        assert f.stat().st_uid == uid, f
    pid = start_gateway(site)

    # The gateway writes the outbox, sessions and the audit trail as the service user.
    args = bed.openconnect_args("1000000002", script="/bin/true", extra=("--authenticate",))
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None
    p.stdin.write(f"{PASSWORD}\nsms\n")
    p.stdin.flush()
    outbox = bed.site / "outbox.jsonl"
    assert wait_until(outbox.exists, 15) is not None, _tail(bed.gw_log)
    assert outbox.stat().st_uid == uid and outbox.stat().st_mode & 0o777 == 0o600
    time.sleep(0.2)
    code = sent_code(json.loads(outbox.read_text().splitlines()[-1])["text"])
    out, err = p.communicate(f"{code}\n", timeout=30)
    assert p.returncode == 0 and "COOKIE=" in out, out + err
    log = bed.gw_log.read_text()
    assert "write_failed" not in log and "readonly" not in log and "housekeeping_failed" not in log
    assert parse_status(Path(f"/proc/{pid}/status").read_text()).uids[0] == uid


def test_a_service_user_that_cannot_reach_the_state_makes_init_refuse(tmp_path: Path) -> None:
    # pytest's folders are root's alone: a service user could never open the database there.
    r = subprocess.run(
        [sys.executable, "-m", "campusvpn", "init", "--dir", str(tmp_path / "site"), "--service-user", "nobody"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 1 and "the service user nobody cannot reach" in r.stderr
    assert not (tmp_path / "site").exists()
