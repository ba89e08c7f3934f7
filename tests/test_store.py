"""Storage: migrations on SQLite and PostgreSQL, secrets never in clear at rest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from tests.conftest import PASSWORD, add_user, make_config, postgres_url
from tests.helpers import enrol_totp, sign_in, totp_now

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.secretbox import SecretBox, SecretBoxError, add_key, load_key_file
from campusvpn.service import authenticator, mfa
from campusvpn.service.context import Context, open_context
from campusvpn.store import db


def test_schema_is_created_by_migrations_and_upgrade_is_idempotent(ctx: Context) -> None:
    assert db.current_revision(ctx.engine) == db.head_revision(ctx.engine)
    db.upgrade(ctx.engine)
    tables = set(inspect(ctx.engine).get_table_names())
    assert {
        "users",
        "affiliations",
        "mfa_methods",
        "recovery_codes",
        "trusted_devices",
        "audit_events",
        "training_records",
        "throttle_counters",
        "phone_challenges",
        "alembic_version",
    } <= tables


def test_sqlite_runs_in_wal_mode(ctx: Context) -> None:
    with ctx.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_no_secret_is_stored_in_clear(ctx: Context, clock: FixedClock, tmp_path: Path) -> None:
    add_user(ctx)
    secret, codes = enrol_totp(ctx, clock)
    ctx.engine.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("campusvpn.db*"))
    for needle in [secret, codes[0], codes[0].replace("-", ""), PASSWORD]:
        assert needle.encode() not in raw
    con = sqlite3.connect(tmp_path / "campusvpn.db")
    [(pw_hash,)] = con.execute("select password_hash from users").fetchall()
    assert pw_hash.startswith("$argon2id$")
    assert all(h.startswith("$argon2id$") for (h,) in con.execute("select code_hash from recovery_codes"))


def test_a_seed_copied_to_another_users_row_does_not_decrypt(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    add_user(ctx, "2234567890")
    enrol_totp(ctx, clock)
    mfa.apply(ctx, "2234567890", actor="t")
    e = authenticator.begin_totp(ctx, "2234567890", actor="t")
    with ctx.engine.begin() as c:
        sealed = c.execute(
            text("select secret_sealed from mfa_methods where public_id != :p"), {"p": e.method_id}
        ).scalar()
        c.execute(
            text("update mfa_methods set secret_sealed = :s where public_id = :p"), {"s": sealed, "p": e.method_id}
        )
    from campusvpn.service.errors import Forbidden

    with pytest.raises(Forbidden, match="cannot be read"):
        authenticator.confirm_totp(ctx, "2234567890", "123456", actor="t")


def test_key_rotation_keeps_old_seeds_readable(tmp_path: Path) -> None:
    from campusvpn.platform.secretbox import generate_key_file

    keys = tmp_path / "k"
    generate_key_file(keys)
    old = load_key_file(keys)
    blob = old.seal(b"seed", "ctx")
    new_id = add_key(keys)
    rotated = load_key_file(keys)
    assert rotated.current_key_id == new_id
    assert rotated.open(blob, "ctx") == b"seed"
    assert rotated.key_id_of(rotated.seal(b"x", "ctx")) == new_id
    with pytest.raises(SecretBoxError):
        SecretBox({"k1": b"\0" * 32}, "k1").open(blob, "ctx")


@pytest.mark.postgres
def test_the_whole_sign_in_works_on_postgresql(tmp_path: Path, clock: FixedClock) -> None:
    url = postgres_url()
    if not url:
        pytest.skip("CAMPUSVPN_TEST_PG_URL is not set (scripts/test starts a PostgreSQL server and sets it)")
    ctx = open_context(make_config(tmp_path, database=url), clock)
    try:
        assert db.current_revision(ctx.engine) == db.head_revision(ctx.engine)
        add_user(ctx)
        secret, codes = enrol_totp(ctx, clock)
        done = sign_in(ctx, totp_now(secret, clock))
        assert done.ok  # type: ignore[union-attr]
        assert sign_in(ctx, codes[0]).recovery_left == 9  # type: ignore[union-attr]
    finally:
        with ctx.engine.begin() as c:
            for t in [
                "audit_events",
                "throttle_counters",
                "trusted_devices",
                "training_records",
                "phone_challenges",
                "recovery_codes",
                "mfa_methods",
                "affiliations",
                "users",
                "alembic_version",
            ]:
                c.execute(text(f"DROP TABLE IF EXISTS {t} CASCADE"))
        ctx.engine.dispose()


def test_totp_qr_code_renders_as_png_and_terminal_text(ctx: Context) -> None:
    add_user(ctx)
    mfa.apply(ctx, "1234567890", actor="t")
    e = authenticator.begin_totp(ctx, "1234567890", actor="t")
    assert e.qr_png().startswith(b"\x89PNG\r\n\x1a\n")
    term = e.qr_terminal()
    assert (len(term.splitlines()) > 15 and "\u2580" in term) or "\u2584" in term or "\u2588" in term
