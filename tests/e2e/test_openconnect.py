"""The real openconnect client against `campusvpn serve`, across network namespaces.

client ns --(10.200.0.0/24)-- gateway ns (campusvpn serve, TUN cvpn0) --(10.201.0.0/24)-- campus host ns
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from tests.e2e.helpers_net import FUZZER, TCP_CLIENT, TCP_SERVER
from tests.e2e.testbed import CAMPUS_IP, GW_IP, PASSWORD, Testbed, missing_requirements, pid_alive, sh, wait_until
from tests.helpers import sent_code

_missing = missing_requirements()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"e2e gateway tests: {_missing}")

# What `session kill` without --reason says (the session listing has it in English; the client is
# told in both languages, as the e2e users never chose one).
ADMIN_ENDED = "The session was ended by an administrator."


def recorder(bed: Testbed, tag: str) -> str:
    """A vpnc-script wrapper that records what openconnect passes, configures for real, then says it is done."""
    script = bed.dir / "record.sh"
    if not script.exists():
        script.write_text(
            '#!/bin/sh\nd=$(dirname "$0")\nenv | sort > "$d/env-$1-${reason}.txt"\n'
            'printf "%s" "$CISCO_BANNER" > "$d/banner-$1-${reason}.txt"\n'
            "/usr/share/vpnc-scripts/vpnc-script\nrc=$?\n"
            ': > "$d/done-$1-${reason}"\nexit $rc\n'
        )
        script.chmod(0o755)
    return f"{script} {tag}"


def env_of(bed: Testbed, tag: str, reason: str = "connect", *, timeout: float = 10) -> dict[str, str]:
    """What openconnect passed to the script, once the script has configured the tunnel."""
    done = bed.dir / f"done-{tag}-{reason}"
    assert wait_until(done.exists, timeout) is not None, f"vpnc-script did not finish with reason={reason}"
    path = bed.dir / f"env-{tag}-{reason}.txt"
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def totp_args(secret: object) -> tuple[str, ...]:
    return ("--token-mode=totp", f"--token-secret=base32:{secret}")


def authenticate(bed: Testbed, user: str, stdin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = bed.openconnect_args(user, script="/bin/true", extra=("--authenticate", *extra))
    return sh(*args, check=False, input=stdin, timeout=60)


def test_password_and_totp_then_ping_tcp_and_pushed_settings(bed: Testbed) -> None:
    u = bed.add_user("1000000001")
    log = bed.dir / "oc1.log"
    r = bed.connect_background(
        "1000000001", PASSWORD + "\n", script=recorder(bed, "a"), extra=totp_args(u["secret"]), log=log
    )
    assert r.returncode == 0, log.read_text()
    env = env_of(bed, "a")
    assert env["INTERNAL_IP4_ADDRESS"].startswith("172.31.")
    assert env["INTERNAL_IP4_NETMASKLEN"] == "32"
    assert env["INTERNAL_IP4_DNS"] == "10.201.0.53 10.201.0.63"
    assert env["INTERNAL_IP4_NBNS"] == "10.201.0.54"
    assert env["CISCO_DEF_DOMAIN"] == "campus.test"
    assert (env["CISCO_SPLIT_INC"], env["CISCO_SPLIT_INC_0_ADDR"], env["CISCO_SPLIT_INC_0_MASKLEN"]) == (
        "1",
        "10.201.0.0",
        "24",
    )
    excludes = {
        (env[f"CISCO_SPLIT_EXC_{i}_ADDR"], env[f"CISCO_SPLIT_EXC_{i}_MASKLEN"])
        for i in range(int(env["CISCO_SPLIT_EXC"]))
    }
    local_lan = ("0.0.0.0", "32")  # noqa: S104 - Cisco's "allow local LAN access" marker, not a bind
    assert excludes == {local_lan, ("10.201.0.128", "25")}
    assert env["CISCO_PROXY_PAC"] == "http://proxy.campus.test/proxy.pac"
    assert env["CISCO_BANNER"] == "Welcome to the campus VPN"
    assert "default" not in bed.in_client("ip", "route").stdout  # split tunnel: no default route

    ping = bed.in_client("ping", "-c", "3", "-W", "2", CAMPUS_IP)
    assert ping.returncode == 0, ping.stdout

    server = subprocess.Popen(
        ["ip", "netns", "exec", bed.ns_campus, sys.executable, "-c", TCP_SERVER, CAMPUS_IP, str(4 * 1024 * 1024)],
        stdout=subprocess.PIPE,
        text=True,
    )
    bed.procs.append(server)  # type: ignore[arg-type]
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    client = bed.in_client(sys.executable, "-c", TCP_CLIENT, CAMPUS_IP, str(4 * 1024 * 1024), timeout=60)
    digest, verdict = client.stdout.split()
    assert verdict == "ok", client.stdout + client.stderr
    assert server.stdout.readline().strip() == digest  # the campus host got every byte the client sent
    server.wait(10)

    listed = json.loads(bed.cli(None, "session", "list", "--user", "1000000001", "--json").stdout)
    assert listed[0]["connected"] and listed[0]["source"] == "10.200.0.2"
    assert listed[0]["protocol"] == "anyconnect"

    # Ctrl-C: openconnect says BYE, and the session is over (its cookie is refused from now on).
    pid = bed.clients[-1]
    sh("kill", "-INT", str(pid))
    assert wait_until(lambda: not pid_alive(pid), 10) is not None
    ended = json.loads(bed.cli(None, "session", "list", "--all", "--user", "1000000001", "--json").stdout)
    assert ended[0]["ended"] and "signed off" in ended[0]["end_reason"]
    assert ended[0]["bytes_in"] > 4 * 1024 * 1024 and ended[0]["bytes_out"] > 4 * 1024 * 1024


def test_recovery_code_signs_in(bed: Testbed) -> None:
    u = bed.add_user("1000000002")
    codes = u["codes"]
    assert isinstance(codes, list)
    r = authenticate(bed, "1000000002", f"{PASSWORD}\n{codes[0]}\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "COOKIE=" in r.stdout
    shown = json.loads(bed.cli(None, "mfa", "show", "1000000002", "--json").stdout)
    assert shown["recovery_codes_left"] == 9


def test_sms_code_from_the_outbox(bed: Testbed) -> None:
    bed.add_user("1000000003", totp=False, phone="+819012345678")
    outbox = bed.site / "outbox.jsonl"
    args = bed.openconnect_args("1000000003", script="/bin/true", extra=("--authenticate",))
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None
    p.stdin.write(f"{PASSWORD}\nsms\n")  # "sms" typed in the code field asks for a text message
    p.stdin.flush()

    def sms() -> str | None:
        if not outbox.exists():
            return None
        msgs = [json.loads(x) for x in outbox.read_text().splitlines() if x.strip()]
        mine = [m for m in msgs if m["username"] == "1000000003" and m["channel"] == "sms"]
        return mine[-1]["text"] if mine else None

    assert wait_until(lambda: sms() is not None, 15) is not None, "no SMS in the outbox"
    text = sms()
    assert text is not None and "+819012345678" not in text
    code = sent_code(text)
    out, err = p.communicate(f"{code}\n", timeout=30)
    assert p.returncode == 0, out + err
    assert "COOKIE=" in out


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_code", "That code is not right"),
        ("mfa_10_minutes_ago", "still being activated"),
        ("training_missing", "information-security training"),
        ("revoked", "Your account has been closed"),
    ],
)
def test_refusals_come_back_as_the_clients_error_text(bed: Testbed, case: str, expected: str) -> None:
    name = {
        "wrong_code": "1000000011",
        "mfa_10_minutes_ago": "1000000012",
        "training_missing": "1000000013",
        "revoked": "1000000014",
    }[case]
    applied = (datetime.now(UTC) - timedelta(minutes=10)).isoformat() if case == "mfa_10_minutes_ago" else None
    u = bed.add_user(name, trained=case != "training_missing", applied_at=applied)
    if case == "revoked":
        bed.cli(None, "user", "revoke", name)
    if case == "wrong_code":
        r = authenticate(bed, name, f"{PASSWORD}\n000000\n")
    else:
        r = authenticate(bed, name, f"{PASSWORD}\n", *totp_args(u["secret"]))
    assert r.returncode != 0
    output = r.stdout + r.stderr
    assert expected in output, output
    if case == "mfa_10_minutes_ago":  # the exact time VPN use becomes possible, in the service's zone
        assert "JST" in output, output
        assert "(in 30 minutes)" in output or "(in 29 minutes)" in output, output


def test_resumes_after_the_tcp_connection_is_cut(bed: Testbed) -> None:
    u = bed.add_user("1000000004")
    log = bed.dir / "oc4.log"
    r = bed.connect_background(
        "1000000004", PASSWORD + "\n", script=recorder(bed, "r"), extra=totp_args(u["secret"]), log=log
    )
    assert r.returncode == 0, log.read_text()
    first = env_of(bed, "r")["INTERNAL_IP4_ADDRESS"]
    bed.in_client("ss", "-K", "dst", GW_IP, "dport", "=", "443", check=True)
    again = env_of(bed, "r", "reconnect")
    assert again["INTERNAL_IP4_ADDRESS"] == first
    assert bed.in_client("ping", "-c", "2", "-W", "2", CAMPUS_IP).returncode == 0
    listed = json.loads(bed.cli(None, "session", "list", "--user", "1000000004", "--json").stdout)
    assert len(listed) == 1 and listed[0]["connected"]


@pytest.mark.parametrize("how", ["session_kill", "user_revoke"])
def test_tunnel_ends_within_5_seconds(bed: Testbed, how: str) -> None:
    name = "1000000005" if how == "session_kill" else "1000000006"
    u = bed.add_user(name)
    log = bed.dir / f"oc-{how}.log"
    r = bed.connect_background(name, PASSWORD + "\n", script=recorder(bed, how), extra=totp_args(u["secret"]), log=log)
    assert r.returncode == 0, log.read_text()
    pid = bed.clients[-1]
    env_of(bed, how)
    if how == "session_kill":
        [sess] = json.loads(bed.cli(None, "session", "list", "--user", name, "--json").stdout)
        bed.cli(None, "session", "kill", sess["id"])
    else:
        bed.cli(None, "user", "revoke", name)
    took = wait_until(lambda: not pid_alive(pid), 5)
    assert took is not None, "the client was still connected 5 s later"
    print(f"{how}: tunnel ended {took:.2f} s after the command")
    [ended] = json.loads(bed.cli(None, "session", "list", "--all", "--user", name, "--json").stdout)
    assert ended["ended"]
    client_log = log.read_text()
    if how == "session_kill":
        assert ended["end_reason"] == ADMIN_ENDED
        assert ADMIN_ENDED in client_log
    else:
        assert "Your account was closed." in client_log
        # An unused recovery code rather than this TOTP step's code, which the first sign-in used up:
        # so only the revocation can refuse, without waiting for the next step.
        codes = u["codes"]
        assert isinstance(codes, list)
        again = authenticate(bed, name, f"{PASSWORD}\n{codes[0]}\n")
        assert again.returncode != 0 and "Your account has been closed" in again.stdout + again.stderr


def test_fuzzed_garbage_does_not_disturb_another_session(bed: Testbed) -> None:
    good = bed.add_user("1000000007")
    log = bed.dir / "oc7.log"
    r = bed.connect_background(
        "1000000007", PASSWORD + "\n", script=recorder(bed, "g"), extra=totp_args(good["secret"]), log=log
    )
    assert r.returncode == 0, log.read_text()
    env_of(bed, "g")
    bad = bed.add_user("1000000008")
    auth = authenticate(bed, "1000000008", f"{PASSWORD}\n", *totp_args(bad["secret"]))
    assert auth.returncode == 0, auth.stderr
    found = re.search(r"webvpn=([^;'\s]+)", auth.stdout)
    assert found, auth.stdout
    cookie = found.group(1)
    ping = subprocess.Popen(
        ["ip", "netns", "exec", bed.ns_client, "ping", "-c", "40", "-i", "0.25", "-W", "2", CAMPUS_IP],
        stdout=subprocess.PIPE,
        text=True,
    )
    fuzz = bed.in_client(sys.executable, "-c", FUZZER, GW_IP, cookie, "80", "7", timeout=150)
    assert "fuzzed 80" in fuzz.stdout, fuzz.stdout + fuzz.stderr
    out, _ = ping.communicate(timeout=60)
    assert " 0% packet loss" in out, out
    assert bed.gateway_alive()
    text = bed.gw_log.read_text()
    assert "gateway.bad_frame" in text and "gateway.bad_xml" in text
    assert "Traceback" not in text
    assert bed.in_client("ping", "-c", "1", "-W", "2", CAMPUS_IP).returncode == 0


def test_trusted_device_skips_the_code_via_the_gateway_address(bed: Testbed) -> None:
    u = bed.add_user("1000000010")
    code = pyotp.TOTP(str(u["secret"])).now()
    log = bed.dir / "oc10.log"
    # No token mode: the code is typed, with " trust" after it, as a person would.
    r = bed.connect_background("1000000010", f"{PASSWORD}\n{code} trust\n", script=recorder(bed, "t"), log=log)
    assert r.returncode == 0, log.read_text()
    env_of(bed, "t")
    banner = (bed.dir / "banner-t-connect.txt").read_text()
    # The user never chose a language: both, the configured default (Japanese) first.
    assert banner.startswith("Welcome to the campus VPN\nこの端末は ") and "This device is trusted until " in banner
    found = re.search(r"https://[0-9.]+/d/([A-Za-z0-9_-]+)", banner)
    assert found, banner
    pid = bed.clients[-1]
    sh("kill", "-INT", str(pid))
    assert wait_until(lambda: not pid_alive(pid), 10) is not None
    devices = json.loads(bed.cli(None, "devices", "list", "1000000010", "--json").stdout)
    assert len(devices) == 1
    # From the trusted address only the password is asked: stdin has no code line.
    args = [
        "ip",
        "netns",
        "exec",
        bed.ns_client,
        "openconnect",
        "--authenticate",
        "--servercert",
        bed.pin,
        "--user",
        "1000000010",
        "--passwd-on-stdin",
        "--non-inter",
        f"https://{GW_IP}/d/{found.group(1)}",
    ]
    again = sh(*args, check=False, input=f"{PASSWORD}\n", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "webvpn=" in again.stdout
    # Revoked: the code is asked again (and, with no code to give, the sign-in fails).
    bed.cli(None, "devices", "revoke", "1000000010", "--all")
    revoked = sh(*args, check=False, input=f"{PASSWORD}\n", timeout=60)
    assert revoked.returncode != 0
    assert "Verification code" in revoked.stdout + revoked.stderr


def test_metrics_are_served_locally(bed: Testbed) -> None:
    u = bed.add_user("1000000015")
    assert authenticate(bed, "1000000015", f"{PASSWORD}\n", *totp_args(u["secret"])).returncode == 0
    fetch = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9180/metrics', timeout=5).read().decode())"
    r = sh("ip", "netns", "exec", bed.ns_gw, sys.executable, "-c", fetch)
    assert 'campusvpn_logins_total{outcome="ok",protocol="anyconnect"}' in r.stdout
    assert 'campusvpn_tunnels{protocol="anyconnect"}' in r.stdout
    assert "campusvpn_protocol_errors_total" in r.stdout
