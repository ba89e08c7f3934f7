"""The account lifecycle with a moved clock: gaps reset on their day, ended affiliations revoke,
revoked accounts are purged after the retention, nothing happens before its day, twice is once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import PASSWORD, add_user, make_config

from campusvpn.core.lifecycle import LifecycleRules, Run, closing_day, ending_notice, gap_day, runs
from campusvpn.core.policy import Affiliation
from campusvpn.platform.clock import FixedClock
from campusvpn.service import accounts, audit, authenticator, lifecycle, mfa, recovery_codes, sessions, trusted
from campusvpn.service.context import Context, open_context
from campusvpn.store.models import MailMessage, RecoveryCode, TrustedDevice, User, VpnSession


def at(day: str, hour: int = 12) -> datetime:
    from zoneinfo import ZoneInfo

    return (
        datetime.combine(date.fromisoformat(day), datetime.min.time(), ZoneInfo("Asia/Tokyo"))
        .replace(hour=hour)
        .astimezone(UTC)
    )


def test_runs_join_changes_without_a_gap_and_find_the_gap() -> None:
    student = Affiliation("student", date(2023, 4, 1), date(2027, 3, 31))
    staff_next_day = Affiliation("staff", date(2027, 4, 1), None)
    staff_after_gap = Affiliation("staff", date(2027, 4, 2), None)
    assert runs([student, staff_next_day]) == [Run(date(2023, 4, 1), None)]
    assert gap_day([student, staff_next_day], date.max) is None
    assert gap_day([student, staff_after_gap], date(2027, 3, 31)) is None  # not yet begun
    assert gap_day([student, staff_after_gap], date(2027, 4, 1)) == (date(2027, 4, 1), date(2027, 4, 2))
    assert closing_day([student], timedelta(days=3)) == date(2027, 4, 4)
    assert closing_day([student, staff_after_gap], timedelta(0)) is None
    rules = LifecycleRules()
    assert ending_notice([student], date(2027, 3, 1), rules) == (30, date(2027, 3, 31))
    assert ending_notice([student], date(2027, 2, 28), rules) is None
    assert ending_notice([student], date(2027, 3, 26), rules) == (7, date(2027, 3, 31))
    assert ending_notice([student, staff_next_day], date(2027, 3, 26), rules) is None


def _user(ctx: Context, name: str) -> User:
    with ctx.tx() as s:
        u = ctx.user(s, name)
        s.expunge(u)
        return u


def _enrol_student(ctx: Context, clock: FixedClock, name: str = "1234567890") -> None:
    clock.set(at("2026-10-01"))
    add_user(ctx, name, "student", start="2023-04-01", end="2027-03-31")
    mfa.apply(ctx, name, actor="test")
    authenticator.begin_totp(ctx, name, actor="test")  # a pending method: MFA data all the same
    with ctx.tx() as s:
        user = ctx.user(s, name)
        user.email = "student@example.ac.jp"
        trusted.trust_device(ctx, s, user, "laptop", None)


def _has_everything(ctx: Context, name: str) -> bool:
    u = _user(ctx, name)
    return u.password_hash is not None and u.mfa_applied_at is not None


def test_import_before_a_one_day_gap_keeps_everything_until_the_gap(ctx: Context, clock: FixedClock) -> None:
    _enrol_student(ctx, clock)
    clock.set(at("2027-02-15"))
    report = accounts.import_users(ctx, "username,role,from\n1234567890,staff,2027-04-02\n", actor="test")
    assert not report.errors and report.updated == 1
    assert _has_everything(ctx, "1234567890")
    for day in ("2027-02-15", "2027-03-01", "2027-03-31"):
        clock.set(at(day, 23))
        lifecycle.run(ctx)
        assert _has_everything(ctx, "1234567890"), day
    clock.set(at("2027-04-01", 0))
    done = lifecycle.run(ctx).done
    assert [d["step"] for d in done] == ["gap_reset"]
    u = _user(ctx, "1234567890")
    assert u.password_hash is None and u.mfa_applied_at is None and u.status == "active"
    # A password set during the gap is the new one: the next runs leave it.
    accounts.set_password(ctx, "1234567890", PASSWORD, actor="test")
    clock.set(at("2027-04-03"))
    assert lifecycle.run(ctx).done == []
    assert _user(ctx, "1234567890").password_hash is not None


def test_change_of_affiliation_without_a_gap_keeps_everything(ctx: Context, clock: FixedClock) -> None:
    _enrol_student(ctx, clock)
    clock.set(at("2027-02-15"))
    accounts.import_users(ctx, "username,role,from\n1234567890,staff,2027-04-01\n", actor="test")
    for day in ("2027-03-31", "2027-04-01", "2027-07-01"):
        clock.set(at(day))
        assert lifecycle.run(ctx).done == [], day
        assert _has_everything(ctx, "1234567890")


def test_revocation_at_the_end_then_purge_after_retention(tmp_path: Path, clock: FixedClock) -> None:
    ctx = open_context(make_config(tmp_path, '[lifecycle]\ngrace = "2d"\nretention = "30d"\n'), clock)
    _enrol_student(ctx, clock)
    with ctx.tx() as s:
        user = ctx.user(s, "1234567890")
        recovery_codes.make(ctx, s, user, clock.now(), "test")
        sessions.open_session(ctx, s, user, profile=None, pool=ctx.config.vpn.pool, source="192.0.2.1", client="t")
    clock.set(at("2027-04-02", 23))  # within the grace
    assert lifecycle.run(ctx).done == []
    clock.set(at("2027-04-03", 0))
    report = lifecycle.run(ctx)
    assert [(d["step"], d["due"]) for d in report.done] == [("revoke", "2027-04-03")]
    u = _user(ctx, "1234567890")
    assert u.status == "revoked" and "2027-03-31" in (u.status_reason or "")
    assert u.password_hash is not None  # kept until the retention ends
    with ctx.tx() as s:
        assert [v.ended_at is not None for v in s.scalars(select(VpnSession))] == [True]
        assert all(d.revoked_at is not None for d in s.scalars(select(TrustedDevice)))
    assert lifecycle.run(ctx).done == []  # twice is once
    clock.set(at("2027-05-02", 23))  # 29 days later
    assert lifecycle.run(ctx).done == []
    clock.set(at("2027-05-03", 0))
    assert [d["step"] for d in lifecycle.run(ctx).done] == ["purge"]
    u = _user(ctx, "1234567890")
    assert u.password_hash is None and u.mfa_applied_at is None and u.status == "revoked"
    with ctx.tx() as s:
        assert s.scalars(select(RecoveryCode).where(RecoveryCode.user_id == u.id)).all() == []
        assert s.scalars(select(TrustedDevice).where(TrustedDevice.user_id == u.id)).all() == []
        assert not ctx.user(s, "1234567890").methods
    events = [e["event"] for e in audit.listing(ctx, subject="1234567890", since=None, limit=100)]
    assert "account.purged" in events and "account.revoked" in events and "account.created" in events
    assert lifecycle.run(ctx).done == []
    ctx.engine.dispose()


def test_a_new_affiliation_lifts_the_revocation_and_resets_old_credentials(ctx: Context, clock: FixedClock) -> None:
    _enrol_student(ctx, clock)
    clock.set(at("2027-04-01"))
    assert [d["step"] for d in lifecycle.run(ctx).done] == ["revoke"]
    clock.set(at("2027-04-10"))
    accounts.import_users(ctx, "username,role,from\n1234567890,staff,2027-05-01\n", actor="test")
    assert [d["step"] for d in lifecycle.run(ctx).done] == ["restore", "gap_reset"]
    u = _user(ctx, "1234567890")
    assert u.status == "active" and u.password_hash is None
    assert lifecycle.run(ctx).done == []


def test_a_revocation_by_an_admin_is_not_lifted(ctx: Context, clock: FixedClock) -> None:
    _enrol_student(ctx, clock)
    from campusvpn.core.policy import AccountStatus

    accounts.set_status(ctx, "1234567890", AccountStatus.REVOKED, actor="test", reason="misconduct")
    clock.set(at("2026-10-02"))
    assert lifecycle.run(ctx).done == []
    assert _user(ctx, "1234567890").status == "revoked"


def test_notices_are_queued_once_per_event(ctx: Context, clock: FixedClock) -> None:
    _enrol_student(ctx, clock)
    for day, expected in (("2027-02-28", []), ("2027-03-01", ["ending_in_30_days"]), ("2027-03-02", [])):
        clock.set(at(day))
        assert [n["notice"] for n in lifecycle.run(ctx).notices] == expected, day
    clock.set(at("2027-03-25"))
    assert [n["notice"] for n in lifecycle.run(ctx).notices] == ["ending_in_7_days"]
    clock.set(at("2027-03-30"))
    assert [n["notice"] for n in lifecycle.run(ctx).notices] == ["ending_in_1_days"]
    clock.set(at("2027-04-01"))
    lifecycle.run(ctx)
    lifecycle.run(ctx)
    with ctx.tx() as s:
        keys = sorted(m.key.split(":")[0] for m in s.scalars(select(MailMessage).where(MailMessage.channel == "email")))
        revoked = s.scalars(select(MailMessage).where(MailMessage.key.like("account_revoked:%"))).one()
        assert "2027-03-31" in revoked.body
    assert keys == ["account_revoked"] + ["affiliation_ending"] * 3


def test_the_portal_refuses_a_closed_account_with_the_reason(ctx: Context, clock: FixedClock) -> None:
    from tests.test_portal import client, sign_in

    _enrol_student(ctx, clock)
    assert "/mfa/phone" in sign_in(client(ctx))  # signed in, asked to register a method
    clock.set(at("2027-04-01"))
    lifecycle.run(ctx)
    c = client(ctx)
    text = sign_in(c)
    assert "閉鎖" in text and "正しくありません" not in text  # the portal's default language is ja
    assert c.get("/", follow_redirects=False).status_code in (302, 303, 307)  # not signed in


def test_cli_lifecycle_run_prints_the_purge_report(
    tmp_path: Path, ctx: Context, clock: FixedClock, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from campusvpn.cli.main import main as cli_main

    _enrol_student(ctx, clock)
    clock.set(at("2027-04-01"))
    cli_main(["--config", str(tmp_path / "campusvpn.toml"), "lifecycle", "run", "--json"], clock=clock)
    out = json.loads(capsys.readouterr().out)
    assert out["day"] == "2027-04-01"
    assert [(d["username"], d["step"]) for d in out["done"]] == [("1234567890", "revoke")]
    cli_main(["--config", str(tmp_path / "campusvpn.toml"), "lifecycle", "run"], clock=clock)
    assert "nothing due on 2027-04-01" in capsys.readouterr().out
