"""The audit trail: every security-relevant event, never a secret."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campusvpn.store.models import AuditEvent

if TYPE_CHECKING:
    from campusvpn.service.context import Context

SYSTEM = "system"  # the actor of what the service does by itself (timeouts, limits)
_FORBIDDEN_KEYS = {"password", "code", "secret", "token", "codes"}


def record(
    s: Session,
    at: datetime,
    event: str,
    *,
    actor: str,
    subject: str | None = None,
    source: str | None = None,
    outcome: str = "ok",
    note: str | None = None,
    **detail: Any,
) -> None:
    leaked = _FORBIDDEN_KEYS & detail.keys()
    if leaked:  # a programming error, caught by tests, never a user's
        raise ValueError(f"audit detail must not hold secrets: {sorted(leaked)}")
    s.add(
        AuditEvent(
            at=at,
            event=event,
            actor=actor,
            subject=subject,
            source=source,
            outcome=outcome,
            note=note,
            detail=detail,
        )
    )


def query(
    s: Session,
    *,
    subject: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
    newest_first: bool = False,
) -> list[AuditEvent]:
    if newest_first:
        q = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    else:
        q = select(AuditEvent).order_by(AuditEvent.at, AuditEvent.id)
    if subject is not None:
        q = q.where(AuditEvent.subject == subject)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    return list(s.scalars(q.limit(limit)))


def as_dict(e: AuditEvent) -> dict[str, Any]:
    """One event as plain values (for JSON and pages)."""
    return {
        "at": e.at.isoformat(),
        "event": e.event,
        "actor": e.actor,
        "subject": e.subject,
        "source": e.source,
        "outcome": e.outcome,
        "note": e.note,
        "detail": e.detail,
    }


def listing(
    ctx: Context, *, subject: str | None = None, since: datetime | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The trail, oldest first, as plain values."""
    with ctx.tx() as s:
        return [as_dict(e) for e in query(s, subject=subject, since=since, limit=limit)]


def search(
    ctx: Context,
    *,
    subject: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the trail, newest first, and how many events match in all (the console's
    filters: one account, an event or its family by prefix ("mfa." or "mfa.reset"), a time range)."""
    conds = []
    if subject:
        conds.append(AuditEvent.subject == subject)
    if event:
        conds.append(AuditEvent.event.startswith(event, autoescape=True))
    if since is not None:
        conds.append(AuditEvent.at >= since)
    if until is not None:
        conds.append(AuditEvent.at < until)
    with ctx.tx() as s:
        total = s.scalar(select(func.count()).select_from(AuditEvent).where(*conds)) or 0
        q = select(AuditEvent).where(*conds).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        rows = s.scalars(q.offset(max(offset, 0)).limit(limit))
        return [as_dict(e) for e in rows], int(total)
