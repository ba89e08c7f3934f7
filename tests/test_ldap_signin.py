"""The first factor checked by a real OpenLDAP directory (Debian slapd started by the test):
right and wrong passwords over StartTLS and LDAPS, search bind and direct bind, accounts made at
sign-in, and a directory that is down said as "temporarily unavailable" in both languages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from tests.conftest import PASSWORD, add_user, make_config
from tests.helpers import enrol_totp, sign_in, totp_now
from tests.slapd_server import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, USERS, Slapd, running_slapd
from tests.test_gateway_login import error, init, new_login, reply

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import ConfigError
from campusvpn.portal.app import create_app
from campusvpn.service import client_texts
from campusvpn.service.context import Context, open_context
from campusvpn.signin import Finished
from campusvpn.store.models import AuditEvent, ThrottleCounter, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say

HANAKO, TARO, JIRO = USERS


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("ldap")) as server:
        yield server


def ldap_config(slapd: Slapd, extra: str = "", *, direct: bool = False, ldaps: bool = False) -> str:
    url = slapd.tls_url if ldaps else slapd.url
    where = (
        f'user_dn_template = "uid={{username}},{PEOPLE}"'
        if direct
        else f'base_dn = "{PEOPLE}"\nservice_dn = "{SERVICE_DN}"\nservice_password = "{SERVICE_PASSWORD}"'
    )
    return f"""
[identity]
first_factor = "ldap"
{extra}
[ldap]
servers = ["{url}"]
starttls = {"false" if ldaps else "true"}
ca_file = "{slapd.ca_file}"
{where}
role_attribute = "employeeType"
timeout = "3s"
connect_timeout = "2s"
"""


def open_with(tmp_path: Path, clock: FixedClock, text: str) -> Context:
    return open_context(make_config(tmp_path, text), clock)


def audits(ctx: Context, event: str) -> list[AuditEvent]:
    with ctx.tx() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)))
        s.expunge_all()
        return rows


def failures(ctx: Context) -> int:
    with ctx.tx() as s:
        return int(s.scalar(select(func.coalesce(func.sum(ThrottleCounter.failures), 0))) or 0)


def test_directory_password_signs_in_over_starttls_and_the_local_one_no_longer_does(
    slapd: Slapd, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, ldap_config(slapd))
    add_user(ctx, HANAKO.uid, password=PASSWORD)  # a local password left over from before
    secret, _ = enrol_totp(ctx, clock, HANAKO.uid)
    out = sign_in(ctx, totp_now(secret, clock), name=HANAKO.uid, password=HANAKO.password)
    assert isinstance(out, Finished) and out.ok, out
    refused = sign_in(ctx, None, name=HANAKO.uid, password=PASSWORD)
    assert isinstance(refused, Finished) and refused.code == "bad_credentials"
    assert [a.outcome for a in audits(ctx, "signin.password")] == ["ok", "fail"]


def test_wrong_password_and_unknown_user_are_the_same_refusal_and_count(
    slapd: Slapd, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, ldap_config(slapd))
    add_user(ctx, HANAKO.uid)
    wrong = sign_in(ctx, None, name=HANAKO.uid, password=TARO.password)
    unknown = sign_in(ctx, None, name="9999999999", password="anything at all")
    empty = sign_in(ctx, None, name=HANAKO.uid, password="")
    for out in (wrong, unknown, empty):
        assert isinstance(out, Finished) and out.code == "bad_credentials", out
    assert failures(ctx) >= 3


def test_direct_bind_over_ldaps_reads_the_entry_as_the_user(slapd: Slapd, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, ldap_config(slapd, direct=True, ldaps=True))
    add_user(ctx, TARO.uid, "student")
    out = sign_in(ctx, None, name=f"{TARO.uid}@example.ac.jp", password=TARO.password)
    # Right password, no MFA yet: the VPN refuses with the policy's reason, not a wrong password.
    assert isinstance(out, Finished) and out.code == "refused" and out.username == TARO.uid
    assert isinstance(sign_in(ctx, None, name=TARO.uid, password="nope"), Finished)


def test_an_account_is_created_at_the_first_sign_in_with_the_mapped_role(
    slapd: Slapd, tmp_path: Path, clock: FixedClock
) -> None:
    extra = 'create_accounts = true\nrole_map = { student = "student", staff = "staff" }'
    ctx = open_with(tmp_path, clock, ldap_config(slapd, extra))
    out = sign_in(ctx, None, name=TARO.uid, password=TARO.password)
    assert isinstance(out, Finished) and out.code == "refused"  # no MFA yet: policy as for anyone
    with ctx.tx() as s:
        user = s.scalars(select(User).where(User.username == TARO.uid)).one()
        assert [a.role for a in user.affiliations] == ["student"]
        assert user.display_name == TARO.name and user.email == f"{TARO.uid}@example.ac.jp"
        assert user.password_hash is None
    # "alumni" is not mapped and there is no default role: refused, and nothing is created.
    out = sign_in(ctx, None, name=JIRO.uid, password=JIRO.password)
    assert isinstance(out, Finished) and out.code == "bad_credentials"
    with ctx.tx() as s:
        assert s.scalars(select(User).where(User.username == JIRO.uid)).one_or_none() is None
    assert audits(ctx, "signin.password")[-1].outcome == "fail"


def test_without_create_accounts_a_directory_user_without_an_account_is_refused(
    slapd: Slapd, tmp_path: Path, clock: FixedClock
) -> None:
    ctx = open_with(tmp_path, clock, ldap_config(slapd))
    out = sign_in(ctx, None, name=TARO.uid, password=TARO.password)
    assert isinstance(out, Finished) and out.code == "bad_credentials"
    with ctx.tx() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0


def test_directory_down_is_temporarily_unavailable_not_a_wrong_password(tmp_path: Path, clock: FixedClock) -> None:
    down = Slapd(tmp_path, port=_closed_port(), tls_port=_closed_port(), ca_file=tmp_path / "none.pem")
    ctx = open_with(tmp_path, clock, ldap_config(down).replace(f'ca_file = "{down.ca_file}"', ""))
    add_user(ctx, HANAKO.uid)
    out = sign_in(ctx, None, name=HANAKO.uid, password=HANAKO.password)
    assert isinstance(out, Finished) and out.code == "unavailable", out
    assert out.said == (say(Code.ENGINE_UNAVAILABLE),)
    box = client_texts.for_client(ctx, out.said, None)  # a VPN client's box: nobody named, both languages
    assert "temporarily unavailable" in box and "一時的に利用できません" in box
    assert failures(ctx) == 0  # the directory's fault is not counted against the user
    assert audits(ctx, "signin.password")[-1].outcome == "unavailable"

    # The VPN client's error box says it in both languages.
    login = new_login(ctx)
    login.handle_request(init())
    answer = login.handle_request(reply(login.handle, username=HANAKO.uid, password=HANAKO.password))
    said = error(answer.body) or answer.body.decode()
    assert answer.finished and not answer.token
    assert "temporarily unavailable" in said and "一時的に利用できません" in said, said

    # The portal says it in the reader's language.
    for lang, words, other in (
        ("en", "temporarily unavailable", "一時的"),
        ("ja", "一時的に利用できません", "temporarily"),
    ):
        c = TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=True)
        page = c.get(f"/signin?lang={lang}").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        r = c.post("/signin", data={"csrf": token, "username": HANAKO.uid, "password": HANAKO.password})
        assert r.status_code == 503 and words in r.text and other not in r.text


def test_a_directory_that_stops_answering_then_comes_back(slapd: Slapd, tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_with(tmp_path, clock, ldap_config(slapd))
    add_user(ctx, HANAKO.uid)
    first = sign_in(ctx, None, name=HANAKO.uid, password=HANAKO.password)
    assert isinstance(first, Finished) and first.code == "refused"  # password right; no MFA yet
    slapd.stop()  # the pooled connection is now dead
    try:
        out = sign_in(ctx, None, name=HANAKO.uid, password=HANAKO.password)
        assert isinstance(out, Finished) and out.code == "unavailable"
    finally:
        slapd.start()
    out = sign_in(ctx, None, name=HANAKO.uid, password=HANAKO.password)
    assert isinstance(out, Finished) and out.code == "refused"  # password right again; no MFA yet


def test_passwords_in_clear_need_an_explicit_setting(tmp_path: Path) -> None:
    base = '[identity]\nfirst_factor = "ldap"\n[ldap]\nservers = ["ldap://127.0.0.1:389"]\nbase_dn = "dc=x"\n'
    with pytest.raises(ConfigError, match="in clear"):
        make_config(tmp_path, base)
    assert make_config(tmp_path, base + "allow_plain = true\n").ldap.allow_plain
    with pytest.raises(ConfigError, match="servers"):
        make_config(tmp_path, '[identity]\nfirst_factor = "ldap"\n')


def _closed_port() -> int:
    from tests.helpers import free_port

    return free_port()  # nothing listens there once the probe socket is closed
