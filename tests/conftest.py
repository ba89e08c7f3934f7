"""Shared fixtures: a real SQLite database in a temporary folder, and a clock the test moves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import Config, parse_config
from campusvpn.platform.secretbox import generate_key_file
from campusvpn.service import accounts
from campusvpn.service.context import Context, open_context

# Cheap Argon2 for tests: the rules are the same, the cost is not what is under test.
FAST = """
[passwords]
argon2_time_cost = 1
argon2_memory_kib = 8192
"""

PASSWORD = "correct horse battery staple"
START = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo, FY2026, after both deadlines


def make_config(tmp_path: Path, extra: str = "", database: str | None = None) -> Config:
    text = FAST + extra
    if database:
        text = f'[storage]\ndatabase = "{database}"\n' + text
    path = tmp_path / "campusvpn.toml"
    path.write_text(text)
    if not (tmp_path / "secret.keys").exists():
        generate_key_file(tmp_path / "secret.keys")
    return parse_config(text, path)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def ctx(tmp_path: Path, clock: FixedClock) -> Iterator[Context]:
    c = open_context(make_config(tmp_path), clock)
    yield c
    c.engine.dispose()


def add_user(
    ctx: Context,
    name: str = "1234567890",
    role: str = "staff",
    *,
    start: str = "2020-04-01",
    end: str | None = None,
    password: str | None = PASSWORD,
    trained_on: str | None = "2026-07-15",
) -> None:
    """An account with a password and, unless told otherwise, this fiscal year's training done."""
    from datetime import date

    from campusvpn.service import training

    accounts.add_user(
        ctx,
        accounts.NewUser(name, role, start=date.fromisoformat(start), end=date.fromisoformat(end) if end else None),
        actor="test",
        password=password,
    )
    if trained_on:
        report = training.import_completions(ctx, f"username,completed_on\n{name},{trained_on}\n", actor="test")
        assert not report.errors, report.errors


TESTS = Path(__file__).resolve().parent
TIERS = {"e2e": pytest.mark.e2e, "browser": pytest.mark.browser}  # by folder; every other test is a unit test


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, so `pytest -m unit` (or e2e, browser) runs one tier."""
    for item in items:
        path = item.path.resolve()
        folder = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else ""
        item.add_marker(TIERS.get(folder, pytest.mark.unit))


def postgres_url() -> str | None:
    return os.environ.get("CAMPUSVPN_TEST_PG_URL")
