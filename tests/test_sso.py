"""VPN sign-in through the browser: the AnyConnect single sign-on dialogue and its one-time tokens
(service.sso in a real SQLite database), and the external-browser seal."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pyotp
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from defusedxml import ElementTree as SafeET
from starlette.testclient import TestClient
from tests.conftest import PASSWORD, add_user, make_config
from tests.helpers import enrol_totp

from campusvpn.anyconnect import xmlauth
from campusvpn.anyconnect.login import SSO, SSO_EXTERNAL, GatewayLogin
from campusvpn.core import sso_handoff
from campusvpn.platform.clock import FixedClock
from campusvpn.portal.app import create_app
from campusvpn.service import sessions, sso
from campusvpn.service.context import Context, open_context
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.texts.render import render

BROWSER = '\n[vpn]\nlogin = "browser"\n'
SOURCE = "192.0.2.7"
OK = {"ok": True, "message": "Welcome. You are connected."}


def key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


SECRETS: dict[int, str] = {}


def browser_ctx(tmp_path: Path, clock: FixedClock) -> Context:
    ctx = open_context(make_config(tmp_path, BROWSER), clock)
    add_user(ctx)
    SECRETS[id(ctx)], _ = enrol_totp(ctx, clock)
    return ctx


def authenticator_secret(ctx: Context) -> str:
    return SECRETS[id(ctx)]


def login(ctx: Context, key: str | None = None, source: str = SOURCE, handle: str | None = None) -> GatewayLogin:
    lg = GatewayLogin(
        ctx, source=source, user_agent="Open AnyConnect VPN Agent v9.01-3", cert_sha1="AB", client_key=key
    )
    if handle:
        lg.handle = handle
    return lg


def init(*caps: str) -> xmlauth.AuthRequest:
    return xmlauth.AuthRequest(kind="init", capabilities=caps)


def token_reply(handle: str, token: str) -> xmlauth.AuthRequest:
    return xmlauth.AuthRequest(kind="auth-reply", handle=handle, fields={"sso-token": token})


def error(body: bytes) -> str:
    e = SafeET.fromstring(body).find("auth/error")
    return str(e.get("param1")) if e is not None else ""


def test_the_client_is_sent_to_the_portal_and_its_token_works_once(tmp_path: Path, clock: FixedClock) -> None:
    ctx = browser_ctx(tmp_path, clock)
    _, key = key_pair()
    lg = login(ctx, key)
    first = SafeET.fromstring(lg.handle_request(init(SSO, SSO_EXTERNAL)).body)
    assert first.find("auth/sso-v2-login").text == f"https://vpn.example.ac.jp/sso/start?h={lg.handle}"
    assert first.find("auth/sso-v2-login-final").text == "https://vpn.example.ac.jp/sso/done"
    assert first.find("auth/sso-v2-token-cookie-name").text == "acSamlv2Token"
    assert first.find("auth/sso-v2-browser-mode").text == "external"
    assert [i.get("name") for i in first.findall("auth/form/input")] == ["sso-token"]
    token = sso.conclude(ctx, lg.handle, username="1234567890", outcome=OK)
    assert token is not None and token.isalnum()
    assert sso.conclude(ctx, lg.handle, username="1234567890", outcome=OK) is None  # concluded once

    # Another client's attempt cannot use this token.
    other = login(ctx, key)
    other.handle_request(init(SSO, SSO_EXTERNAL))
    foreign = other.handle_request(token_reply(other.handle, token))
    assert foreign.finished and foreign.token is None and "not valid" in error(foreign.body)

    done = login(ctx, handle=lg.handle).handle_request(token_reply(lg.handle, token))  # any process may redeem
    assert done.token and SafeET.fromstring(done.body).get("type") == "complete"
    assert [s["user"] for s in sessions.listing(ctx)] == ["1234567890"]
    reused = login(ctx, handle=lg.handle).handle_request(token_reply(lg.handle, token))
    assert reused.token is None and "not valid" in error(reused.body)


def test_expired_tokens_and_other_addresses_are_refused(tmp_path: Path, clock: FixedClock) -> None:
    ctx = browser_ctx(tmp_path, clock)
    lg = login(ctx)
    body = SafeET.fromstring(lg.handle_request(init(SSO)).body)
    assert body.find("auth/sso-v2-browser-mode") is None  # no external browser advertised: embedded
    token = sso.conclude(ctx, lg.handle, username="1234567890", outcome=OK)
    assert token is not None
    elsewhere = login(ctx, source="198.51.100.9", handle=lg.handle).handle_request(token_reply(lg.handle, token))
    assert elsewhere.token is None
    clock.advance(sso.TOKEN_LIFETIME + timedelta(seconds=1))
    late = login(ctx, handle=lg.handle).handle_request(token_reply(lg.handle, token))
    assert late.token is None and "not valid" in error(late.body)


def test_a_refusal_in_the_browser_reaches_the_client_as_its_error(tmp_path: Path, clock: FixedClock) -> None:
    ctx = browser_ctx(tmp_path, clock)
    lg = login(ctx)
    lg.handle_request(init(SSO))
    said = say(Code.POLICY_TRAINING_MISSING, fy=2026, deadline=date(2026, 6, 30), training_url="https://t.example/")
    refusal = {"ok": False, "code": "refused", "message": "(English, for logs)", "said": [said.to_json()]}
    token = sso.conclude(ctx, lg.handle, username="1234567890", outcome=refusal)
    assert token is not None
    out = lg.handle_request(token_reply(lg.handle, token))
    # The person never chose a language: both, the configured default (Japanese) first.
    assert out.finished and out.token is None
    assert error(out.body) == f"{render(said, 'ja')} / {render(said, 'en')}"
    assert "information-security training" in error(out.body) and "情報セキュリティ研修" in error(out.body)


def test_a_client_that_cannot_open_a_browser_is_told_so(tmp_path: Path, clock: FixedClock) -> None:
    ctx = browser_ctx(tmp_path, clock)
    out = login(ctx).handle_request(init())
    assert out.finished and "browser" in error(out.body)


def test_the_seal_opens_only_with_the_clients_key() -> None:
    private, header = key_pair()
    token = sso_handoff.new_token()
    sealed = sso_handoff.seal(header, token)
    assert sso_handoff.open_sealed(private, sealed) == token
    stranger, _ = key_pair()
    with pytest.raises(InvalidTag):
        sso_handoff.open_sealed(stranger, sealed)
    url = sso_handoff.listener_url(sealed, "https://vpn.example.ac.jp/sso/done")
    assert url.startswith("http://localhost:29786/api/sso/") and "?return=https%3A%2F%2Fvpn" in url


def test_a_form_encoded_post_reads_like_the_xml_reply() -> None:
    req = xmlauth.parse_form(b"username=1234567890&password=a+b%26c&group_list=staff")
    assert req.kind == "auth-reply" and req.fields["password"] == "a b&c" and req.group_select == "staff"


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def test_the_portal_sign_in_concludes_the_attempt_embedded(tmp_path: Path, clock: FixedClock) -> None:
    """Embedded browser (no client key): the token in the cookie the client watches, at the final URL."""
    ctx = browser_ctx(tmp_path, clock)
    secret = authenticator_secret(ctx)
    lg = login(ctx)
    lg.handle_request(init(SSO))
    c = TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=False)
    assert c.get(f"/sso/start?h={lg.handle}").headers["location"] == "/signin"
    page = c.get("/signin").text
    assert 'id="vpn-signin"' in page
    r = c.post("/signin", data={"csrf": _csrf(page), "username": "1234567890", "password": PASSWORD})
    assert r.headers["location"] == "/signin/code"
    page = c.get("/signin/code").text
    r = c.post("/signin/code", data={"csrf": _csrf(page), "code": pyotp.TOTP(secret).at(clock.now())})
    assert r.status_code == 303 and r.headers["location"] == "/sso/done", r.text[:300]
    token = r.cookies.get(sso.TOKEN_COOKIE)
    assert token
    assert "You are signed in" in c.get("/sso/done?lang=en").text
    done = lg.handle_request(token_reply(lg.handle, token))
    assert done.token
    # A concluded attempt's login URL, or one the gateway never gave, starts nothing.
    assert c.get(f"/sso/start?h={lg.handle}").status_code == 410
    assert c.get("/sso/start?h=made-up").status_code == 410
    fresh_browser = TestClient(create_app(ctx), base_url="https://testserver")
    assert 'data-outcome="unknown"' in fresh_browser.get("/sso/done").text  # no attempt of its own: no outcome


def test_the_portal_sign_in_sends_the_sealed_token_to_the_clients_listener(tmp_path: Path, clock: FixedClock) -> None:
    ctx = browser_ctx(tmp_path, clock)
    private, key = key_pair()
    lg = login(ctx, key)
    lg.handle_request(init(SSO, SSO_EXTERNAL))
    c = TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=False)
    c.get(f"/sso/start?h={lg.handle}")
    page = c.get("/signin").text
    c.post("/signin", data={"csrf": _csrf(page), "username": "1234567890", "password": PASSWORD})
    page = c.get("/signin/code").text
    r = c.post(
        "/signin/code", data={"csrf": _csrf(page), "code": pyotp.TOTP(authenticator_secret(ctx)).at(clock.now())}
    )
    where = r.headers["location"]
    assert where.startswith("http://localhost:29786/api/sso/"), where
    sealed = unquote(where.removeprefix("http://localhost:29786/api/sso/").split("?")[0])
    assert lg.handle_request(token_reply(lg.handle, sso_handoff.open_sealed(private, sealed))).token


def test_fortinet_clients_sign_in_through_the_browser(tmp_path: Path, clock: FixedClock) -> None:
    """openfortivpn --saml-login: /remote/saml/start, the portal's sign-in, the id to the client's
    listener, /remote/saml/auth_id gives the SVPNCOOKIE once."""
    from tests.test_fortinet_site import connect

    from campusvpn.app.serve import build
    from campusvpn.cli.setup import write_self_signed

    ctx = browser_ctx(tmp_path, clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    portal = TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=False)

    def browser(start: str) -> str:
        assert portal.get(start).headers["location"] == "/signin"
        page = portal.get("/signin").text
        portal.post("/signin", data={"csrf": _csrf(page), "username": "1234567890", "password": PASSWORD})
        page = portal.get("/signin/code").text
        code = pyotp.TOTP(authenticator_secret(ctx)).at(clock.now())
        r = portal.post("/signin/code", data={"csrf": _csrf(page), "code": code})
        return str(r.headers["location"])

    async def run() -> None:
        gw = build(ctx, tun_fd=None)
        await gw.start("127.0.0.1", 0)
        assert gw.front.server is not None
        port = gw.front.server.sockets[0].getsockname()[1]
        try:
            c = await connect(port)
            status, headers, _ = await c.request("GET", "/remote/saml/start?redirect=1")
            assert status == b"HTTP/1.1 302 Found"
            start = headers["location"][0]
            assert start.startswith("https://vpn.example.ac.jp/sso/start?h="), start
            listener = await asyncio.to_thread(browser, start.removeprefix("https://vpn.example.ac.jp"))
            assert listener.startswith("http://127.0.0.1:8020/?id="), listener
            token = listener.rpartition("=")[2]
            status, headers, _ = await c.request("GET", f"/remote/saml/auth_id?id={token}")
            assert status == b"HTTP/1.1 200 OK" and headers["set-cookie"][0].startswith("SVPNCOOKIE=")
            status, _, body = await c.request("GET", f"/remote/saml/auth_id?id={token}")
            assert status == b"HTTP/1.1 403 Forbidden" and b"not valid" in body
            c.writer.close()
        finally:
            await gw.stop()

    asyncio.run(run())
    [live] = sessions.listing(ctx)
    assert live["protocol"] == "fortinet" and live["user"] == "1234567890"


@pytest.mark.parametrize(
    ("said", "english", "japanese"),
    [
        (
            say(Code.ENGINE_THROTTLED_SECONDS, n=2),
            "Too many failed attempts. Wait 2 seconds and try again.",
            "2 秒待って",
        ),
        (
            say(Code.ENGINE_THROTTLED_MINUTES, n=8, until=datetime(2026, 10, 1, 0, 8, tzinfo=UTC)),
            "Too many failed attempts. Wait 8 minutes (until 2026-10-01 09:08 JST) and try again.",
            "（2026-10-01 09:08 JST）",
        ),
        (
            say(Code.ENGINE_LOCKED, until=datetime(2026, 10, 1, 0, 30, tzinfo=UTC), helpdesk="desk"),
            "Too many failed attempts: sign-in is locked until 2026-10-01 09:30 JST. If this was not you, contact desk.",
            "2026-10-01 09:30 JST までサインインがロック",
        ),
    ],
)
def test_too_many_attempts_is_said_in_japanese_with_its_time(said: Message, english: str, japanese: str) -> None:
    """A refusal on the browser page (and the portal's sign-in) in the person's language and zone."""
    from zoneinfo import ZoneInfo

    from campusvpn.portal.i18n import Translator

    assert japanese in Translator("ja", ZoneInfo("Asia/Tokyo")).said(said)
    assert Translator("en", ZoneInfo("Asia/Tokyo"), ("desk", "窓口")).said(said) == english
