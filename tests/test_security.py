"""Regression tests of issue 14: admin power follows the account, lock-outs by strangers, anonymous
page loads, uninitialised or unreadable databases, storage failure, bad path parameters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests import helpers
from tests.conftest import add_user, make_config
from tests.test_portal import ADMIN, USER, client, csrf, register_totp, sign_in, totp_now

from campusvpn.core import throttle
from campusvpn.core.policy import AccountStatus
from campusvpn.platform.clock import FixedClock
from campusvpn.service import accounts, api_tokens, mfa
from campusvpn.service.context import Context, open_context
from campusvpn.signin import Finished, Prompt
from campusvpn.store.models import ThrottleCounter


@pytest.fixture
def sctx(tmp_path: Path, clock: FixedClock) -> Iterator[Context]:
    c = open_context(make_config(tmp_path, f'[portal]\nadmins = ["{ADMIN}"]\ndefault_language = "en"\n'), clock)
    add_user(c, USER)
    yield c
    c.engine.dispose()


def _admin_in_console(ctx: Context, clock: FixedClock) -> tuple[TestClient, str]:
    add_user(ctx, ADMIN)
    mfa.apply(ctx, ADMIN, actor="test")
    a = client(ctx)
    sign_in(a, ADMIN)
    clock.advance(timedelta(minutes=1))
    secret, _ = register_totp(a, ctx, clock)
    assert a.get("/admin").status_code == 200
    return a, secret


# --- 1. admin authority follows the account ---------------------------------------------------


def test_suspended_admin_loses_the_console_and_the_api_at_once(sctx: Context, clock: FixedClock) -> None:
    a, secret = _admin_in_console(sctx, clock)
    token = api_tokens.create(sctx, ADMIN, "sync")
    h = {"Authorization": f"Bearer {token}"}
    assert a.get("/api/users", headers=h).status_code == 200
    accounts.set_status(sctx, ADMIN, AccountStatus.SUSPENDED, actor="9000000002", reason="under review")
    assert a.get("/admin", follow_redirects=False).status_code in (303, 403)
    assert a.get("/api/users", headers=h).status_code == 401
    assert api_tokens.listing(sctx) == []  # revoked, not merely refused
    # Signing in again to the portal is allowed (to read why), the console is not.
    page = sign_in(a, ADMIN)
    clock.advance(timedelta(seconds=31))
    r = a.post("/signin/code", data={"csrf": csrf(page), "code": totp_now(sctx, secret, clock)})
    assert "suspended" in r.text.lower(), r.text
    assert a.get("/admin", follow_redirects=False).status_code == 403
    # Restoring the account restores the console but not the revoked token.
    accounts.set_status(sctx, ADMIN, AccountStatus.ACTIVE, actor="9000000002")
    assert a.get("/api/users", headers=h).status_code == 401


def test_admin_status_is_checked_on_every_request_even_if_the_session_survives(
    sctx: Context,
    clock: FixedClock,
) -> None:
    a, _ = _admin_in_console(sctx, clock)
    token = api_tokens.create(sctx, ADMIN, "sync")
    # A status written by another path (a roster import on another node) ends nothing: the check
    # at each request must still refuse.
    with sctx.tx() as s:
        sctx.user(s, ADMIN).status = AccountStatus.REVOKED.value
    assert a.get("/admin", follow_redirects=False).status_code in (303, 403)
    assert a.get("/api/users", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# --- 8. bad path parameters -----------------------------------------------------------------


BAD = ["abc", "0", "-1", "%00", "x" * 300, "%E3%81%82", "..%2F..", "1234567890%20", "%FF"]


def test_every_path_parameter_refuses_bad_values_without_500(sctx: Context, clock: FixedClock) -> None:
    a, _ = _admin_in_console(sctx, clock)
    token = api_tokens.create(sctx, ADMIN, "sync")
    h = {"Authorization": f"Bearer {token}"}
    from starlette.routing import Route

    from campusvpn.portal.app import create_app

    app = create_app(sctx).app  # type: ignore[attr-defined]
    templates = [r.path for r in app.routes if isinstance(r, Route) and "{" in r.path]
    api = a.get("/api/openapi.json").json()["paths"]
    templates += ["/api" + p for p in api if "{" in p]
    assert len(templates) >= 6, templates
    seen: set[int] = set()
    import re

    for template in templates:
        for bad in BAD:
            url = re.sub(r"\{[^}]+\}", bad, template)
            for method in ("GET", "POST", "DELETE"):
                if url.startswith("/api/"):  # a valid body, so that the path parameter is what is tried
                    r = a.request(method, url, headers=h, json={"status": "suspended", "reason": "test"})
                else:
                    page = a.get("/admin").text
                    r = a.request(method, url, data={"csrf": csrf(page), "action": "kill", "session": bad})
                assert r.status_code in (200, 400, 404, 405, 422), (method, url, r.status_code, r.text[:300])
                seen.add(r.status_code)
    assert {400, 404} <= seen


# --- 3, 4. throttling that strangers cannot turn against the owner ----------------------------

OWNER_HOME = "192.0.2.10"  # the address tests.helpers.sign_in uses by default


def _stranger_fails(ctx: Context, clock: FixedClock, times: int, step: str = "password") -> timedelta:
    """`times` counted failures (wrong passwords, or wrong codes after a right password for
    `step="second"`) from ever new addresses, each try after the longest back-off, as a patient
    attacker who knows only the user name would; how long it took."""
    began, counted, i = clock.now(), 0, 0
    while counted < times:
        clock.advance(ctx.config.throttle.backoff_max)
        source = f"203.0.{i // 250}.{i % 250 + 1}"
        i += 1
        if step == "password":
            out = helpers.sign_in(ctx, None, password="guess", source=source)
            counted += isinstance(out, Finished) and out.code == "bad_credentials"
        else:
            # Up to the lock every try is let through (the waits are at most backoff_max).
            helpers.sign_in(ctx, "000000", source=source)
            counted += 1
    return clock.now() - began


def test_a_stranger_cannot_lock_out_the_owners_trusted_device_or_home_address(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = helpers.enrol_totp(ctx, clock)
    first = helpers.sign_in(ctx, helpers.totp_now(secret, clock), trust=True)
    assert isinstance(first, Finished) and first.ok and first.device_token
    _stranger_fails(ctx, clock, ctx.config.throttle.password_lock_after)
    # The stranger is locked out...
    stranger = helpers.sign_in(ctx, None, source="203.0.9.9")
    assert isinstance(stranger, Finished) and stranger.code == "locked"
    # ...the owner's trusted device is not, from any address...
    device = helpers.sign_in(ctx, None, device_token=first.device_token, source="198.51.100.77")
    assert isinstance(device, Finished) and device.ok and device.trusted_device
    # ...nor the address the owner completed a sign-in from, without the device.
    clock.advance(timedelta(seconds=31))
    home = helpers.sign_in(ctx, helpers.totp_now(secret, clock), source=OWNER_HOME)
    assert isinstance(home, Finished) and home.ok, home


def test_a_strangers_code_guesses_do_not_lock_the_owners_home_address(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = helpers.enrol_totp(ctx, clock)
    assert helpers.sign_in(ctx, helpers.totp_now(secret, clock)).ok  # type: ignore[union-attr]
    _stranger_fails(ctx, clock, ctx.config.throttle.second_factor_lock_after, step="second")
    assert helpers.sign_in(ctx, "000000", source="203.0.9.9").code == "locked"  # type: ignore[union-attr]
    clock.advance(timedelta(seconds=31))
    assert helpers.sign_in(ctx, helpers.totp_now(secret, clock), source=OWNER_HOME).ok  # type: ignore[union-attr]


def test_the_account_as_a_whole_locks_after_100_consecutive_failures_and_a_success_ends_the_run(
    ctx: Context, clock: FixedClock
) -> None:
    add_user(ctx)
    secret, _ = helpers.enrol_totp(ctx, clock)
    first = helpers.sign_in(ctx, helpers.totp_now(secret, clock), trust=True)
    assert isinstance(first, Finished) and first.device_token
    _stranger_fails(ctx, clock, throttle.ACCOUNT_CAP - 1)
    # 99 consecutive failures: the owner still signs in, which ends the run...
    assert helpers.sign_in(ctx, None, device_token=first.device_token).ok  # type: ignore[union-attr]
    _stranger_fails(ctx, clock, throttle.ACCOUNT_CAP - 1)
    assert helpers.sign_in(ctx, None, device_token=first.device_token).ok  # type: ignore[union-attr]
    # ...and 100 in a row lock the account for everyone (NIST SP 800-63B §5.2.2).
    took = _stranger_fails(ctx, clock, throttle.ACCOUNT_CAP)
    assert took > timedelta(hours=20)  # docs/security.md: about a day of patient guessing
    locked = helpers.sign_in(ctx, None, device_token=first.device_token)
    assert isinstance(locked, Finished) and locked.code == "locked"


def test_a_nat_address_is_not_slowed_by_a_few_typos_and_a_success_there_clears_it(
    ctx: Context, clock: FixedClock
) -> None:
    nat = "198.51.100.1"
    names = [f"10000000{i:02d}" for i in range(40)]
    for name in names:
        add_user(ctx, name)
    # Twenty people behind one campus NAT mistype their password once each, within seconds.
    for name in names[: throttle.SOURCE_FREE_FAILURES]:
        out = helpers.sign_in(ctx, None, name=name, password="typo", source=nat)
        assert isinstance(out, Finished) and out.code == "bad_credentials"
    # Someone signs in there: the address is cleared, and twenty more typos are free again.
    ok = helpers.sign_in(ctx, None, name=names[0], source=nat)
    assert isinstance(ok, Finished) and ok.code == "refused" and ok.factors == 1  # password accepted
    for name in names[throttle.SOURCE_FREE_FAILURES :]:
        out = helpers.sign_in(ctx, None, name=name, password="typo", source=nat)
        assert isinstance(out, Finished) and out.code == "bad_credentials", out


def test_a_code_used_again_in_its_step_is_wait_for_the_next_code_not_a_failure(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = helpers.enrol_totp(ctx, clock)
    code = helpers.totp_now(secret, clock)
    assert helpers.sign_in(ctx, code, source="203.0.113.5").ok  # type: ignore[union-attr]
    # openconnect signing in again within the same 30 seconds sends the same code, many times.
    for _ in range(ctx.config.throttle.second_factor_lock_after + 5):
        again = helpers.sign_in(ctx, code, source="203.0.113.5")
        assert isinstance(again, Prompt) and again.error and "Wait for the next code" in again.error
    with ctx.tx() as s:
        assert s.scalars(select(ThrottleCounter)).all() == []  # nothing counted
    clock.advance(timedelta(seconds=30))
    assert helpers.sign_in(ctx, helpers.totp_now(secret, clock), source="203.0.113.5").ok  # type: ignore[union-attr]


# --- 5. anonymous page loads store nothing -------------------------------------------------------


def test_anonymous_page_loads_do_not_grow_the_database(sctx: Context) -> None:
    from sqlalchemy import func

    from campusvpn.store.models import WebSession

    def stored() -> int:
        with sctx.tx() as s:
            return s.scalar(select(func.count()).select_from(WebSession)) or 0

    c = client(sctx)
    before = stored()
    for i in range(1000):
        c.cookies.clear()
        r = c.get(("/signin", "/", "/connect", "/no/such/page")[i % 4])
        assert r.status_code in (200, 404)
    assert stored() == before
    # A browser that submits a form gets its session then; forms it was given before stay good
    # (other tabs, the passkey script) until the session changes privilege.
    c.cookies.clear()
    token = csrf(c.get("/signin").text)
    for _ in range(2):
        r = c.post("/signin", data={"csrf": token, "username": USER, "password": "wrong"})
        assert r.status_code == 401 and "incorrect" in r.text
    assert stored() == before + 1
    assert "Welcome" in sign_in(c) and stored() == before + 1
    # A form whose CSRF token was made for another browser's cookie is refused.
    page = client(sctx).get("/signin").text
    c.cookies.clear()
    c.get("/signin")
    assert c.post("/signin", data={"csrf": csrf(page), "username": USER, "password": "x"}).status_code == 403


# --- 7. storage failure ------------------------------------------------------------------------


def _read_only(ctx: Context) -> Context:
    """The same database opened read-only by SQLite: every write fails as on a read-only file
    system (root ignores file modes, so chmod would not do)."""
    import dataclasses

    from campusvpn.store import db

    path = ctx.engine.url.database
    ro = db.make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    return dataclasses.replace(ctx, engine=ro, sessions=db.session_factory(ro))


def test_storage_failure_says_try_again_later_in_the_vpn_client_and_the_portal(
    sctx: Context, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    from campusvpn.anyconnect import xmlauth
    from campusvpn.anyconnect.login import GatewayLogin

    helpers.enrol_totp(sctx, clock, USER)
    add_user(sctx, ADMIN)
    admin_token = api_tokens.create(sctx, ADMIN, "sync")  # made while storage worked
    ro = _read_only(sctx)
    unavailable = "The service is temporarily unavailable; try again in a few minutes."
    login = GatewayLogin(ro, source="192.0.2.7", user_agent="Open AnyConnect VPN Agent v9.01-3", cert_sha1="AB")
    first = login.handle_request(xmlauth.AuthRequest(kind="init"))
    reply = login.handle_request(
        xmlauth.AuthRequest(
            kind="auth-reply", handle=login.handle, fields={"username": USER, "password": helpers.PASSWORD}
        )
    )
    assert b"<form" in first.body and reply.finished and not reply.token
    assert unavailable.encode() in reply.body, reply.body
    assert any("storage unavailable" in r.message and "readonly" in r.message for r in caplog.records)
    # The portal: a 503 page in the reader's language.
    c = client(ro)
    page = c.get("/signin").text
    r = c.post("/signin", data={"csrf": csrf(page), "username": USER, "password": helpers.PASSWORD})
    assert r.status_code == 503 and unavailable in r.text and r.headers["retry-after"]
    c.cookies.clear()
    page = c.get("/signin", headers={"accept-language": "ja"}).text
    r = c.post(
        "/signin",
        data={"csrf": csrf(page), "username": USER, "password": helpers.PASSWORD},
        headers={"accept-language": "ja"},
    )
    assert r.status_code == 503 and "サービスは一時的に利用できません" in r.text
    # The API says it too, with its own status.
    r = c.get("/api/users", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 503 and r.json() == {"error": unavailable}


# --- 6. no serving a database that was never initialised; private files -------------------------


def test_serve_refuses_a_database_that_is_missing_or_was_never_initialised(tmp_path: Path) -> None:
    import stat

    from tests.cli_run import run_campusvpn

    r = run_campusvpn(None, "init", "--dir", str(tmp_path / "st"), "--service-user", "")
    assert r.returncode == 0, r.stderr
    conf = tmp_path / "st" / "campusvpn.toml"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600  # it may hold the database password
    conf.write_text(conf.read_text().replace('"sqlite:///campusvpn.db"', '"sqlite:///campusvnp.db"'))
    typo = tmp_path / "st" / "campusvnp.db"
    r = run_campusvpn(conf, "serve", "--no-tun")
    assert r.returncode != 0
    assert f"there is no database at {typo}" in r.stderr and "campusvpn init --dir" in r.stderr, r.stderr
    assert not typo.exists()  # and nothing was created
    typo.touch()  # an empty file, as a stray `sqlite3 campusvnp.db` would leave
    r = run_campusvpn(conf, "serve", "--no-tun")
    assert r.returncode != 0 and "never initialised" in r.stderr and str(typo) in r.stderr, r.stderr
    assert typo.stat().st_size == 0


def test_a_database_created_later_is_private_with_its_wal_and_shm(tmp_path: Path) -> None:
    import os
    import stat

    from sqlalchemy import text

    from campusvpn.store import db

    old = os.umask(0o022)  # an operator's usual umask: SQLite alone would make 0644 files
    try:
        engine = db.make_engine(f"sqlite:///{tmp_path / 'new.db'}")
        with engine.begin() as conn:  # an open writer keeps the -wal and -shm files
            conn.execute(text("create table t (x int)"))
            conn.execute(text("insert into t values (1)"))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        engine.dispose()
    finally:
        os.umask(old)
    assert modes == {"new.db": 0o600, "new.db-wal": 0o600, "new.db-shm": 0o600}, modes
