"""'Sign in with <university>' against a real OpenID Connect provider (npm oidc-provider run by
node): the code flow with PKCE through the provider's own sign-in pages, then campusvpn's code;
ID tokens with a wrong audience, expired, a bad signature or another sign-in's nonce are refused
and change nothing; a rotated signing key is fetched again; the provider's MFA is trusted only
when configured and shown by amr."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import func, select
from starlette.testclient import TestClient
from tests.conftest import add_user, make_config
from tests.helpers import enrol_totp, totp_now
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, running_provider, signing_key

from campusvpn.platform.clock import FixedClock
from campusvpn.portal.app import create_app
from campusvpn.service import oidc
from campusvpn.service.context import Context, open_context
from campusvpn.service.oidc_client import OidcClient, OidcRefused
from campusvpn.service.signin_ports import start_signin
from campusvpn.signin import Federated, Finished, Prompt, Purpose, Step
from campusvpn.store.models import AuditEvent, User, WebSession

PORTAL = "https://testserver"
CALLBACK = PORTAL + "/signin/oidc/callback"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with running_provider(tmp_path_factory.mktemp("oidc"), CALLBACK) as provider:
        yield provider


def oidc_config(idp: OidcProvider, extra: str = "", identity: str = "") -> str:
    return f"""
[portal]
default_language = "en"
[identity]
{identity}
[oidc]
enabled = true
label = "Example University"
issuer = "{idp.issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
ca_file = "{idp.ca_file}"
role_claim = "affiliation"
{extra}
"""


def open_with(tmp_path: Path, clock: FixedClock, text: str) -> Context:
    return open_context(make_config(tmp_path, text), clock)


def through_provider(auth_url: str, idp: OidcProvider, login: str) -> str:
    """The provider's own sign-in and consent pages, as a browser would submit them; returns the
    URL it finally sends the browser back to (the portal's callback)."""
    with httpx.Client(verify=str(idp.ca_file), timeout=10) as browser:
        url, method, data = auth_url, "GET", None
        for _ in range(12):
            r = browser.request(method, url, data=data)
            if r.is_redirect:
                url, method, data = urljoin(url, r.headers["location"]), "GET", None
                if url.startswith(PORTAL):
                    return url
                continue
            assert r.status_code == 200, r.text[:500]
            form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
            assert form, r.text[:500]
            fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', r.text))
            if 'name="login"' in r.text:
                fields.update(login=login, password="anything")  # the dev pages take any
            url, method, data = urljoin(url, form.group(1)), "POST", fields
    raise AssertionError("the provider did not send the browser back")


def portal_signin_via_idp(ctx: Context, idp: OidcProvider, login: str) -> tuple[TestClient, httpx.Response]:
    c = TestClient(create_app(ctx), base_url=PORTAL, follow_redirects=False)
    page = c.get("/signin")
    assert "Sign in with Example University" in page.text
    token = re.search(r'action="/signin/oidc">\s*<input type="hidden" name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    start = c.post("/signin/oidc", data={"csrf": token.group(1)})
    # A page that goes on to the provider by itself (a redirect would break the page's CSP form-action).
    go = re.search(r'<a href="([^"]+)" id="to-idp">', start.text)
    assert start.status_code == 200 and go, start.text[:300]
    auth = html.unescape(go.group(1))
    assert f'http-equiv="refresh" content="0;url={go.group(1)}"' in start.text
    assert auth.startswith(idp.issuer) and "code_challenge_method=S256" in auth and "nonce=" in auth
    back = through_provider(auth, idp, login)
    parsed = urlparse(back)
    return c, c.get(f"{parsed.path}?{parsed.query}")


def test_sign_in_with_the_provider_then_campusvpns_code(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, oidc_config(idp))
    add_user(ctx, "1234567890")
    secret, _ = enrol_totp(ctx, clock, "1234567890")
    c, r = portal_signin_via_idp(ctx, idp, "hanako")
    assert r.status_code == 303 and r.headers["location"] == "/signin/code", r.text[:300]
    page = c.get("/signin/code").text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    done = c.post("/signin/code", data={"csrf": token.group(1), "code": totp_now(secret, clock)})
    assert done.status_code == 303 and done.headers["location"] == "/"
    home = c.get("/")
    assert home.status_code == 200 and "1234567890" in home.text
    [event] = audits(ctx, "signin.oidc")
    assert event.subject == "1234567890"
    # The callback is single-use: the same answer again finds no sign-in in progress.
    again = c.get("/signin/oidc/callback?code=x&state=y")
    assert again.status_code == 400


def test_an_account_is_made_from_the_claims_when_allowed(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(
        tmp_path, clock, oidc_config(idp, identity='create_accounts = true\nrole_map = { student = "student" }')
    )
    _c, r = portal_signin_via_idp(ctx, idp, "taro")
    # A new account has not applied for MFA yet: signed in to the portal to apply, as a local one is.
    assert r.status_code == 303 and r.headers["location"] == "/"
    with ctx.tx() as s:
        user = s.scalars(select(User).where(User.username == "2234567890")).one()
        assert [a.role for a in user.affiliations] == ["student"] and user.display_name == "Taro Suzuki"


def test_a_user_name_claim_that_is_not_a_name_here_is_refused(
    idp: OidcProvider, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, oidc_config(idp, identity='create_accounts = true\ndefault_role = "visiting"'))
    _c, r = portal_signin_via_idp(ctx, idp, "outsider")
    assert r.status_code == 401 and "did not succeed" in r.text
    assert counts(ctx) == (0, 0)


# --- ID tokens the provider's keys signed (or not), checked by the relying party -------------------


def id_token(key: RSAKey, idp: OidcProvider, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": idp.issuer,
        "aud": CLIENT_ID,
        "sub": "hanako",
        "iat": now,
        "exp": now + 300,
        "nonce": "the-nonce",
        "preferred_username": "1234567890",
    }
    body.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


def audits(ctx: Context, event: str) -> list[AuditEvent]:
    with ctx.tx() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.event == event)))
        s.expunge_all()
        return rows


def counts(ctx: Context) -> tuple[int, int]:
    with ctx.tx() as s:
        users = s.scalar(select(func.count()).select_from(User)) or 0
        signed = s.scalar(select(func.count()).select_from(WebSession).where(WebSession.username.is_not(None)))
        return int(users), int(signed or 0)


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("wrong audience", {"aud": "another-client"}),
        ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}),
        ("another sign-in's nonce", {"nonce": "someone-elses-nonce"}),
        ("another issuer", {"iss": "https://idp.example.org"}),
    ],
)
def test_bad_id_tokens_are_refused_and_change_nothing(
    idp: OidcProvider, tmp_path: Path, clock: FixedClock, why: str, change: dict[str, Any]
) -> None:
    ctx = open_with(tmp_path, clock, oidc_config(idp, identity='create_accounts = true\ndefault_role = "staff"'))
    client = ctx.oidc
    assert client is not None
    assert client.validate(id_token(idp.keys[0], idp), "the-nonce")["sub"] == "hanako"  # the same, unchanged
    with pytest.raises(OidcRefused):
        client.validate(id_token(idp.keys[0], idp, **change), "the-nonce")
    assert counts(ctx) == (0, 0) and audits(ctx, "signin.oidc") == []


def test_a_bad_signature_is_refused_even_with_the_providers_key_id(
    idp: OidcProvider, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, oidc_config(idp))
    assert ctx.oidc is not None
    forged = id_token(signing_key(idp.keys[0].kid or ""), idp)  # same kid, another private key
    with pytest.raises(OidcRefused, match="signature"):
        ctx.oidc.validate(forged, "the-nonce")
    header, _body, sig = id_token(idp.keys[0], idp).split(".")
    _h2, other_body, _s2 = id_token(idp.keys[0], idp, preferred_username="9999999999").split(".")
    with pytest.raises(OidcRefused, match="signature"):
        ctx.oidc.validate(f"{header}.{other_body}.{sig}", "the-nonce")  # a claim changed after signing


def test_a_rotated_signing_key_is_fetched_again(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, oidc_config(idp))
    client = ctx.oidc
    assert client is not None
    old = idp.keys[0]
    client.validate(id_token(old, idp), "the-nonce")  # the keys are now cached
    new = signing_key("key-2")
    idp.stop()
    idp.keys = [new]
    idp.start()
    try:
        assert client.validate(id_token(new, idp), "the-nonce")["sub"] == "hanako"
        with pytest.raises(OidcRefused):
            client.validate(id_token(old, idp), "the-nonce")  # the retired key no longer signs
    finally:
        idp.stop()
        idp.keys = [old]
        idp.start()


def federated(ctx: Context, client: OidcClient, claims: dict[str, Any]) -> Prompt | Finished:
    verified = oidc.accept(ctx, client, claims, source="192.0.2.9")
    engine = start_signin(ctx, Purpose.PORTAL, "192.0.2.9")
    return engine.handle(Federated(verified.username, verified.idp_mfa))


def test_the_providers_mfa_counts_only_when_trusted_and_shown(
    idp: OidcProvider, tmp_path: Path, clock: FixedClock
) -> None:
    claims_mfa = {"preferred_username": "1234567890", "sub": "hanako", "amr": ["pwd", "otp"]}
    claims_pwd = {"preferred_username": "1234567890", "sub": "hanako", "amr": ["pwd"]}
    (tmp_path / "a").mkdir()
    plain = open_with(tmp_path / "a", clock, oidc_config(idp))
    assert plain.oidc is not None
    add_user(plain, "1234567890")
    enrol_totp(plain, clock, "1234567890")
    out = federated(plain, plain.oidc, claims_mfa)  # not trusted: campusvpn's code is asked
    assert isinstance(out, Prompt) and out.step is Step.SECOND_FACTOR

    (tmp_path / "b").mkdir()
    trusting = open_with(tmp_path / "b", clock, oidc_config(idp, "trust_idp_mfa = true"))
    assert trusting.oidc is not None
    add_user(trusting, "1234567890")
    enrol_totp(trusting, clock, "1234567890")
    out = federated(trusting, trusting.oidc, claims_pwd)  # trusted, but this sign-in had no MFA
    assert isinstance(out, Prompt) and out.step is Step.SECOND_FACTOR
    out = federated(trusting, trusting.oidc, claims_mfa)
    assert isinstance(out, Finished) and out.ok and out.factors == 2 and out.used_method == "idp_mfa"
    said = audits(trusting, "signin.oidc")
    assert "skipped" in str(said[-1].detail) and "amr=otp" in str(said[-1].detail)
