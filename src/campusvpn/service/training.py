"""Security-training completions: import, and who has done this year's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.core.calendar import fiscal_year_bounds, fiscal_year_of, local_day
from campusvpn.core.policy import continuous_since, training_deadline
from campusvpn.core.usernames import InvalidUsername
from campusvpn.service import audit
from campusvpn.service.accounts import csv_rows, facts, parse_date
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid
from campusvpn.store.models import TrainingRecord, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say


@dataclass
class TrainingImport:
    recorded: int = 0
    unchanged: int = 0
    errors: list[tuple[int, Message]] = field(default_factory=list)


def import_completions(
    ctx: Context, text: str, *, actor: str, progress: Callable[[int], None] | None = None
) -> TrainingImport:
    """CSV `username,completed_on`. A completion counts for the fiscal year it falls in."""
    report = TrainingImport()
    rows = csv_rows(text, ("username", "completed_on"))
    if not isinstance(rows, list):  # why the file is unusable
        report.errors.append((1, rows))
        return report
    fy_start = ctx.policy.fiscal_year_start
    today = local_day(ctx.clock.now(), ctx.policy.zone)
    for lineno, row in rows:
        try:
            if "__error__" in row:
                raise Invalid(say(Code.ERROR_CSV_MORE_FIELDS))
            name = ctx.usernames.normalise(row.get("username", ""))
            day = parse_date(row.get("completed_on", ""), "completed_on")
            if day > today:
                raise Invalid(say(Code.ERROR_COMPLETED_FUTURE, day=day))
            fy = fiscal_year_of(day, fy_start)
            with ctx.tx() as s:
                user = s.scalars(select(User).where(User.username == name)).one_or_none()
                if user is None:
                    raise Invalid(say(Code.ERROR_NO_ACCOUNT, username=name))
                rec = s.scalars(
                    select(TrainingRecord).where(TrainingRecord.user_id == user.id, TrainingRecord.fiscal_year == fy)
                ).one_or_none()
                if rec is not None and rec.completed_on <= day:
                    report.unchanged += 1
                else:
                    if rec is None:
                        s.add(
                            TrainingRecord(
                                user_id=user.id, fiscal_year=fy, completed_on=day, imported_at=ctx.clock.now()
                            )
                        )
                    else:
                        rec.completed_on = day  # keep the earliest completion of the year
                    audit.record(
                        s,
                        ctx.clock.now(),
                        "training.recorded",
                        actor=actor,
                        subject=name,
                        fiscal_year=fy,
                        completed_on=day.isoformat(),
                    )
                    report.recorded += 1
        except (Invalid, InvalidUsername) as exc:
            report.errors.append((lineno, exc.said))
        if progress:
            progress(1)
    return report


def completions(s: Session, user: User) -> list[tuple[int, date]]:
    """(fiscal year, day completed) of each training the user has done, oldest first."""
    rows = s.scalars(
        select(TrainingRecord).where(TrainingRecord.user_id == user.id).order_by(TrainingRecord.fiscal_year)
    )
    return [(r.fiscal_year, r.completed_on) for r in rows]


def status(ctx: Context, fiscal_year: int | None = None) -> dict[str, object]:
    """Per user: done, exempt (joined after the window closed), or missing, for a fiscal year."""
    now = ctx.clock.now()
    today = local_day(now, ctx.policy.zone)
    fy = fiscal_year if fiscal_year is not None else fiscal_year_of(today, ctx.policy.fiscal_year_start)
    rows: list[dict[str, object]] = []
    counts = {"done": 0, "exempt": 0, "missing": 0, "not_required": 0}
    with ctx.tx() as s:
        for user in s.scalars(select(User).where(User.status != "revoked").order_by(User.username)):
            f = facts(ctx, s, user)
            done = [d for d in f.training_completed if fiscal_year_of(d, ctx.policy.fiscal_year_start) == fy]
            aff = continuous_since(f.affiliations, min(today, fiscal_year_bounds(fy, ctx.policy.fiscal_year_start)[1]))
            window = training_deadline(aff.role, fy, ctx.policy) if aff else None
            if done:
                state = "done"
            elif aff is None or window is None:
                state = "not_required"
            elif aff.start > window[1]:
                state = "exempt"
            else:
                state = "missing"
            counts[state] += 1
            rows.append(
                {
                    "username": user.username,
                    "role": aff.role if aff else None,
                    "state": state,
                    "completed_on": done[0].isoformat() if done else None,
                    "deadline": window[1].isoformat() if window else None,
                }
            )
    return {"fiscal_year": fy, "counts": counts, "users": rows}
