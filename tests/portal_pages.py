"""Every portal page, reached the way people reach it, for tests that look at all of them
(both languages: tests/test_portal_languages.py). Each visit returns the page's HTML."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

from starlette.testclient import TestClient
from tests.conftest import add_user
from tests.helpers import enrol_totp
from tests.oidc_provider import OidcProvider
from tests.test_oidc_signin import through_provider
from tests.test_portal import ADMIN, USER, client, csrf, register_totp, sign_in, totp_now

from campusvpn.platform.clock import FixedClock
from campusvpn.service import mfa, sessions
from campusvpn.service.context import Context
from campusvpn.service.sender import read_outbox

# (name, fetch(lang) -> html): fetch may be called once per language.
Visit = tuple[str, Callable[[str], str]]


def _get(c: TestClient, url: str) -> Callable[[str], str]:
    sep = "&" if "?" in url else "?"
    return lambda lang: c.get(f"{url}{sep}lang={lang}").text


def _post(c: TestClient, url: str, page_url: str, data: dict[str, str]) -> Callable[[str], str]:
    def go(lang: str) -> str:
        page = c.get(f"{page_url}{'&' if '?' in page_url else '?'}lang={lang}").text
        return c.post(f"{url}{'&' if '?' in url else '?'}lang={lang}", data={"csrf": csrf(page), **data}).text

    return go


def every_page(ctx: Context, clock: FixedClock) -> Iterator[Visit]:
    """Walks a member and an administrator through every page; yields each page as it comes."""
    c = client(ctx)
    yield "signin", _get(c, "/signin")

    def refused(lang: str) -> str:
        c.get(f"/signin?lang={lang}")  # the choice is kept in a cookie
        return sign_in(c, USER, "wrong password")

    yield "signin-refused", refused
    yield "not-found", _get(c, "/no-such-page")
    sign_in(c)
    yield "home-not-applied", _get(c, "/")
    yield "apply", _get(c, "/apply")
    yield "vpn-refused", _get(c, "/vpn")
    yield "connect", _get(c, "/connect")
    page = c.get("/apply").text
    yield "applied", lambda lang: c.post(f"/apply?lang={lang}", data={"csrf": csrf(page)}).text
    sign_in(c)
    yield "register", _get(c, "/register")
    yield "totp", _get(c, "/mfa/totp")
    yield "totp-wrong-code", _post(c, "/mfa/totp", "/mfa/totp", {"code": "000000"})
    secret, _ = register_totp(c, ctx, clock)
    yield "home", _get(c, "/")
    yield "vpn-waiting", _get(c, "/vpn")
    yield "security", _get(c, "/security")
    yield "phone", _get(c, "/mfa/phone")
    yield "phone-bad-number", _post(c, "/mfa/phone", "/mfa/phone", {"kind": "mobile", "number": "12", "action": "send"})
    yield (
        "phone-code",
        _post(c, "/mfa/phone", "/mfa/phone", {"kind": "mobile", "number": "090-1234-5678", "action": "send"}),
    )
    r = c.post(
        "/mfa/phone",
        data={"csrf": csrf(c.get("/mfa/phone").text), "kind": "mobile", "number": "090-1234-5678", "action": "send"},
    )
    method = re.search(r'name="method" value="([0-9a-f]+)"', r.text)
    assert method
    sms = [m for m in read_outbox(ctx.config.path(ctx.config.sender.outbox)) if m["channel"] == "sms"][-1]
    code = re.search(r"\b(\d{6})\b", sms["text"])
    assert code
    fields = {"kind": "mobile", "number": "090-1234-5678", "method": method.group(1), "action": "confirm"}
    yield "phone-wrong-code", _post(c, "/mfa/phone", "/security", {**fields, "code": "000000"})
    c.post("/mfa/phone", data={"csrf": csrf(r.text), **fields, "code": code.group(1)})
    sec = c.get("/security").text
    phone = re.search(r'data-kind="phone">.*?name="method" value="([0-9a-f]+)"', sec, re.S)
    assert phone
    yield "security-with-phone", _get(c, "/security")
    yield "confirm-delete", _post(c, "/security", "/security", {"action": "delete", "method": phone.group(1)})
    yield "confirm-codes", _post(c, "/security", "/security", {"action": "codes"})
    yield "codes", _post(c, "/security", "/security", {"action": "codes", "confirmed": "1"})
    yield "codes-already-shown", _get(c, "/recovery-codes")
    clock.advance(timedelta(minutes=11))
    yield "stepup", _post(c, "/security", "/security", {"action": "codes"})
    page = c.get("/stepup?next=/security").text
    c.post("/stepup?next=/security", data={"csrf": csrf(page), "code": totp_now(ctx, secret, clock)})
    c.post("/signout", data={"csrf": csrf(c.get("/").text)})
    page = sign_in(c)
    yield "code", _get(c, "/signin/code")
    yield "other-ways", _get(c, "/signin/code/other")
    other = "/signin/code/other"
    yield "other-way-sms", _post(c, other, other, {"way": f"sms:{phone.group(1)}"})
    yield "other-way-call", _post(c, other, other, {"way": f"voice:{phone.group(1)}"})
    yield "other-way-recovery", _post(c, other, other, {"way": "recovery"})
    yield "other-way-refused", _post(c, other, other, {"way": "sms:0000"})
    clock.advance(timedelta(seconds=30))
    c.post("/signin/code", data={"csrf": csrf(page), "code": totp_now(ctx, secret, clock), "trust": "1"})
    yield "devices", _get(c, "/devices")
    yield "password", _get(c, "/password")
    yield "email", _get(c, "/email")
    yield "email-confirm", _get(c, "/email/confirm?token=not-a-real-token")
    yield "sso-done", _get(c, "/sso/done")
    dev = re.search(r'name="device" value="([0-9a-f]+)"', c.get("/devices").text)
    assert dev
    yield "confirm-revoke", _post(c, "/devices", "/devices", {"device": dev.group(1)})
    clock.advance(timedelta(minutes=15))
    c.get("/")
    clock.advance(timedelta(minutes=15))
    with ctx.tx() as s:
        sessions.open_session(
            ctx, s, ctx.user(s, USER), profile=None, pool="172.31.0.0/16", source="192.0.2.7", client="AnyConnect"
        )
    yield "vpn-allowed", _get(c, "/vpn")

    # The administrator.
    add_user(ctx, ADMIN)
    mfa.apply(ctx, ADMIN, actor="test")
    a = client(ctx)
    sign_in(a, ADMIN)
    register_totp(a, ctx, clock)
    yield "admin", _get(a, "/admin")
    yield "admin-results", _get(a, f"/admin?q={USER}")
    yield "admin-user", _get(a, f"/admin/users/{USER}")
    yield "admin-no-reason", _post(a, f"/admin/users/{USER}", f"/admin/users/{USER}", {"action": "reset_mfa"})
    yield (
        "admin-confirm",
        _post(a, f"/admin/users/{USER}", f"/admin/users/{USER}", {"action": "suspended", "reason": "test"}),
    )
    live = re.search(r'name="session" value="([0-9a-f]+)"', a.get(f"/admin/users/{USER}").text)
    assert live
    yield (
        "admin-confirm-kill",
        _post(
            a,
            f"/admin/users/{USER}",
            f"/admin/users/{USER}",
            {"action": "kill", "session": live.group(1), "reason": "test"},
        ),
    )
    yield (
        "admin-pass",
        _post(a, f"/admin/users/{USER}", f"/admin/users/{USER}", {"action": "pass", "reason": "ID checked"}),
    )
    yield "admin-audit", _get(a, "/admin/audit")
    yield "admin-audit-filtered", _get(a, f"/admin/audit?user={USER}&event=mfa.&from=2026-10-01&to=2026-10-02")
    yield "admin-import", _get(a, "/admin/import")

    def upload(lang: str) -> str:
        page = a.get(f"/admin/import?lang={lang}").text
        csv = "username,name,role,email,from,until\n1234567891,A,staff,a@example.ac.jp,2026-04-01,\nbad,,x,,,\n"
        files = {"file": ("roster.csv", csv.encode(), "text/csv")}
        return a.post(f"/admin/import?lang={lang}", data={"csrf": csrf(page), "kind": "roster"}, files=files).text

    yield "admin-import-report", upload
    yield "admin-tokens", _get(a, "/admin/tokens")
    yield "admin-token-new", _post(a, "/admin/tokens", "/admin/tokens", {"action": "create", "label": "nightly sync"})
    yield "admin-lifecycle", _get(a, "/admin/lifecycle")


def _showing(marker: str, fetch: Callable[[str], str]) -> Callable[[str], str]:
    """`fetch`, checked to reach its page (a refusal page would pass the language checks too)."""

    def go(lang: str) -> str:
        page = fetch(lang)
        assert marker in page, page[:2000]
        return page

    return go


def every_identity_page(ctx: Context, clock: FixedClock, oidc: OidcProvider) -> Iterator[Visit]:
    """The pages shown only with an identity provider: the hand-over to the provider (idp_go), the
    identity-verified self-reset ([verification], through the real node oidc-provider: link, forgot,
    reset) and the SAML answer posted again with our cookie (saml_post, [saml] with a metadata file).
    `ctx` has [verification] on `oidc` and [saml] enabled."""
    secret, _ = enrol_totp(ctx, clock, USER)
    c = client(ctx)
    page = sign_in(c)
    c.post("/signin/code", data={"csrf": csrf(page), "code": totp_now(ctx, secret, clock)})
    clock.advance(timedelta(seconds=30))
    yield "identity", _showing('id="identity-not-linked"', _get(c, "/identity"))
    yield "idp-go", _showing('id="to-idp"', _post(c, "/identity", "/identity", {"action": "link"}))

    def via_provider(form_page: str, data: dict[str, str]) -> None:
        start = c.post(form_page, data={"csrf": csrf(c.get(form_page).text), **data})
        go = re.search(r'<a href="([^"]+)" id="to-idp">', start.text)
        assert go, start.text[:300]
        back = urlsplit(through_provider(html.unescape(go.group(1)), oidc, "hanako"))
        c.get(f"{back.path}?{back.query}")

    via_provider("/identity", {"action": "link"})
    yield "identity-linked", _showing('id="identity-linked"', _get(c, "/identity"))
    c.post("/signout", data={"csrf": csrf(c.get("/").text)})
    yield "forgot", _showing('id="verify-start"', _get(c, "/forgot"))
    via_provider("/forgot", {})
    yield "reset", _showing('action="/reset"', _get(c, "/reset"))
    mismatch = {"new": "a long new phrase one", "again": "another phrase"}
    yield "reset-mismatch", _showing('class="error"', _post(c, "/reset", "/reset", mismatch))
    yield "reset-nothing", _showing('class="error"', _post(c, "/reset", "/reset", {}))

    def saml_repost(lang: str) -> str:
        # An answer posted from the provider's site arrives without our SameSite=Lax cookie.
        fresh_browser = client(ctx)
        return fresh_browser.post(f"/saml/acs?lang={lang}", data={"SAMLResponse": "PHNhbWw+", "RelayState": "x"}).text

    yield "saml-post", _showing('id="saml-post"', saml_repost)
