"""The real openconnect signing in with the university directory's password (a real OpenLDAP, Debian
slapd, on the campus host) and campusvpn's TOTP, and the tunnel coming up; campusvpn's own stored
password no longer works; the directory down is said as such to the client.

client ns --(10.200.0.0/24)-- gateway ns (campusvpn serve) --(10.201.0.0/24)-- campus host ns (slapd)
The gateway reaches the directory by name (ldap.campus.test, in the gateway namespace's own
/etc/hosts) over StartTLS, checking its certificate against the test's CA file."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.test_openconnect import authenticate, env_of, recorder, totp_args
from tests.e2e.testbed import CAMPUS_IP, PASSWORD, Testbed, missing_requirements, pid_alive, sh, wait_until
from tests.slapd_server import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, SLAPD, USERS, Slapd, running_slapd

_missing = missing_requirements() or (None if Path(SLAPD).exists() else "needs Debian slapd")
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"e2e LDAP tests: {_missing}")
LDAP_NAME = "ldap.campus.test"
HANAKO = USERS[0]


def _set(text: str, section: str, values: dict[str, str]) -> str:
    """Set keys of one section of the configuration `init` wrote (each key is there once)."""
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    body = text[start : end if end != -1 else len(text)]
    for key, value in values.items():
        body, n = re.subn(rf"(?m)^{key} = .*$", lambda _m, k=key, v=value: f"{k} = {v}", body, count=1)
        assert n == 1, f"[{section}] {key} is not in the configuration init wrote"
    return text[:start] + body + (text[end:] if end != -1 else "")


@pytest.fixture(scope="module")
def ldap_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Testbed, Slapd]]:
    tb = Testbed(tmp_path_factory.mktemp("e2e-ldap"))
    hosts = Path(f"/etc/netns/{tb.ns_gw}/hosts")
    try:
        tb.build()
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(f"127.0.0.1 localhost\n{CAMPUS_IP} {LDAP_NAME}\n")
        with running_slapd(tb.dir, address=CAMPUS_IP, netns=tb.ns_campus, tls_name=LDAP_NAME) as slapd:
            tb.init_site()
            text = _set(tb.config.read_text(), "identity", {"first_factor": '"ldap"'})
            text = _set(
                text,
                "ldap",
                {
                    "servers": f'["ldap://{LDAP_NAME}:{slapd.port}"]',
                    "starttls": "true",
                    "ca_file": f'"{slapd.ca_file}"',
                    "base_dn": f'"{PEOPLE}"',
                    "service_dn": f'"{SERVICE_DN}"',
                    "service_password": f'"{SERVICE_PASSWORD}"',
                    "connect_timeout": '"2s"',
                    "timeout": '"3s"',
                },
            )
            tb.config.write_text(text)
            tb.start_gateway()
            yield tb, slapd
    finally:
        tb.destroy()
        shutil.rmtree(hosts.parent, ignore_errors=True)
        if tb.gw_log.exists():
            print("\n--- gateway log tail ---\n" + "\n".join(tb.gw_log.read_text().splitlines()[-15:]))


def test_directory_password_and_totp_bring_the_tunnel_up(ldap_bed: tuple[Testbed, Slapd]) -> None:
    bed, _ = ldap_bed
    u = bed.add_user(HANAKO.uid)  # campusvpn's account (MFA, training); its stored password is not used
    log = bed.dir / "oc-ldap.log"
    r = bed.connect_background(
        HANAKO.uid, HANAKO.password + "\n", script=recorder(bed, "ldap"), extra=totp_args(u["secret"]), log=log
    )
    assert r.returncode == 0, log.read_text()
    env = env_of(bed, "ldap")
    assert env["INTERNAL_IP4_ADDRESS"].startswith("172.31.")
    ping = bed.in_client("ping", "-c", "3", "-W", "2", CAMPUS_IP)
    assert ping.returncode == 0, ping.stdout
    listed = json.loads(bed.cli(None, "session", "list", "--user", HANAKO.uid, "--json").stdout)
    assert listed[0]["connected"] and listed[0]["protocol"] == "anyconnect"
    # The audit trail names the directory as the one that checked the password.
    events = json.loads(bed.cli(None, "audit", "--user", HANAKO.uid, "--json").stdout)
    checked = [e for e in events if e["event"] == "signin.password" and e["outcome"] == "ok"]
    assert checked and all(e["detail"].get("backend") == "ldap" for e in checked), events
    pid = bed.clients[-1]
    sh("kill", "-INT", str(pid))
    assert wait_until(lambda: not pid_alive(pid), 10) is not None


def test_campusvpns_own_password_no_longer_signs_in(ldap_bed: tuple[Testbed, Slapd]) -> None:
    bed, _ = ldap_bed
    # With the right code, so only the password decides.
    u = bed.add_user("1000000099")  # not in the directory: its campusvpn password must not open the VPN
    r = authenticate(bed, "1000000099", PASSWORD + "\n", *totp_args(u["secret"]))
    assert r.returncode != 0 and "COOKIE=" not in r.stdout, r.stdout + r.stderr


def test_the_directory_down_is_said_to_the_client(ldap_bed: tuple[Testbed, Slapd]) -> None:
    bed, slapd = ldap_bed
    slapd.stop()  # runs last in this module: the directory stays down
    r = authenticate(bed, HANAKO.uid, HANAKO.password + "\n")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "temporarily unavailable" in out, out
