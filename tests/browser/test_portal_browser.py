"""The portal in real headless Chromium (Debian's, driven by Playwright) against `campusvpn serve`
on loopback: the whole member journey, the admin console, CSRF, and the Japanese pages.

The server's clock is a FileClock, so "40 minutes later" is a rewrite of one file. Screenshots of
the main pages in both languages are written to artifacts/screenshots/, or to docs/screenshots/ (linked
from docs/portal.md) with CAMPUSVPN_REFRESH_SCREENSHOTS=1."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from tests.cli_run import campusvpn_command, clean_env, run_campusvpn
from tests.helpers import free_port, stop_process

CHROMIUM = "/usr/bin/chromium"
USER, ADMIN = "1234567890", "9000000001"
PASSWORD = "correct horse battery staple"
START = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
# Test runs leave their screenshots in artifacts/ (not tracked); refresh the documentation's with
# CAMPUSVPN_REFRESH_SCREENSHOTS=1 (then commit docs/screenshots/).
_ROOT = Path(__file__).resolve().parents[2]
SHOTS = _ROOT / ("docs" if os.environ.get("CAMPUSVPN_REFRESH_SCREENSHOTS") == "1" else "artifacts") / "screenshots"


def _missing() -> str | None:
    for tool in (CHROMIUM, shutil.which("zbarimg"), shutil.which("tesseract")):
        if not tool or not os.path.exists(tool):
            return "needs Debian chromium, zbar-tools and tesseract-ocr(-jpn) (scripts/test installs them)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the playwright package (pip install -e .[dev])"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@dataclass
class Site:
    dir: Path
    config: Path
    url: str
    clock_file: Path
    proc: subprocess.Popen[bytes] | None = None
    _base: datetime = START
    _set_at: float = 0.0

    def set_time(self, at: datetime) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(at.isoformat())
        os.replace(tmp, self.clock_file)  # the server never sees a half-written time
        self._base, self._set_at = at, time.monotonic()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._set_at)

    def advance(self, delta: timedelta) -> None:
        self.set_time(self.now() + delta)

    def cli(self, *args: str, stdin: str = "") -> str:
        r = run_campusvpn(self.config, *args, stdin=stdin, now=self.now().isoformat())
        assert r.returncode == 0, f"campusvpn {args}: {r.stdout}{r.stderr}"
        return r.stdout

    def outbox(self) -> list[dict[str, str]]:
        path = self.dir / "outbox.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("portal")
    init = run_campusvpn(None, "init", "--dir", str(d / "site"), "--service-user", "")
    assert init.returncode == 0, init.stderr
    port = free_port()
    cfg = d / "site" / "campusvpn.toml"
    text = cfg.read_text()
    for old, new in [
        ('listen = "0.0.0.0:443"', f'listen = "127.0.0.1:{port}"'),
        ('metrics_listen = "127.0.0.1:9180"', f'metrics_listen = "127.0.0.1:{free_port()}"'),
        ('hostname = "vpn.example.ac.jp"', 'hostname = "localhost"'),  # WebAuthn needs a name, not an address
        ("argon2_time_cost = 2", "argon2_time_cost = 1"),
        ("argon2_memory_kib = 19456", "argon2_memory_kib = 8192"),
        ("admins = []", f'admins = ["{ADMIN}"]'),
        ('idle_timeout = "30m"', 'idle_timeout = "4h"'),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    s = Site(d / "site", cfg, f"https://127.0.0.1:{port}", d / "now.txt")
    s.set_time(START)
    s.cli(
        "user",
        "add",
        USER,
        "--role",
        "staff",
        "--from",
        "2020-04-01",
        "--email",
        "taro@example.ac.jp",
        "--name",
        "Yamada Taro",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    s.cli(
        "user",
        "add",
        ADMIN,
        "--role",
        "staff",
        "--from",
        "2020-04-01",
        "--name",
        "Help Desk",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    csv = d / "training.csv"
    csv.write_text(f"username,completed_on\n{USER},2026-07-10\n")
    s.cli("training", "import", str(csv))
    log = (d / "serve.log").open("ab")
    s.proc = subprocess.Popen(
        [*campusvpn_command(now_file=s.clock_file), "--config", str(cfg), "serve", "--no-tun"],
        stdout=log,
        stderr=log,
        env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while "gateway.listening" not in (d / "serve.log").read_text(errors="replace"):
            assert s.proc.poll() is None, (d / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not start in 30 s"
            time.sleep(0.1)
        yield s
    finally:
        stop_process(s.proc)
        if os.environ.get("CAMPUSVPN_KEEP_LOGS"):
            print((d / "serve.log").read_text())


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def shot(page: object, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def sign_in(page: object, site: Site, name: str) -> None:
    page.goto(site.url + "/signin")  # type: ignore[attr-defined]
    page.fill("input[name=username]", name)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]:not(.link)")  # type: ignore[attr-defined]


def sign_out(page: object) -> None:
    page.click("header button.link")  # type: ignore[attr-defined]


def code_for(site: Site, secret: str) -> str:
    return pyotp.TOTP(secret).at(site.now())


def register_totp_from_qr(page: object, site: Site, tmp: Path) -> tuple[str, list[str]]:
    """Read the QR code off the page as a phone would, and answer with the code it yields."""
    page.click("a[href='/mfa/totp']")  # type: ignore[attr-defined]
    qr = tmp / "qr.png"
    page.locator("#qr").screenshot(path=str(qr))  # type: ignore[attr-defined]
    out = subprocess.run(["zbarimg", "--quiet", "--raw", str(qr)], capture_output=True, text=True, timeout=30)
    uri = out.stdout.strip()
    assert uri.startswith("otpauth://totp/"), (out.stdout, out.stderr)
    secret = pyotp.parse_uri(uri).secret
    assert secret == page.inner_text("#secret").replace(" ", "")  # shown in groups of four  # type: ignore[attr-defined]
    page.fill("input[name=code]", code_for(site, secret))  # type: ignore[attr-defined]
    page.click("form[action='/mfa/totp'] button")  # type: ignore[attr-defined]
    codes = page.locator("#recovery-codes code").all_inner_texts()  # type: ignore[attr-defined]
    return secret, codes


def test_member_and_admin_journey(site: Site, browser: object, tmp_path: Path) -> None:
    ctx = browser.new_context(ignore_https_errors=True, locale="en-US", viewport={"width": 1100, "height": 800})  # type: ignore[attr-defined]
    page = ctx.new_page()
    page.set_default_timeout(15000)

    # Sign-in page in both languages.
    page.goto(site.url + "/signin?lang=ja")
    # The style sheet arrived whole through the gateway's bridge (CSP allows only our own files).
    assert page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") == "rgb(11, 46, 89)"
    shot(page, "signin-ja")
    page.goto(site.url + "/signin?lang=en")
    shot(page, "signin-en")

    # Apply → the exact time VPN use starts → signed out to register at the next sign-in.
    sign_in(page, site, "１２３４５６７８９０@example.ac.jp")  # full-width digits and the realm
    assert "You have not applied for MFA" in page.content()
    page.click("main a[href='/apply']")
    # The clock runs from 09:00:00, so 40 minutes on is a little past 09:40: shown as the first whole
    # minute at or after it, never a minute at which the VPN would still refuse.
    assert "you can use the VPN from 2026-10-01 09:41" in page.inner_text("main")
    shot(page, "apply-en")
    page.click("form[action='/apply'] button")
    assert "Sign in again to register" in page.inner_text("main")

    # Forced registration: TOTP from the QR code, then the recovery codes once.
    sign_in(page, site, USER)
    assert "Register a verification method" in page.inner_text("main")
    page.click("a[href='/mfa/totp']")
    shot(page, "register-totp-en")
    page.go_back()
    secret, codes = register_totp_from_qr(page, site, tmp_path)
    assert len(codes) == 10 and all(re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", c) for c in codes)
    shot(page, "recovery-codes-en")

    # VPN status before the 40 minutes: the reason and its time.
    page.goto(site.url + "/vpn")
    assert page.locator("[data-code=mfa_activation_pending]").count() == 1
    assert "09:41" in page.inner_text("#vpn-decision")
    shot(page, "vpn-pending-en")

    # Sign out, sign in with a TOTP code and "skip on this device".
    sign_out(page)
    site.advance(timedelta(seconds=60))  # a new TOTP step: each code is accepted once
    sign_in(page, site, USER)
    assert page.locator("input[name=code]").count() == 1
    shot(page, "code-en")
    page.click("#other-way")  # "Sign in another way": the account's registered ways, then back to the app
    assert page.locator("#other-ways button").count() >= 2  # the authenticator app and the recovery codes
    shot(page, "other-ways-en")
    page.go_back()
    page.fill("input[name=code]", code_for(site, secret))
    page.check("input[name=trust]")
    page.click("form[action='/signin/code'] button[type=submit]:not([name=send])")
    assert "Welcome" in page.inner_text("h1")
    sign_out(page)
    sign_in(page, site, USER)
    assert "Code skipped: this device is trusted" in page.inner_text("main")  # never silent
    page.goto(site.url + "/devices")
    assert "Chrome on Linux" in page.inner_text("#devices")
    shot(page, "devices-en")
    page.click("#devices button")
    shot(page, "confirm-revoke-en")
    page.click("#confirm-yes")  # revoking is confirmed on its own page first
    assert "revoked" in page.inner_text("main")
    sign_out(page)
    sign_in(page, site, USER)
    assert page.locator("input[name=code]").count() == 1, "a revoked device must be asked for a code again"
    site.advance(timedelta(seconds=60))
    page.fill("input[name=code]", code_for(site, secret))
    page.check("input[name=trust]")  # trusted again: the VPN client below uses this browser's device URL
    page.click("form[action='/signin/code'] button[type=submit]:not([name=send])")

    # Add a phone with the SMS code from the outbox, then delete it.
    page.goto(site.url + "/mfa/phone")
    page.fill("input[name=number]", "090-1234-5678")
    page.click("button[value=send]")
    sms = [m for m in site.outbox() if m["channel"] == "sms"][-1]
    code = re.search(r"\b(\d{6})\b", sms["text"])
    assert code, sms
    page.fill("input[name=code]", code.group(1))
    page.click("button[value=confirm]")
    assert "Mobile phone" in page.inner_text("#methods")
    shot(page, "security-en")
    page.goto(site.url + "/security?lang=ja")
    shot(page, "security-ja")
    page.goto(site.url + "/security?lang=en")
    page.click("#methods tr[data-kind=phone] button.danger")
    page.click("#confirm-yes")
    assert "Mobile phone" not in page.inner_text("#methods")
    mails = [m["text"] for m in site.outbox() if m["channel"] == "email"]
    assert any("added: Mobile phone" in m for m in mails) and any("deleted: Mobile phone" in m for m in mails)

    # A POST without the CSRF token is refused (the browser's own cookies go with it).
    r = ctx.request.post(site.url + "/security", form={"action": "codes"})
    assert r.status == 403 and "did not come from this site" in r.text()

    # After the 40 minutes the VPN is allowed.
    site.set_time(START + timedelta(minutes=41))
    page.goto(site.url + "/vpn")
    assert "You may use the VPN now." in page.inner_text("#vpn-decision")
    shot(page, "vpn-allowed-en")

    # A real openconnect signs in (trusted-device URL: password only) and so holds a live session.
    device = next(c["value"] for c in ctx.cookies() if c["name"] == "campusvpn-device")
    pin = re.search(r"pin-sha256:[A-Za-z0-9+/=]+", page.goto(site.url + "/connect").text())
    assert pin
    shot(page, "connect-en")
    oc = subprocess.run(
        [
            "openconnect",
            "--authenticate",
            "--non-inter",
            "--passwd-on-stdin",
            f"--user={USER}",
            f"--servercert={pin.group(0)}",
            f"{site.url}/d/{device}",
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "COOKIE=" in oc.stdout, oc.stdout + oc.stderr
    page.goto(site.url + "/vpn")
    assert page.locator("table button.danger").count() == 1
    page.goto(site.url + "/vpn?lang=ja")
    text = page.inner_text("main")
    assert "VPN の状態" in text and "現在 VPN を利用できます" in text
    ocr_check(shot(page, "vpn-ja"))

    # The admin: MFA like everyone, then find the user, end the session, reset MFA with a reason.
    admin = browser.new_context(ignore_https_errors=True, locale="en-US", viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
    ap = admin.new_page()
    ap.set_default_timeout(15000)
    sign_in(ap, site, ADMIN)
    ap.click("main a[href='/apply']")
    ap.click("form[action='/apply'] button")
    sign_in(ap, site, ADMIN)
    register_totp_from_qr(ap, site, tmp_path)
    ap.goto(site.url + "/admin")
    ap.fill("input[name=q]", "Yamada")
    ap.click("main form button")
    ap.click(f"#results a[href='/admin/users/{USER}']")
    assert "127.0.0.1" in ap.inner_text("#sessions")
    shot(ap, "admin-user-en")
    ap.fill("#sessions input[name=reason]", "ended in the browser test")  # required, then confirmed
    ap.click("#sessions button")
    ap.click("#confirm-yes")
    assert "Done" in ap.inner_text("main") and ap.locator("#sessions button").count() == 0
    ap.fill("#action-reset_mfa input[name=reason]", "Lost phone; identity checked at the desk (ID card)")
    ap.click("#action-reset_mfa button")
    shot(ap, "admin-confirm-en")
    ap.click("#confirm-yes")  # reset MFA is confirmed on its own page, the reason repeated
    assert ap.locator("#audit tr[data-event='mfa.reset']").count() == 1
    assert "identity checked at the desk" in ap.inner_text("#audit")
    assert ap.get_attribute("#mfa-state", "data-state") == "registration_required"
    ap.goto(site.url + f"/admin/users/{USER}?lang=ja")
    shot(ap, "admin-user-ja")
    # The member was signed out by the reset.
    page.goto(site.url + "/vpn")
    assert page.url.startswith(site.url + "/signin")
    admin.close()
    ctx.close()


def ocr_check(path: Path) -> None:
    """The Japanese page really shows Japanese glyphs (fonts present), read back by OCR."""
    out = subprocess.run(["tesseract", str(path), "-", "-l", "jpn"], capture_output=True, text=True, timeout=120)
    text = re.sub(r"\s+", "", out.stdout)
    cjk = [ch for ch in text if "\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff"]
    assert len(cjk) >= 20, f"OCR found too little Japanese in {path.name}: {out.stdout!r}"
    assert any(w in text for w in ("利用", "状態", "接続", "セッション")), out.stdout


def test_passkey_register_sign_in_and_delete(site: Site, browser: object, tmp_path: Path) -> None:
    """A virtual authenticator (Chromium's DevTools WebAuthn domain) stands in for a security key."""
    name = "1234500001"
    site.cli("user", "add", name, "--role", "staff", "--from", "2020-04-01", "--password-stdin", stdin=PASSWORD + "\n")
    site.cli("mfa", "apply", name)
    url = site.url.replace("127.0.0.1", "localhost")
    ctx = browser.new_context(ignore_https_errors=True, locale="en-US")  # type: ignore[attr-defined]
    page = ctx.new_page()
    page.set_default_timeout(15000)
    cdp = ctx.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.goto(url + "/signin")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    site.advance(timedelta(seconds=60))
    register_totp_from_qr(page, site, tmp_path)
    page.goto(url + "/security")
    page.click("button[data-passkey=register]")
    page.wait_for_selector("#passkeys")
    assert "Chrome on Linux" in page.inner_text("#passkeys")
    page.click("header button.link")  # sign out
    page.goto(url + "/signin")
    page.click("button[data-passkey=signin]")
    page.wait_for_url(url + "/")
    assert "Welcome" in page.inner_text("h1")
    # The sign-in engine decided it, like a password sign-in: a verified passkey is both factors.
    trail = json.loads(site.cli("audit", "--user", name, "--json"))
    passkey_at = max(i for i, e in enumerate(trail) if e["event"] == "signin.passkey" and e["outcome"] == "ok")
    decision = trail[passkey_at + 1]
    assert decision["event"] == "signin.decision" and decision["detail"]["factors"] == 2, trail[passkey_at:]
    page.goto(url + "/security")
    page.click("#passkeys button.danger")
    page.click("#confirm-yes")  # deleting is confirmed on its own page first
    assert page.locator("#passkeys").count() == 0
    # The deleted passkey no longer signs in.
    page.click("header button.link")
    page.goto(url + "/signin")
    page.click("button[data-passkey=signin]")
    page.wait_for_selector("#passkey-status:not([hidden])")
    assert page.url.startswith(url + "/signin")
    ctx.close()
