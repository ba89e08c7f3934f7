"""VPN sign-in through the browser with the real openconnect 9.01 (`--external-browser`) and
Debian's Chromium driven by Playwright (tests/e2e/sso_browser.py), in the client namespace.

The gateway here has `[vpn] login = "browser"` and the name `localhost` (passkeys need a name);
inside the client namespace a small relay makes https://localhost/ reach the gateway, while
openconnect's own listener is on localhost:29786 there, as on a person's computer. The
`--no-xmlpost` test uses the shared form-login test bed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_openconnect import authenticate, env_of, recorder, totp_args
from tests.e2e.testbed import CAMPUS_IP, GW_IP, PASSWORD, Testbed, missing_requirements, pid_alive, sh, wait_until

CHROMIUM = "/usr/bin/chromium"
BROWSER = Path(__file__).with_name("sso_browser.py")


def _missing() -> str | None:
    if missing_requirements() is not None:
        return missing_requirements()
    if not Path(CHROMIUM).exists():
        return "needs Debian chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the playwright package"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"e2e single sign-on: {_missing()}")

# https://localhost/ in the client namespace reaches the gateway (both loopback addresses).
RELAY = r"""
import asyncio, sys
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    finally:
        w.close()
async def serve(r, w):
    ur, uw = await asyncio.open_connection(sys.argv[1], 443)
    await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
async def main():
    a = await asyncio.start_server(serve, "127.0.0.1", 443)
    b = await asyncio.start_server(serve, "::1", 443)
    print("ready", flush=True)
    await asyncio.gather(a.serve_forever(), b.serve_forever())
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def sso_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    tb = Testbed(tmp_path_factory.mktemp("e2e-sso"))
    tb.tag = f"s{os.getpid() % 100000}sso"  # unique per run, short enough for interface names
    tb.ns_client, tb.ns_gw, tb.ns_campus = f"{tb.tag}-c", f"{tb.tag}-g", f"{tb.tag}-h"
    try:
        tb.build()
        tb.init_site()
        text = tb.config.read_text()
        for old, new in ((f'hostname = "{GW_IP}"', 'hostname = "localhost"'), ('login = "form"', 'login = "browser"')):
            assert old in text, old
            text = text.replace(old, new)
        tb.config.write_text(text)
        tb.start_gateway()
        relay = subprocess.Popen(
            ["ip", "netns", "exec", tb.ns_client, sys.executable, "-c", RELAY, GW_IP],
            stdout=subprocess.PIPE,
            text=True,
        )
        tb.procs.append(relay)  # type: ignore[arg-type]
        assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
        yield tb
    finally:
        tb.destroy()
        if tb.gw_log.exists():
            print("\n--- gateway log tail ---\n" + "\n".join(tb.gw_log.read_text().splitlines()[-20:]))


def browser(bed: Testbed, name: str, **plan: Any) -> tuple[Path, Path]:
    """The program openconnect opens the sign-in page with, and where it writes what it saw."""
    result = bed.dir / f"browser-{name}.json"
    result.unlink(missing_ok=True)
    plan_file = bed.dir / f"plan-{name}.json"
    plan = {"password": PASSWORD, "portal": "https://localhost", "result": str(result), **plan}
    plan.setdefault("profile", str(bed.dir / f"profile-{plan['user']}"))
    plan_file.write_text(json.dumps(plan))
    prog = bed.dir / f"browser-{name}.sh"
    prog.write_text(f'#!/bin/sh\nexec {sys.executable} {BROWSER} {plan_file} "$1"\n')
    prog.chmod(0o755)
    return prog, result


def seen(result: Path) -> dict[str, Any]:
    assert wait_until(result.exists, 60) is not None, "the browser program wrote nothing"
    got: dict[str, Any] = json.loads(result.read_text())
    assert "error" not in got, got["error"]
    return got


def sso_authenticate(bed: Testbed, user: str, prog: Path) -> subprocess.CompletedProcess[str]:
    args = bed.openconnect_args(user, script="/bin/true", extra=("--authenticate", "--external-browser", str(prog)))
    return sh(*args, check=False, input="\n", timeout=120)  # --passwd-on-stdin reads a line first


def test_password_and_totp_in_the_browser_bring_the_tunnel_up(sso_bed: Testbed) -> None:
    u = sso_bed.add_user("1100000001")
    prog, result = browser(sso_bed, "totp", user="1100000001", secret=u["secret"])
    log = sso_bed.dir / "oc-sso-totp.log"
    r = sso_bed.connect_background(
        "1100000001", "\n", script=recorder(sso_bed, "sso"), extra=("--external-browser", str(prog)), log=log
    )
    assert r.returncode == 0, log.read_text()
    got = seen(result)
    assert got["vpn_lead"] and got["asked_code"] and got["outcome"] == "ok", got
    assert got["signin_page"] == "https://localhost/signin"
    env = env_of(sso_bed, "sso")
    assert env["INTERNAL_IP4_ADDRESS"].startswith("172.31.")
    ping = sso_bed.in_client("ping", "-c", "2", "-W", "2", CAMPUS_IP)
    assert ping.returncode == 0, ping.stdout
    listed = json.loads(sso_bed.cli(None, "session", "list", "--user", "1100000001", "--json").stdout)
    assert listed[0]["connected"] and listed[0]["source"] == "10.200.0.2"
    pid = sso_bed.clients[-1]
    sh("kill", "-INT", str(pid))
    assert wait_until(lambda: not pid_alive(pid), 10) is not None


def test_skip_the_code_for_30_days_is_the_browsers_cookie(sso_bed: Testbed) -> None:
    u = sso_bed.add_user("1100000002")
    prog, result = browser(sso_bed, "trust1", user="1100000002", secret=u["secret"], trust=True)
    first = sso_authenticate(sso_bed, "1100000002", prog)
    assert first.returncode == 0 and "COOKIE=" in first.stdout, first.stdout + first.stderr
    assert seen(result)["asked_code"]
    prog, result = browser(sso_bed, "trust2", user="1100000002", secret=u["secret"])  # same profile directory
    second = sso_authenticate(sso_bed, "1100000002", prog)
    assert second.returncode == 0 and "COOKIE=" in second.stdout, second.stdout + second.stderr
    got = seen(result)
    assert not got["asked_code"] and got["outcome"] == "ok", got
    # A fresh browser (no cookie) is asked again.
    prog, result = browser(sso_bed, "trust3", user="1100000002", secret=u["secret"], profile=str(sso_bed.dir / "p3"))
    third = sso_authenticate(sso_bed, "1100000002", prog)
    assert third.returncode == 0, third.stdout + third.stderr
    assert seen(result)["asked_code"]


def test_a_passkey_brings_the_vpn_up_without_a_code(sso_bed: Testbed) -> None:
    u = sso_bed.add_user("1100000003")
    prog, result = browser(sso_bed, "passkey", user="1100000003", secret=u["secret"], passkey=True)
    r = sso_authenticate(sso_bed, "1100000003", prog)
    assert r.returncode == 0 and "COOKIE=" in r.stdout, r.stdout + r.stderr
    got = seen(result)
    assert got["outcome"] == "ok" and not got["asked_code"], got
    trail = json.loads(sso_bed.cli(None, "audit", "--user", "1100000003", "--json").stdout)
    passkey_at = max(i for i, e in enumerate(trail) if e["event"] == "signin.passkey" and e["outcome"] == "ok")
    decision = trail[passkey_at + 1]
    assert decision["event"] == "signin.decision" and decision["detail"]["factors"] == 2, trail[passkey_at:]


def test_a_refused_user_sees_the_reason_in_japanese_and_openconnect_fails(sso_bed: Testbed) -> None:
    applied = datetime.now(UTC) - timedelta(minutes=10)  # the activation delay has not passed
    u = sso_bed.add_user("1100000004", applied_at=applied.isoformat())
    prog, result = browser(sso_bed, "refused", user="1100000004", secret=u["secret"], locale="ja-JP")
    r = sso_authenticate(sso_bed, "1100000004", prog)
    assert r.returncode != 0 and "COOKIE=" not in r.stdout
    assert "MFA application is still being activated" in r.stdout + r.stderr, r.stdout + r.stderr
    got = seen(result)
    assert got["outcome"] == "refused", got
    assert re.search(r"\d{1,2}:\d{2}", got["text"]), got["text"]  # the exact time it becomes usable
    assert any("\u3040" <= ch <= "\u30ff" for ch in got["text"]), got["text"]  # in the person's language
    assert not json.loads(sso_bed.cli(None, "session", "list", "--user", "1100000004", "--json").stdout)


def test_no_xmlpost_clients_get_the_form_as_xml(bed: Testbed) -> None:
    u = bed.add_user("1100000005")
    r = authenticate(bed, "1100000005", PASSWORD + "\n", *totp_args(u["secret"]), "--no-xmlpost")
    assert r.returncode == 0 and "COOKIE=" in r.stdout, r.stdout + r.stderr
    assert 'no "auth" node' not in r.stderr
