"""The "browser" openconnect opens for single sign-on (`--external-browser`): Debian's Chromium,
headless, driven by Playwright, doing what a person would on the portal's sign-in page.

    sso_browser.py PLAN.json URL

PLAN says who signs in and how (password, TOTP secret, tick "skip the code", passkey) and where
to write what the last page showed. The browser profile directory persists between runs, so a
trusted-device cookie from one VPN sign-in is there for the next, as in a person's browser.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pyotp
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"


def code_page_or_done(page: Page) -> str:
    """After the password: the code page, or (trusted device, refusal) already past it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "/sso/done" in page.url:
            return "done"
        if page.locator("input[name=code]").count():
            return "code"
        if page.locator("p.error[role=alert]").count() and "/signin" in page.url:
            return "error"
        page.wait_for_timeout(100)
    raise AssertionError(f"neither the code page nor the end: {page.url}")


def enter_code(page: Page, plan: dict[str, Any]) -> None:
    """Type the app's current code; a code this account used a moment ago is refused as replayed,
    so then wait for the next one, as a person would."""
    for _ in range(2):
        page.fill("input[name=code]", pyotp.TOTP(plan["secret"]).now())
        if plan.get("trust"):
            page.check("input[name=trust]")
        page.click("form button[type=submit]:not([name=send])")
        page.wait_for_load_state()
        if "already used" not in page.locator("body").inner_text():
            return
        page.wait_for_timeout(1000 * (31 - time.time() % 30))


def register_passkey(page: Page, plan: dict[str, Any]) -> None:
    """Sign in to the portal (password + code) and register a passkey, then sign out."""
    portal = plan["portal"]
    page.goto(portal + "/signin")
    page.fill("input[name=username]", plan["user"])
    page.fill("input[name=password]", plan["password"])
    page.click("form button[type=submit]")
    page.fill("input[name=code]", pyotp.TOTP(plan["secret"]).now())
    page.click("form button[type=submit]:not([name=send])")
    page.goto(portal + "/security")
    page.click("button[data-passkey=register]")
    page.wait_for_selector("#passkeys")
    page.click("header button.link")  # sign out: the VPN sign-in must not ride on this session


def main(plan_path: str, url: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    result: dict[str, Any] = {"start": url}
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            plan["profile"],
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox"],
            ignore_https_errors=True,
            locale=plan.get("locale", "en-US"),
        )
        try:
            page = ctx.new_page()
            page.set_default_timeout(20000)
            failed: list[str] = []
            result["failed_requests"] = failed
            page.on("requestfailed", lambda r: failed.append(f"{r.url[:120]}: {r.failure}"))
            page.on(
                "response", lambda r: failed.append(f"{r.status} {r.url[:100]} {r.headers.get('location', '')[:60]}")
            )
            if plan.get("passkey"):
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
                register_passkey(page, plan)
            page.goto(url)
            result["signin_page"] = page.url
            result["vpn_lead"] = page.locator("#vpn-signin").count() > 0
            if plan.get("passkey"):
                page.click("button[data-passkey=signin]")
                result["asked_code"] = False
            else:
                page.fill("input[name=username]", plan["user"])
                page.fill("input[name=password]", plan["password"])
                page.click("form button[type=submit]")
                step = code_page_or_done(page)
                result["asked_code"] = step == "code"
                if step == "code":
                    enter_code(page, plan)
            page.wait_for_url("**/sso/done", timeout=30000)
            outcome = page.locator("#sso-outcome")
            result["outcome"] = outcome.get_attribute("data-outcome")
            result["text"] = outcome.inner_text()
        except Exception:  # the test reads what went wrong from the result file
            result["error"] = traceback.format_exc()
            if "page" in locals():
                result["url"] = page.url
                result["page"] = page.locator("body").inner_text()[:2000]
        finally:
            ctx.close()  # writes the cookies to the profile directory
    Path(plan["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
