"""Admin use cases shared by the console pages and the JSON API (one set of rules for both)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from campusvpn.core.policy import AccountStatus
from campusvpn.service import account_views, accounts, eligibility, mfa, recovery_pass, sessions, training
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid


def user_detail(ctx: Context, username: str) -> dict[str, Any]:
    """Everything staff may see of one account: never a secret."""
    out = account_views.staff_view(ctx, username)
    out["mfa"] = mfa.show(ctx, username)
    out["eligibility"] = eligibility.as_json(eligibility.check(ctx, username))
    out["sessions"] = sessions.listing(ctx, username=username)
    return out


def set_status(ctx: Context, username: str, status: str, reason: str, *, actor: str) -> None:
    try:
        st = AccountStatus(status)
    except ValueError as exc:
        raise Invalid(f"status {status!r} is not one of active, suspended, revoked") from exc
    if st is not AccountStatus.ACTIVE and not reason.strip():
        raise Invalid("say why (the reason is shown to the user and kept in the audit trail)")
    accounts.set_status(ctx, username, st, actor=actor, reason=reason.strip() or None)


def reset_mfa(ctx: Context, username: str, reason: str, *, actor: str) -> None:
    mfa.reset(ctx, username, actor=actor, reason=reason)


def issue_pass(ctx: Context, username: str, reason: str, *, actor: str) -> tuple[str, datetime]:
    return recovery_pass.issue(ctx, username, actor=actor, reason=reason)


def kill_session(ctx: Context, session_id: str, reason: str, *, actor: str) -> int:
    """End one VPN session; the reason is audited and is what the VPN client is told."""
    if not reason.strip():
        raise Invalid("say why the session is ended (kept in the audit trail and shown by the VPN client)")
    return sessions.kill(ctx, session_id=session_id, actor=actor, reason=reason.strip())


def import_roster(ctx: Context, text: str, *, actor: str) -> dict[str, Any]:
    r = accounts.import_users(ctx, text, actor=actor)
    return {
        "applied": r.added + r.updated,
        "added": r.added,
        "updated": r.updated,
        "errors": [{"line": n, "error": e} for n, e in r.errors],
    }


def import_training(ctx: Context, text: str, *, actor: str) -> dict[str, Any]:
    r = training.import_completions(ctx, text, actor=actor)
    return {"applied": r.recorded, "unchanged": r.unchanged, "errors": [{"line": n, "error": e} for n, e in r.errors]}
