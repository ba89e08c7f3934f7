"""The identity-verified self-reset in real headless Chromium (Debian's, driven by Playwright), with
the npm oidc-provider (run by node) as the identity-verification service: Hanako links her verified
identity after a step-up, signs out, "forgets" her password and loses her phone, verifies at the
provider, sets a new password and resets MFA, then signs in with the new password and is sent to
register MFA again. Another person's identity at the same provider is refused and changes nothing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from tests.browser.test_oidc_browser import CHROMIUM, START, _missing, _set, _site
from tests.cli_run import campusvpn_command, clean_env, run_campusvpn
from tests.helpers import enrol_totp, free_port, stop_process
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, running_provider

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import load_config
from campusvpn.service.context import open_context

USER, PASSWORD = "1234567890", "correct horse battery staple"
NEW_PASSWORD = "a long new phrase for the vpn"

pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


class TestClock:
    """The server's clock file: a time written there runs on from the moment it was written."""

    __test__ = False

    def __init__(self, path: Path, at: datetime) -> None:
        self.path = path
        self.jump(at)

    def jump(self, at: datetime) -> None:
        self.path.write_text(at.isoformat())
        self._at, self._set = at, time.monotonic()

    def now(self) -> datetime:
        return self._at + timedelta(seconds=time.monotonic() - self._set)


@pytest.fixture
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, OidcProvider, TestClock, str]]:
    """`campusvpn serve` with [verification] at the node provider; Hanako with a password and an app."""
    port = free_port()
    portal = f"https://127.0.0.1:{port}"
    with running_provider(tmp_path / "idp", portal + "/identity/callback") as idp:
        cfg = _site(tmp_path / "site", port, {})
        values = {
            "enabled": "true",
            "label": '"My Number Card"',
            "issuer": f'"{idp.issuer}"',
            "client_id": f'"{CLIENT_ID}"',
            "client_secret": f'"{CLIENT_SECRET}"',
            "ca_file": f'"{idp.ca_file}"',
        }
        cfg.write_text(_set(cfg.read_text(), "verification", values))
        add = ["user", "add", USER, "--role", "staff", "--from", "2020-04-01", "--password-stdin"]
        r = run_campusvpn(cfg, *add, stdin=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr
        fixed = FixedClock(START)
        ctx = open_context(load_config(cfg), fixed)
        secret, _ = enrol_totp(ctx, fixed, USER)  # applied, registered, 41 minutes later
        ctx.engine.dispose()
        clock = TestClock(tmp_path / "now.txt", fixed.now())
        log_path = tmp_path / "serve.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*campusvpn_command(now_file=clock.path), "--config", str(cfg), "serve", "--no-tun"],
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
            yield portal, idp, clock, secret
        finally:
            stop_process(proc)


def at_provider(page: Any, idp: OidcProvider, login: str) -> None:
    """The provider's own pages: its development sign-in form (any password), then consent."""
    page.wait_for_url(idp.issuer + "/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    page.wait_for_selector("button[type=submit]:has-text('Continue')")
    page.click("button[type=submit]")


def test_link_then_reset_password_and_mfa_then_sign_in(
    chromium: Any, served: tuple[str, OidcProvider, TestClock, str]
) -> None:
    portal, idp, clock, secret = served
    home = chromium.new_context(ignore_https_errors=True, locale="en-US")
    page = home.new_page()
    page.set_default_timeout(20000)
    page.goto(portal + "/signin")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(portal + "/signin/code")
    page.fill("input[name=code]", pyotp.TOTP(secret).at(clock.now()))
    page.press("input[name=code]", "Enter")
    page.wait_for_url(portal + "/")
    # Later (the sign-in's code is no longer fresh), she links her identity: a step-up first.
    clock.jump(clock.now() + timedelta(minutes=25))
    page.goto(portal + "/identity")
    assert page.is_visible("#identity-not-linked")
    page.click("#identity-link")
    page.wait_for_url(portal + "/stepup?next=/identity")
    page.fill("input[name=code]", pyotp.TOTP(secret).at(clock.now()))
    page.press("input[name=code]", "Enter")
    page.wait_for_url(portal + "/identity")
    page.click("#identity-link")
    at_provider(page, idp, "hanako")
    page.wait_for_url(portal + "/identity")
    assert "is linked since" in page.inner_text("#identity-linked")
    page.click("header form[action='/signout'] button")
    page.wait_for_url(portal + "/signin**")
    home.close()

    # On another computer, password forgotten and phone lost.
    away = chromium.new_context(ignore_https_errors=True, locale="en-US")
    page = away.new_page()
    page.set_default_timeout(20000)
    page.goto(portal + "/signin")
    page.click("#forgot")
    page.wait_for_url(portal + "/forgot")
    page.click("#verify-start")
    at_provider(page, idp, "hanako")
    page.wait_for_url(portal + "/reset")
    assert USER in page.inner_text("main")
    page.fill("input[name=new]", NEW_PASSWORD)
    page.fill("input[name=again]", NEW_PASSWORD)
    page.check("input[name=mfa]")
    page.click("main form button[type=submit]")
    page.wait_for_url(portal + "/signin?out=reset")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", NEW_PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(portal + "/register")  # MFA is registered again, no code asked
    away.close()

    # Taro, another account at the same provider, is not linked: refused, nothing changes.
    other = chromium.new_context(ignore_https_errors=True, locale="en-US")
    page = other.new_page()
    page.set_default_timeout(20000)
    page.goto(portal + "/forgot")
    page.click("#verify-start")
    at_provider(page, idp, "taro")
    page.wait_for_url(portal + "/identity/callback**")
    assert "not linked to any account" in page.inner_text("main")
    refused = page.goto(portal + "/reset")
    assert refused is not None and refused.status == 403 and page.locator("input[name=new]").count() == 0
    page.goto(portal + "/signin")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", NEW_PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(portal + "/register")  # Hanako's new password still stands
    other.close()
