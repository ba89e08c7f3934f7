"""Sessions record the VPN protocol that opened them: migration, listing, CLI, portal, API."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from tests.cli_run import run_campusvpn
from tests.conftest import START, add_user, make_config, postgres_url
from tests.test_portal import ADMIN, USER, client, register_totp, sign_in

from campusvpn.platform.clock import FixedClock
from campusvpn.service import api_tokens, live_sessions, mfa, sessions
from campusvpn.service.context import Context, open_context
from campusvpn.store import db


def _old_row_gets_anyconnect(engine: Engine) -> None:
    """A session written under revision 0003 (before the column) reads as AnyConnect after the upgrade."""
    cfg = db._alembic_config(engine)
    command.upgrade(cfg, "0003")
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO users (username, status, created_at) VALUES ('1234567890', 'active', :t)"),
            {"t": START},
        )
        uid = c.execute(text("SELECT id FROM users")).scalar_one()
        c.execute(
            text(
                "INSERT INTO vpn_sessions (public_id, token_digest, user_id, username, address, started_at, "
                "expires_at, last_seen_at, connected, bytes_in, bytes_out) "
                "VALUES ('old', 'digest', :u, '1234567890', '172.31.0.2', :t, :t, :t, false, 0, 0)"
            ),
            {"u": uid, "t": START},
        )
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT protocol FROM vpn_sessions")).scalar_one() == "anyconnect"
    command.downgrade(cfg, "0003")  # and the step back works too
    db.upgrade(engine)


def test_migration_marks_old_sessions_anyconnect_on_sqlite(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        _old_row_gets_anyconnect(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_migration_marks_old_sessions_anyconnect_on_postgresql() -> None:
    url = postgres_url()
    if not url:
        pytest.skip("CAMPUSVPN_TEST_PG_URL is not set (scripts/test starts a PostgreSQL server and sets it)")
    schema = f"protocol_{secrets.token_hex(4)}"  # a schema of its own: other tests use the same database
    admin = db.make_engine(url)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        _old_row_gets_anyconnect(engine)
    finally:
        engine.dispose()
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _open(ctx: Context, protocol: str) -> live_sessions.OpenedSession:
    return live_sessions.open_for_vpn(
        ctx, USER, None, pool="172.31.0.0/16", source="192.0.2.7", client=f"{protocol} test", protocol=protocol
    )


@pytest.fixture
def pctx(tmp_path: Path, clock: FixedClock) -> Context:
    c = open_context(make_config(tmp_path, f'[portal]\nadmins = ["{ADMIN}"]\ndefault_language = "en"\n'), clock)
    add_user(c, USER)
    return c


def test_each_listing_shows_the_protocol(pctx: Context, clock: FixedClock, tmp_path: Path) -> None:
    fortinet, anyconnect = _open(pctx, "fortinet"), _open(pctx, "anyconnect")
    listed = {r["id"]: r["protocol"] for r in sessions.listing(pctx)}
    assert listed == {fortinet.session_id: "fortinet", anyconnect.session_id: "anyconnect"}

    config, now = tmp_path / "campusvpn.toml", clock.now().isoformat()
    out = run_campusvpn(config, "session", "list", now=now).stdout
    lines = {line.split()[0]: line.split()[3] for line in out.splitlines()}
    assert lines == {fortinet.session_id: "fortinet", anyconnect.session_id: "anyconnect"}
    as_json = json.loads(run_campusvpn(config, "session", "list", "--json", now=now).stdout)
    assert {r["protocol"] for r in as_json} == {"fortinet", "anyconnect"}

    member = client(pctx)
    sign_in(member)
    page = member.get("/vpn").text
    cell = '<td data-label="Protocol">{}</td>'  # each cell names its column (a card per row on phones)
    assert "<th>Protocol</th>" in page
    assert cell.format("FortiGate SSL-VPN") in page and cell.format("AnyConnect") in page

    add_user(pctx, ADMIN)
    mfa.apply(pctx, ADMIN, actor="test")
    admin = client(pctx)
    sign_in(admin, ADMIN)
    register_totp(admin, pctx, clock)
    page = admin.get(f"/admin/users/{USER}").text
    assert "<td>FortiGate SSL-VPN</td>" in page and "<td>AnyConnect</td>" in page

    token = api_tokens.create(pctx, ADMIN, "protocol test")
    api = admin.get("/api/sessions", params={"user": USER}, headers={"Authorization": f"Bearer {token}"}).json()
    assert {r["id"]: r["protocol"] for r in api} == listed
