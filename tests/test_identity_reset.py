"""The identity-verified self-reset against a real OpenID Connect provider (npm oidc-provider run
by node) through the portal's pages: a member links their verified identity after a step-up, then,
having lost password or phone, verifies there and sets a new password and/or registers MFA again.
An unlinked identity, another account's identity, a suspended account and ID tokens that are not
for this sign-in are refused and change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from joserfc import jwt
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.conftest import PASSWORD, add_user, make_config
from tests.helpers import enrol_totp, totp_now
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, running_provider
from tests.test_oidc_signin import through_provider

from campusvpn.core.policy import AccountStatus
from campusvpn.platform import link_key
from campusvpn.platform.clock import FixedClock
from campusvpn.portal.app import create_app
from campusvpn.service import accounts
from campusvpn.service.context import Context, open_context
from campusvpn.service.oidc_client import OidcRefused
from campusvpn.store.models import AuditEvent, IdentityLink, User

PORTAL = "https://testserver"
CALLBACK = PORTAL + "/identity/callback"
HANAKO, TARO = "1234567890", "2234567890"
NEW_PASSWORD = "a long new phrase for the vpn"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with running_provider(tmp_path_factory.mktemp("verify"), CALLBACK) as provider:
        yield provider


def open_with(tmp_path: Path, clock: FixedClock, idp: OidcProvider, extra: str = "") -> Context:
    text = f"""
[portal]
default_language = "en"
[verification]
enabled = true
label = "My Number Card"
issuer = "{idp.issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
ca_file = "{idp.ca_file}"
{extra}
"""
    return open_context(make_config(tmp_path, text), clock)


def csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


def browser(ctx: Context) -> TestClient:
    return TestClient(create_app(ctx), base_url=PORTAL, follow_redirects=False)


def signed_in_with_code(ctx: Context, clock: FixedClock, name: str, secret: str) -> TestClient:
    c = browser(ctx)
    r = c.post("/signin", data={"csrf": csrf(c.get("/signin").text), "username": name, "password": PASSWORD})
    assert r.headers["location"] == "/signin/code", r.text[:300]
    page = c.get("/signin/code").text
    done = c.post("/signin/code", data={"csrf": csrf(page), "code": totp_now(secret, clock)})
    assert done.headers["location"] == "/", done.text[:300]
    clock.advance(timedelta(seconds=30))  # the next code is another one
    return c


def via_provider(
    c: TestClient, idp: OidcProvider, form_page: str, post_to: str, login: str, **data: str
) -> httpx.Response:
    """Submit the form that starts verification, go through the provider's pages, come back."""
    start = c.post(post_to, data={"csrf": csrf(c.get(form_page).text), **data})
    go = re.search(r'<a href="([^"]+)" id="to-idp">', start.text)
    assert start.status_code == 200 and go, (start.status_code, start.text[:300])
    back = urlparse(through_provider(html.unescape(go.group(1)), idp, login))
    assert back.path == "/identity/callback"
    return c.get(f"{back.path}?{back.query}")


def link(ctx: Context, clock: FixedClock, idp: OidcProvider, name: str, login: str) -> httpx.Response:
    secret, _ = enrol_totp(ctx, clock, name)
    c = signed_in_with_code(ctx, clock, name, secret)
    return via_provider(c, idp, "/identity", "/identity", login, action="link")


def state(ctx: Context, name: str) -> tuple[str | None, int, list[tuple[str, str]]]:
    """What a refusal must leave alone: the password hash, the methods, the links (account, identity hash)."""
    with ctx.tx() as s:
        user = s.scalars(select(User).where(User.username == name)).one()
        rows = s.execute(
            select(User.username, IdentityLink.identity_digest).join(User, IdentityLink.user_id == User.id)
        )
        links = [(who, digest) for who, digest in rows]
        return user.password_hash, len(user.methods), links


def keyed(site: Path, issuer: str, subject: str) -> str:
    """HMAC-SHA256 of issuer and subject with the site's identity-link key, computed here apart from the service."""
    key = base64.b64decode((site / "identity-link.key").read_text().splitlines()[-1])
    return hmac.new(key, f"{issuer}\n{subject}".encode(), hashlib.sha256).hexdigest()


def everything_stored(ctx: Context) -> str:
    """Every value of the links and the audit trail, as text."""
    with ctx.tx() as s:
        rows = [*s.execute(select(IdentityLink.__table__)), *s.execute(select(AuditEvent.__table__))]
        return " ".join(str(v) for row in rows for v in row)


def audits(ctx: Context, event: str) -> list[AuditEvent]:
    with ctx.tx() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.event == event)))
        s.expunge_all()
        return rows


def reset_page(ctx: Context, idp: OidcProvider, login: str) -> tuple[TestClient, httpx.Response]:
    c = browser(ctx)
    assert 'href="/forgot"' in c.get("/signin").text
    return c, via_provider(c, idp, "/forgot", "/forgot", login)


def test_link_needs_a_fresh_second_factor_then_links(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, idp)
    add_user(ctx, HANAKO)
    secret, _ = enrol_totp(ctx, clock, HANAKO)
    c = signed_in_with_code(ctx, clock, HANAKO, secret)
    assert "/identity" in c.get("/security").text
    clock.advance(timedelta(minutes=30))  # the sign-in's code is no longer fresh
    c.get("/")
    r = c.post("/identity", data={"csrf": csrf(c.get("/identity").text), "action": "link"})
    assert r.status_code == 303 and r.headers["location"] == "/stepup?next=/identity"
    assert state(ctx, HANAKO)[2] == []
    page = c.get("/stepup?next=/identity").text
    c.post("/stepup?next=/identity", data={"csrf": csrf(page), "code": totp_now(secret, clock)})
    back = via_provider(c, idp, "/identity", "/identity", "hanako", action="link")
    assert back.status_code == 303 and back.headers["location"] == "/identity", back.text[:300]
    assert "is linked since" in c.get("/identity").text
    assert state(ctx, HANAKO)[2] == [(HANAKO, keyed(tmp_path, idp.issuer, "hanako"))]
    [event] = audits(ctx, "identity.linked")
    assert event.subject == HANAKO
    assert "hanako" not in everything_stored(ctx)  # neither the table nor the audit trail names the identity
    assert (tmp_path / "identity-link.key").stat().st_mode & 0o777 == 0o600  # made at first use
    # Unlinking needs the step-up too, and is allowed.
    r = c.post("/identity", data={"csrf": csrf(c.get("/identity").text), "action": "unlink"})
    assert r.headers["location"] == "/identity" and state(ctx, HANAKO)[2] == []


def test_reset_password_with_the_verified_identity_then_sign_in(
    idp: OidcProvider, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, idp)
    add_user(ctx, HANAKO)
    assert link(ctx, clock, idp, HANAKO, "hanako").headers["location"] == "/identity"
    c, r = reset_page(ctx, idp, "hanako")
    assert r.status_code == 303 and r.headers["location"] == "/reset", r.text[:300]
    page = c.get("/reset").text
    assert HANAKO in page
    weak = c.post("/reset", data={"csrf": csrf(page), "new": "short", "again": "short"})
    assert weak.status_code == 400 and "at least" in weak.text
    done = c.post("/reset", data={"csrf": csrf(page), "new": NEW_PASSWORD, "again": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/signin?out=reset"
    assert "Sign in now" in c.get("/signin?out=reset").text
    assert c.get("/reset").status_code == 403  # used once
    [event] = audits(ctx, "password.reset")
    assert event.actor == HANAKO and event.note == "self-reset with verified identity"
    n = browser(ctx)
    old = n.post("/signin", data={"csrf": csrf(n.get("/signin").text), "username": HANAKO, "password": PASSWORD})
    assert old.status_code == 401
    ok = n.post("/signin", data={"csrf": csrf(n.get("/signin").text), "username": HANAKO, "password": NEW_PASSWORD})
    assert ok.status_code == 303 and ok.headers["location"] == "/signin/code"  # MFA kept


def test_reset_mfa_then_the_next_sign_in_registers(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, idp)
    add_user(ctx, HANAKO)
    link(ctx, clock, idp, HANAKO, "hanako")
    c, r = reset_page(ctx, idp, "hanako")
    page = c.get("/reset").text
    nothing = c.post("/reset", data={"csrf": csrf(page)})
    assert nothing.status_code == 400 and state(ctx, HANAKO)[1] == 1
    done = c.post("/reset", data={"csrf": csrf(page), "mfa": "1"})
    assert done.headers["location"] == "/signin?out=reset"
    assert state(ctx, HANAKO)[1] == 0
    [event] = audits(ctx, "mfa.reset")
    assert event.actor == HANAKO and event.note == "self-reset with verified identity"
    n = browser(ctx)
    r = n.post("/signin", data={"csrf": csrf(n.get("/signin").text), "username": HANAKO, "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/register"


def test_an_unlinked_identity_changes_nothing(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, idp)
    add_user(ctx, HANAKO)
    link(ctx, clock, idp, HANAKO, "hanako")
    before = state(ctx, HANAKO)
    c, r = reset_page(ctx, idp, "taro")
    assert r.status_code == 403 and "not linked to any account" in r.text
    assert c.get("/reset").status_code == 403
    assert state(ctx, HANAKO) == before
    assert [e.outcome for e in audits(ctx, "identity.reset_refused")] == ["refused"]


def test_another_accounts_identity_is_not_linked(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, idp)
    add_user(ctx, HANAKO)
    add_user(ctx, TARO, "student")
    link(ctx, clock, idp, HANAKO, "hanako")
    r = link(ctx, clock, idp, TARO, "hanako")
    assert r.status_code == 409 and "already linked to another account" in r.text
    assert state(ctx, TARO)[2] == [(HANAKO, keyed(tmp_path, idp.issuer, "hanako"))]  # still Hanako's only
    assert len(audits(ctx, "identity.link_refused")) == 1


def test_a_suspended_account_is_not_reset(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, idp)
    add_user(ctx, HANAKO)
    link(ctx, clock, idp, HANAKO, "hanako")
    accounts.set_status(ctx, HANAKO, AccountStatus.SUSPENDED, actor="admin", reason="test")
    before = state(ctx, HANAKO)
    c, r = reset_page(ctx, idp, "hanako")
    assert r.status_code == 403 and "suspended or closed" in r.text
    assert c.get("/reset").status_code == 403
    assert state(ctx, HANAKO) == before
    # In Japanese too.
    j = browser(ctx)
    start = j.get("/forgot?lang=ja")
    assert "スマートフォン" in start.text


def test_a_required_verified_level_missing_is_refused(idp: OidcProvider, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, idp, 'required_acr = "urn:example:verified-identity"')
    add_user(ctx, HANAKO)
    before = state(ctx, HANAKO)
    _c, r = reset_page(ctx, idp, "hanako")
    assert r.status_code == 401 and "did not succeed" in r.text
    assert state(ctx, HANAKO) == before


def id_token(idp: OidcProvider, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": idp.issuer, "aud": CLIENT_ID, "sub": "hanako", "iat": now, "exp": now + 300, "nonce": "n-1"}
    body.update(claims)
    key = idp.keys[0]
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


@pytest.mark.parametrize("change", [{"aud": "another-client"}, {"nonce": "another-start"}])
def test_tokens_for_another_client_or_start_are_refused(
    idp: OidcProvider, tmp_path: Path, clock: FixedClock, change: dict[str, Any]
) -> None:
    ctx = open_with(tmp_path, clock, idp)
    assert ctx.verification is not None
    assert ctx.verification.validate(id_token(idp), "n-1")["sub"] == "hanako"
    with pytest.raises(OidcRefused):
        ctx.verification.validate(id_token(idp, **change), "n-1")
    # Through the portal: an answer with another start's state finds nothing and changes nothing.
    add_user(ctx, HANAKO)
    before = state(ctx, HANAKO)
    c = browser(ctx)
    c.post("/forgot", data={"csrf": csrf(c.get("/forgot").text)})
    assert c.get("/identity/callback?code=x&state=not-this-one").status_code == 400
    assert c.get("/reset").status_code == 403
    assert state(ctx, HANAKO) == before


def test_the_link_key_is_its_own_stable_file(tmp_path: Path) -> None:
    path = tmp_path / "identity-link.key"
    key = link_key.load(path)  # created at first use
    assert path.stat().st_mode & 0o777 == 0o600 and link_key.load(path) == key
    link_key.generate(path)  # a second creator (another worker) keeps the first key
    assert link_key.load(path) == key
    one = link_key.digest(key, "https://idp", "hanako")
    assert len(one) == 64 and one != link_key.digest(key, "https://idp", "taro")
    assert one != link_key.digest(key, "https://other-idp", "hanako")
    assert one != link_key.digest(bytes(32), "https://idp", "hanako")  # keyed: not a plain hash
    path.write_text("# broken\nnot base64!\n")
    with pytest.raises(link_key.LinkKeyError, match="expected one line with the base64 of a 32-byte key"):
        link_key.load(path)
