"""'Sign in with <university>' over SAML 2.0 against a real identity provider (pysaml2's own IdP,
tests/saml_idp.py, with keys and metadata made here), through the portal's HTTP endpoints: the
signed assertion is accepted, then campusvpn's code; an unsigned, expired, foreign-audience,
answer-to-another-request or replayed assertion is refused and changes nothing; the provider's MFA
counts only when trusted and shown by the AuthnContext."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from tests.conftest import add_user, make_config
from tests.helpers import enrol_totp, totp_now
from tests.saml_idp import MFA_CONTEXT, SamlIdp, running_idp

from campusvpn.platform.clock import FixedClock
from campusvpn.portal.app import create_app
from campusvpn.service import saml
from campusvpn.service.context import Context, open_context
from campusvpn.service.saml_sp import SamlRefused
from campusvpn.store.models import AuditEvent, SeenAssertion, User, WebSession

PORTAL = "https://testserver"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[SamlIdp]:
    with running_idp(tmp_path / "idp") as provider:
        yield provider


def saml_config(idp: SamlIdp, extra: str = "", identity: str = "", from_file: bool = False) -> str:
    where = f'idp_metadata_file = "{idp.metadata_file}"' if from_file else f'idp_metadata_url = "{idp.base}/metadata"'
    return f"""
[service]
portal_url = "{PORTAL}/"
[portal]
default_language = "en"
[identity]
{identity}
[saml]
enabled = true
label = "Example University"
{where}
ca_file = "{idp.ca_file}"
username_attribute = "uid"
role_attribute = "eduPersonAffiliation"
{extra}
"""


def open_with(tmp_path: Path, clock: FixedClock, text: str) -> Context:
    return open_context(make_config(tmp_path, text), clock)


def browser(ctx: Context, idp: SamlIdp) -> TestClient:
    c = TestClient(create_app(ctx), base_url=PORTAL, follow_redirects=False)
    meta = c.get("/saml/metadata")
    assert meta.status_code == 200 and meta.headers["content-type"].startswith("application/samlmetadata+xml")
    assert f'entityID="{PORTAL}/saml/metadata"' in meta.text and f'Location="{PORTAL}/saml/acs"' in meta.text
    idp.trust(meta.text)
    return c


def to_idp(c: TestClient, idp: SamlIdp) -> dict[str, str]:
    """The portal's 'Sign in with' button, then the identity provider's page: the form it posts."""
    page = c.get("/signin")
    assert "Sign in with Example University" in page.text
    token = re.search(r'action="/signin/saml">\s*<input type="hidden" name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    start = c.post("/signin/saml", data={"csrf": token.group(1)})
    go = re.search(r'<a href="([^"]+)" id="to-idp">', start.text)
    assert start.status_code == 200 and go, start.text[:300]
    url = html.unescape(go.group(1))
    assert url.startswith(idp.base + "/sso?SAMLRequest=")
    with httpx.Client(verify=str(idp.ca_file), timeout=10) as b:
        at_idp = b.get(url)
    assert at_idp.status_code == 200
    action = re.search(r'<form method="post" action="([^"]+)"', at_idp.text)
    assert action and action.group(1) == PORTAL + "/saml/acs"
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', at_idp.text))
    return {"SAMLResponse": idp.answers[-1], "RelayState": fields.get("RelayState", "")}


def audits(ctx: Context, event: str) -> list[AuditEvent]:
    with ctx.tx() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.event == event)))
        s.expunge_all()
        return rows


def state(ctx: Context) -> tuple[int, int, int, int]:
    """Accounts, signed-in portal sessions, sign-in audit records, assertions remembered."""
    with ctx.tx() as s:
        users = s.scalar(select(func.count()).select_from(User)) or 0
        signed = s.scalar(select(func.count()).select_from(WebSession).where(WebSession.username.is_not(None))) or 0
        signins = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event.like("signin.%"))) or 0
        seen = s.scalar(select(func.count()).select_from(SeenAssertion)) or 0
        return int(users), int(signed), int(signins), int(seen)


def test_signed_assertion_then_campusvpns_code(idp: SamlIdp, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, saml_config(idp))
    add_user(ctx, "1234567890")
    secret, _ = enrol_totp(ctx, clock, "1234567890")
    c = browser(ctx, idp)
    r = c.post("/saml/acs", data=to_idp(c, idp))
    assert r.status_code == 303 and r.headers["location"] == "/signin/code", r.text[:300]
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/signin/code").text)
    assert token
    done = c.post("/signin/code", data={"csrf": token.group(1), "code": totp_now(secret, clock)})
    assert done.status_code == 303 and done.headers["location"] == "/"
    home = c.get("/")
    assert home.status_code == 200 and "1234567890" in home.text
    [event] = audits(ctx, "signin.saml")
    assert event.subject == "1234567890"
    assert event.detail["second_factor"] == "campusvpn's" and event.detail["issuer"] == idp.entity_id


def test_the_answer_posted_from_the_providers_site_is_posted_again_with_our_cookie(
    idp: SamlIdp, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, saml_config(idp, from_file=True))
    add_user(ctx, "1234567890")
    enrol_totp(ctx, clock, "1234567890")
    c = browser(ctx, idp)
    answer = to_idp(c, idp)
    # A cross-site POST: the browser holds back the SameSite=Lax session cookie.
    cross = TestClient(create_app(ctx), base_url=PORTAL, follow_redirects=False).post("/saml/acs", data=answer)
    assert cross.status_code == 200 and "set-cookie" not in cross.headers
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', cross.text))
    assert 'action="/saml/acs"' in cross.text and fields["reposted"] == "1"
    assert state(ctx)[1:] == (0, 0, 0)
    r = c.post("/saml/acs", data=fields)  # the page posts itself: same site, the cookie goes along
    assert r.status_code == 303 and r.headers["location"] == "/signin/code"


def test_an_account_is_made_from_the_attributes_when_allowed(idp: SamlIdp, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(
        tmp_path, clock, saml_config(idp, identity='create_accounts = true\nrole_map = { student = "student" }')
    )
    idp.login = "taro"
    c = browser(ctx, idp)
    r = c.post("/saml/acs", data=to_idp(c, idp))
    assert r.status_code == 303 and r.headers["location"] == "/"  # no MFA yet: the portal, to apply
    with ctx.tx() as s:
        user = s.scalars(select(User).where(User.username == "2234567890")).one()
        assert [a.role for a in user.affiliations] == ["student"] and user.display_name == "Taro Suzuki"


@pytest.mark.parametrize("mode", ["unsigned", "expired", "audience", "foreign"])
def test_bad_answers_are_refused_and_change_nothing(idp: SamlIdp, tmp_path: Path, clock: FixedClock, mode: str) -> None:
    ctx = open_with(tmp_path, clock, saml_config(idp, identity='create_accounts = true\ndefault_role = "staff"'))
    c = browser(ctx, idp)
    idp.mode = mode
    r = c.post("/saml/acs", data=to_idp(c, idp))
    assert r.status_code == 401 and "did not succeed" in r.text, r.text[:300]
    assert state(ctx) == (0, 0, 0, 0)
    # The same provider, behaving, signs the same person in (and makes the account): the refusal
    # above was the answer's fault.
    idp.mode = "ok"
    r = c.post("/saml/acs", data=to_idp(c, idp))
    assert r.status_code == 303 and state(ctx)[0] == 1


def test_a_replayed_answer_is_refused_and_changes_nothing(idp: SamlIdp, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, saml_config(idp))
    add_user(ctx, "1234567890")
    enrol_totp(ctx, clock, "1234567890")
    c = browser(ctx, idp)
    answer = to_idp(c, idp)
    assert c.post("/saml/acs", data=answer).status_code == 303
    before = state(ctx)
    assert before[2:] == (1, 1)
    # The same browser posting it again: no sign-in of its is waiting for an answer.
    assert c.post("/saml/acs", data=answer).status_code == 400
    # Another browser that started its own sign-in: the answer is not to its request.
    other = browser(ctx, idp)
    to_idp(other, idp)
    assert other.post("/saml/acs", data=answer).status_code == 401
    assert state(ctx) == before


def test_an_assertion_is_used_once_whichever_worker_process_sees_it(
    idp: SamlIdp, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, saml_config(idp))
    add_user(ctx, "1234567890")
    second_worker = open_with(tmp_path, clock, saml_config(idp))  # the same database, its own provider state
    browser(ctx, idp)
    sp, sp2 = ctx.saml, second_worker.saml
    assert sp is not None and sp2 is not None
    begun = sp.begin()
    with httpx.Client(verify=str(idp.ca_file), timeout=10) as b:
        assert b.get(begun.url).status_code == 200
    answer = idp.answers[-1]
    assert saml.accept(ctx, sp, sp.parse(answer, begun.request_id), source=None).username == "1234567890"
    before = state(ctx)
    with pytest.raises(SamlRefused, match="replayed"):
        saml.accept(second_worker, sp2, sp2.parse(answer, begun.request_id), source=None)
    assert state(ctx) == before


@pytest.mark.parametrize(
    ("trust", "context", "next_page"), [(True, MFA_CONTEXT, "/"), (False, MFA_CONTEXT, "/signin/code")]
)
def test_the_providers_mfa_counts_only_when_trusted(
    idp: SamlIdp, tmp_path: Path, clock: FixedClock, trust: bool, context: str, next_page: str
) -> None:
    ctx = open_with(tmp_path, clock, saml_config(idp, extra=f"trust_idp_mfa = {str(trust).lower()}"))
    add_user(ctx, "1234567890")
    enrol_totp(ctx, clock, "1234567890")
    idp.authn_context = context
    c = browser(ctx, idp)
    r = c.post("/saml/acs", data=to_idp(c, idp))
    assert r.status_code == 303 and r.headers["location"] == next_page
    [event] = audits(ctx, "signin.saml")
    expected = f"skipped: the provider's MFA is trusted (AuthnContext={MFA_CONTEXT})" if trust else "campusvpn's"
    assert event.detail["second_factor"] == expected


def test_a_password_only_authn_context_is_not_the_providers_mfa(
    idp: SamlIdp, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, saml_config(idp, extra="trust_idp_mfa = true"))
    add_user(ctx, "1234567890")
    enrol_totp(ctx, clock, "1234567890")
    c = browser(ctx, idp)  # the IdP's default: PasswordProtectedTransport
    r = c.post("/saml/acs", data=to_idp(c, idp))
    assert r.status_code == 303 and r.headers["location"] == "/signin/code"


def test_the_provider_not_answering_is_temporarily_unavailable(tmp_path: Path, clock: FixedClock) -> None:
    with running_idp(tmp_path / "idp") as gone:
        text = saml_config(gone)
    ctx = open_with(tmp_path, clock, text)
    c = TestClient(create_app(ctx), base_url=PORTAL, follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/signin").text)
    assert token
    r = c.post("/signin/saml", data={"csrf": token.group(1)})
    assert r.status_code == 503 and "temporarily unavailable" in r.text
    assert urlparse(r.headers.get("location", "")).path == ""
