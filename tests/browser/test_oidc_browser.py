"""'Sign in with <university>' in real headless Chromium (Debian's, driven by Playwright): the portal
served by `campusvpn serve`, the button, the npm oidc-provider's own sign-in and consent pages
(run by node), back to the portal, campusvpn's TOTP code, the portal's home page."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from tests.cli_run import campusvpn_command, clean_env, run_campusvpn
from tests.helpers import enrol_totp, free_port, stop_process
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, running_provider

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import load_config
from campusvpn.service.context import open_context

CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "1234567890", "correct horse battery staple"  # the provider's "hanako"
START = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return "needs Debian chromium (scripts/test installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the playwright package (pip install -e .[dev])"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _set(text: str, section: str, values: dict[str, str]) -> str:
    """Set keys of one section of the configuration `init` wrote (each key is there once)."""
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    body = text[start : end if end != -1 else len(text)]
    for key, value in values.items():
        body = re.sub(rf"(?m)^{key} = .*$", lambda _m, k=key, v=value: f"{k} = {v}", body, count=1)
    return text[:start] + body + (text[end:] if end != -1 else "")


def _site(d: Path, port: int, oidc: dict[str, str]) -> Path:
    init = run_campusvpn(None, "init", "--dir", str(d), "--service-user", "")
    assert init.returncode == 0, init.stderr
    cfg = d / "campusvpn.toml"
    text = cfg.read_text()
    for old, new in [
        ('listen = "0.0.0.0:443"', f'listen = "127.0.0.1:{port}"'),
        ('metrics_listen = "127.0.0.1:9180"', f'metrics_listen = "127.0.0.1:{free_port()}"'),
        ("argon2_time_cost = 2", "argon2_time_cost = 1"),
        ("argon2_memory_kib = 19456", "argon2_memory_kib = 8192"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(_set(text, "oidc", oidc))
    return cfg


@pytest.fixture
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_sign_in_through_the_providers_pages_then_totp(chromium: object, tmp_path: Path) -> None:
    port = free_port()
    portal = f"https://127.0.0.1:{port}"
    with running_provider(tmp_path / "idp", portal + "/signin/oidc/callback") as idp:
        cfg = _site(
            tmp_path / "site",
            port,
            {
                "enabled": "true",
                "label": '"Example University"',
                "issuer": f'"{idp.issuer}"',
                "client_id": f'"{CLIENT_ID}"',
                "client_secret": f'"{CLIENT_SECRET}"',
                "ca_file": f'"{idp.ca_file}"',
            },
        )
        r = run_campusvpn(
            cfg,
            "user",
            "add",
            USER,
            "--role",
            "staff",
            "--from",
            "2020-04-01",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert r.returncode == 0, r.stderr
        clock = FixedClock(START)
        ctx = open_context(load_config(cfg), clock)
        secret, _ = enrol_totp(ctx, clock, USER)  # applied, registered, 41 minutes later
        ctx.engine.dispose()
        clock_file = tmp_path / "now.txt"
        clock_file.write_text(clock.now().isoformat())
        set_at = time.monotonic()
        log_path = tmp_path / "serve.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*campusvpn_command(now_file=clock_file), "--config", str(cfg), "serve", "--no-tun"],
                stdout=log,
                stderr=log,
                env=clean_env(),
            )
        try:
            deadline = time.monotonic() + 30
            while "gateway.listening" not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the server did not start in 30 s"
                time.sleep(0.1)
            context = chromium.new_context(ignore_https_errors=True, locale="en-US")  # type: ignore[attr-defined]
            page = context.new_page()
            page.set_default_timeout(20000)
            page.goto(portal + "/signin")
            page.click("#signin-oidc")
            # The provider's own pages: sign-in (its development form) and consent.
            page.wait_for_url(idp.issuer + "/**")
            page.fill("input[name=login]", "hanako")
            page.fill("input[name=password]", "anything")
            page.click("button[type=submit]")
            page.wait_for_selector("button[type=submit]:has-text('Continue')")
            page.click("button[type=submit]")
            # Back at the portal: campusvpn's second factor.
            page.wait_for_url(portal + "/signin/code")
            now = clock.now() + timedelta(seconds=time.monotonic() - set_at)
            page.fill("input[name=code]", pyotp.TOTP(secret).at(now))
            page.click("form button[type=submit]")
            page.wait_for_url(portal + "/")
            assert USER in page.inner_text("header")
            context.close()
        finally:
            stop_process(proc)
