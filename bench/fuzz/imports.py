"""The roster and training imports end to end on a real SQLite database (`service.accounts.import_users`,
`service.training.import_completions`).

Contract: never an exception; one outcome per row (added, updated or an error with the row's
line), or one error at line 1 when the header is unusable. The first byte picks the import.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import atheris
from fuzzlib import main, require

with atheris.instrument_imports(include=["campusvpn.service", "campusvpn.core"]):
    from campusvpn.platform.clock import FixedClock
    from campusvpn.platform.config import parse_config
    from campusvpn.platform.secretbox import generate_key_file
    from campusvpn.service.accounts import IMPORT_COLUMNS, csv_rows, import_users
    from campusvpn.service.context import Context, open_context
    from campusvpn.service.training import import_completions

_ctx: Context | None = None


def context() -> Context:
    global _ctx
    if _ctx is None:
        home = Path(tempfile.mkdtemp(prefix="campusvpn-fuzz-"))
        generate_key_file(home / "secret.keys")
        text = "[passwords]\nargon2_time_cost = 1\nargon2_memory_kib = 8192\n"
        _ctx = open_context(parse_config(text, home / "campusvpn.toml"), FixedClock(datetime(2026, 10, 1, tzinfo=UTC)))
    return _ctx


def check(data: bytes) -> None:
    ctx = context()
    text = data[1:].decode("utf-8", "replace")
    roster = not data or data[0] % 2 == 0
    rows = csv_rows(text, IMPORT_COLUMNS if roster else ("username", "completed_on"))
    if roster:
        report = import_users(ctx, text, actor="fuzz")
        done = report.added + report.updated
    else:
        training = import_completions(ctx, text, actor="fuzz")
        report_errors, done = training.errors, training.recorded + training.unchanged
    errors = report.errors if roster else report_errors
    if not isinstance(rows, list):  # a message: why the file is unusable
        require(errors == [(1, rows)] and done == 0, "an unusable header was not reported once at line 1")
        return
    require(done + len(errors) == len(rows), f"{len(rows)} rows but {done} done and {len(errors)} errors")
    lines = {n for n, _ in rows}
    require(all(n in lines and msg for n, msg in errors), "an error without its row's line or text")


if __name__ == "__main__":
    main(check)
