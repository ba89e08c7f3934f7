"""Admin use cases shared by the console pages and the JSON API (one set of rules for both)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from campusvpn.core.policy import AccountStatus
from campusvpn.service import account_views, accounts, eligibility, mfa, recovery_pass, sessions, training
from campusvpn.service.context import Context
from campusvpn.service.errors import Invalid
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.texts.render import render


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
        raise Invalid(say(Code.ERROR_UNKNOWN_STATUS, status=status)) from exc
    if st is not AccountStatus.ACTIVE and not reason.strip():
        raise Invalid(say(Code.ERROR_STATUS_REASON))
    accounts.set_status(ctx, username, st, actor=actor, reason=reason.strip() or None)


def reset_mfa(ctx: Context, username: str, reason: str, *, actor: str) -> None:
    mfa.reset(ctx, username, actor=actor, reason=reason)


def issue_pass(ctx: Context, username: str, reason: str, *, actor: str) -> tuple[str, datetime]:
    return recovery_pass.issue(ctx, username, actor=actor, reason=reason)


def kill_session(ctx: Context, session_id: str, reason: str, *, actor: str) -> int:
    """End one VPN session; the reason is audited and is what the VPN client is told."""
    if not reason.strip():
        raise Invalid(say(Code.ERROR_KILL_REASON))
    return sessions.kill(ctx, session_id=session_id, actor=actor, reason=reason.strip())


def import_roster(ctx: Context, text: str, *, actor: str) -> dict[str, Any]:
    r = accounts.import_users(ctx, text, actor=actor)
    return {
        "applied": r.added + r.updated,
        "added": r.added,
        "updated": r.updated,
        "errors": _errors(r.errors),
    }


def import_training(ctx: Context, text: str, *, actor: str) -> dict[str, Any]:
    r = training.import_completions(ctx, text, actor=actor)
    return {"applied": r.recorded, "unchanged": r.unchanged, "errors": _errors(r.errors)}


def _errors(errors: list[tuple[int, Message]]) -> list[dict[str, Any]]:
    """Each rejected line: its code and English (the API) and the message (the page renders it)."""
    return [{"line": n, "code": e.code.value, "error": render(e, "en"), "said": e} for n, e in errors]
