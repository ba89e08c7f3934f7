"""Read-only views of an account for staff: the command line's `user show` and the admin console.

Never a secret: no hashes, seeds or codes, only what they are for."""

from __future__ import annotations

from typing import Any

from campusvpn.core.policy import Decision
from campusvpn.service import accounts, audit, eligibility, training
from campusvpn.service.context import Context


def overview(ctx: Context, username: str) -> tuple[dict[str, object], Decision]:
    """The account as `describe` gives it, with the VPN decision for now."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        return accounts.describe(ctx, s, user), eligibility.decision_for(ctx, s, user)


def staff_view(ctx: Context, username: str, *, audit_limit: int = 200) -> dict[str, Any]:
    """The account, its current role, training completions and its newest audit events."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        out: dict[str, Any] = accounts.describe(ctx, s, user)
        out["role"] = accounts.current_role(ctx, s, user)
        out["training"] = [
            {"fiscal_year": year, "completed_on": day.isoformat()} for year, day in training.completions(s, user)
        ]
        out["audit"] = [
            audit.as_dict(e) for e in audit.query(s, subject=user.username, limit=audit_limit, newest_first=True)
        ]
    return out


def role_of(ctx: Context, username: str) -> str | None:
    """The role of the affiliation in force today (None outside every affiliation period)."""
    with ctx.tx() as s:
        return accounts.current_role(ctx, s, ctx.user(s, username))
