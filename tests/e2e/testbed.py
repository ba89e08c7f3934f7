"""A three-namespace test bed (client, gateway, campus host) with the real gateway running in it.

Names are unique per run; everything created is removed, processes are stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.cli_run import clean_env, run_campusvpn

GW_IP, CLIENT_IP, CAMPUS_GW, CAMPUS_IP = "10.200.0.1", "10.200.0.2", "10.201.0.1", "10.201.0.2"
VPNC_SCRIPT = "/usr/share/vpnc-scripts/vpnc-script"
PASSWORD = "a long enough password"


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN)"
    for tool in ("ip", "openconnect", "ss", "ping"):
        if shutil.which(tool) is None:
            return f"needs {tool} (scripts/test installs openconnect, vpnc-scripts, iproute2, iputils-ping)"
    if not Path(VPNC_SCRIPT).exists():
        return "needs vpnc-scripts"
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun"
    return None


def sh(*args: str, check: bool = True, timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout, **kw)  # type: ignore[call-overload]


class Testbed:
    __test__ = False  # a helper, not a test class

    def __init__(self, workdir: Path, tag: str | None = None) -> None:
        # `tag` prefixes namespace and link names (link names: 13 characters at most).
        self.tag = tag or "cv" + secrets.token_hex(3)
        self.ns_client, self.ns_gw, self.ns_campus = f"{self.tag}-c", f"{self.tag}-g", f"{self.tag}-h"
        self.dir = workdir
        self.site = workdir / "site"
        self.config = self.site / "campusvpn.toml"
        self.gw_proc: subprocess.Popen[bytes] | None = None
        self.gw_log = workdir / "gateway.log"
        self.clients: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    # --- network ---------------------------------------------------------------------------

    def build(self) -> None:
        t = self.tag
        for ns in (self.ns_client, self.ns_gw, self.ns_campus):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"{t}gc", "type", "veth", "peer", "name", f"{t}cg")
        sh("ip", "link", "add", f"{t}gh", "type", "veth", "peer", "name", f"{t}hg")
        for dev, ns in (
            (f"{t}gc", self.ns_gw),
            (f"{t}cg", self.ns_client),
            (f"{t}gh", self.ns_gw),
            (f"{t}hg", self.ns_campus),
        ):
            sh("ip", "link", "set", dev, "netns", ns)
        for ns, dev, addr in (
            (self.ns_gw, f"{t}gc", GW_IP),
            (self.ns_client, f"{t}cg", CLIENT_IP),
            (self.ns_gw, f"{t}gh", CAMPUS_GW),
            (self.ns_campus, f"{t}hg", CAMPUS_IP),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns_campus, "route", "add", "172.31.0.0/16", "via", CAMPUS_GW)
        sh("ip", "netns", "exec", self.ns_gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # vpnc-script rewrites resolv.conf: give the client namespace its own.
        Path(f"/etc/netns/{self.ns_client}").mkdir(parents=True, exist_ok=True)
        Path(f"/etc/netns/{self.ns_client}/resolv.conf").write_text("nameserver 127.0.0.1\n")

    def destroy(self) -> None:
        for pid in self.clients:
            _stop_pid(pid)
        for p in self.procs:
            _stop_pid(p.pid)
        self.stop_gateway()
        for ns in (self.ns_client, self.ns_gw, self.ns_campus):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(f"/etc/netns/{self.ns_client}", ignore_errors=True)

    # --- the service -----------------------------------------------------------------------

    def init_site(self) -> None:
        self.cli(None, "init", "--dir", str(self.site), "--service-user", "")  # test_privileges covers the drop
        text = self.config.read_text()
        for old, new in [
            ('listen = "0.0.0.0:443"', f'listen = "{GW_IP}:443"'),
            ('split_include = ["10.0.0.0/8"]', 'split_include = ["10.201.0.0/24"]'),
            ("dns = []", 'dns = ["10.201.0.53", "10.201.0.63"]'),
            ("wins = []", 'wins = ["10.201.0.54"]'),
            ("split_exclude = []", 'split_exclude = ["10.201.0.128/25"]'),
            ('proxy_pac = ""', 'proxy_pac = "http://proxy.campus.test/proxy.pac"'),
            ('banner = ""', 'banner = "Welcome to the campus VPN"'),
            ('domain = "example.ac.jp"', 'domain = "campus.test"'),
            ("argon2_time_cost = 2", "argon2_time_cost = 1"),
            ("argon2_memory_kib = 19456", "argon2_memory_kib = 8192"),
            ('hostname = "vpn.example.ac.jp"', f'hostname = "{GW_IP}"'),
            ('dpd = "30s"', 'dpd = "5s"'),
            ('keepalive = "20s"', 'keepalive = "5s"'),
        ]:
            assert old in text, old
            text = text.replace(old, new)
        self.config.write_text(text)

    def cli(self, now: str | None, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        r = run_campusvpn(None if args[0] == "init" else self.config, *args, stdin=stdin, now=now)
        if check and r.returncode != 0:
            raise AssertionError(f"campusvpn {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r

    def start_gateway(self) -> None:
        env = clean_env()
        log = self.gw_log.open("ab")
        # `ip netns exec` execs the command, so this PID is the gateway's own.
        self.gw_proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns_gw,
                sys.executable,
                "-m",
                "campusvpn",
                "--config",
                str(self.config),
                "serve",
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        # Each worker is a fresh interpreter: on a loaded machine start-up takes a while.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "gateway.listening" in self.gw_log.read_text(errors="replace"):
                return
            if self.gw_proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.gw_log.read_text()}")
            time.sleep(0.1)
        raise AssertionError("gateway did not start in 60 s")

    def stop_gateway(self) -> None:
        if self.gw_proc is not None and self.gw_proc.poll() is None:
            self.gw_proc.send_signal(signal.SIGTERM)
            try:
                self.gw_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.gw_proc.kill()
                self.gw_proc.wait(5)

    def gateway_alive(self) -> bool:
        return self.gw_proc is not None and self.gw_proc.poll() is None

    @property
    def pin(self) -> str:
        cert = x509.load_pem_x509_certificate((self.site / "tls" / "cert.pem").read_bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()

    # --- people ----------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        role: str = "staff",
        trained: bool = True,
        applied_at: str | None = None,
        totp: bool = True,
        phone: str | None = None,
    ) -> dict[str, object]:
        """An account ready for the VPN (unless told otherwise); returns its TOTP secret and recovery codes."""
        self.cli(
            None, "user", "add", name, "--role", role, "--from", "2020-04-01", "--password-stdin", stdin=PASSWORD + "\n"
        )
        if trained:
            f = self.dir / f"t-{name}.csv"
            f.write_text(f"username,completed_on\n{name},2026-07-10\n")
            self.cli(None, "training", "import", str(f))
        out: dict[str, object] = {}
        self.cli(applied_at or "2026-01-01T00:00:00+00:00", "mfa", "apply", name)
        if phone:
            self.cli(None, "mfa", "add-phone", name, "--kind", "mobile", "--number", phone)
        if totp:
            e = json.loads(self.cli(None, "mfa", "add-totp", name, "--json").stdout)
            # Confirm with the previous step's code, so the current one stays fresh for the first login;
            # the CLI checks it at the very instant the code was made for, so a step boundary cannot intervene.
            now = datetime.now(UTC)
            prev = pyotp.TOTP(e["secret"]).at(now - timedelta(seconds=30))
            confirmed = self.cli(now.isoformat(), "mfa", "confirm", name, prev, "--json")
            out["codes"] = json.loads(confirmed.stdout)["codes"]
            out["secret"] = e["secret"]
        elif phone:
            out["codes"] = json.loads(self.cli(None, "mfa", "recovery-codes", name, "--json").stdout)["codes"]
        return out

    # --- clients ---------------------------------------------------------------------------

    def openconnect_args(self, user: str, *, script: str, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            self.ns_client,
            "openconnect",
            "--servercert",
            self.pin,
            "--user",
            user,
            "--passwd-on-stdin",
            "--non-inter",
            "--script",
            script,
            *extra,
            f"https://{GW_IP}/",
        ]

    def connect_background(
        self, user: str, stdin: str, *, script: str, extra: tuple[str, ...] = (), log: Path
    ) -> subprocess.CompletedProcess[str]:
        pidfile = self.dir / f"oc-{user}-{secrets.token_hex(2)}.pid"
        args = self.openconnect_args(user, script=script, extra=("--background", f"--pid-file={pidfile}", *extra))
        # The backgrounded child keeps stdout open: send it to a file, not a pipe we would wait on.
        with log.open("w") as out:
            r = subprocess.run(
                args, input=stdin, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=60, check=False
            )
        if pidfile.exists():
            self.clients.append(int(pidfile.read_text().strip()))
            r.pid = int(pidfile.read_text().strip())  # type: ignore[attr-defined]
        return r

    def in_client(self, *args: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns_client, *args, check=check, timeout=timeout)


def _stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until(predicate: object, timeout: float, step: float = 0.1) -> float | None:
    """Seconds it took for predicate() to hold, or None if it never did within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(step)
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
