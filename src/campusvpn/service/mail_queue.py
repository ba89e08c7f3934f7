"""The e-mail queue: notices are written in the transaction of the event they tell of, keyed by
that event, and delivered later (service.mail_sender) with retry and back-off. So a notice is
queued once, nothing is lost while the SMTP server is down, and a restart sends nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from campusvpn.service.context import Context
from campusvpn.service.sender import Message, OutboxSender
from campusvpn.store.models import MailMessage

LEASE = timedelta(minutes=5)  # a claimed message is not taken by another sender for this long


def enqueue(
    ctx: Context,
    s: Session,
    *,
    key: str,
    to: str,
    username: str | None,
    subject: str,
    body: str,
    channel: str = "email",
) -> bool:
    """Queue one e-mail (or, with channel="sms", one text message to a phone number; with
    channel="portal", a notice the portal shows) unless one with this key was queued before.
    True if queued now.

    Without an SMTP server configured an e-mail goes to the outbox file at once (development), and
    is recorded as sent; so does an SMS with the outbox sender."""
    if s.scalars(select(MailMessage.id).where(MailMessage.key == key)).first() is not None:
        return False
    now = ctx.clock.now()
    row = MailMessage(
        key=key[:200], channel=channel, username=username, to=to, subject=subject[:300], body=body, created_at=now
    )
    if channel == "portal":  # shown on the portal (and nowhere else): there is nothing to send
        queued = False
    elif channel == "email":
        queued = bool(ctx.config.sender.smtp_host)
    else:
        queued = ctx.config.sender.kind != "outbox"
    if queued:
        row.next_attempt_at = now
    else:
        row.sent_at = now
    try:
        with s.begin_nested():  # another node may queue the same event at the same moment
            s.add(row)
    except sa_exc.IntegrityError:
        return False
    if not queued and channel != "portal":
        text = f"{subject}\n\n{body}" if channel == "email" else body
        OutboxSender(ctx.config.path(ctx.config.sender.outbox)).send(
            Message(to=to, channel=channel, text=text, at=now, username=username or "")
        )
    return True


def claim(ctx: Context, limit: int = 50, channel: str = "email") -> list[MailMessage]:
    """Messages due now, leased to this sender (detached copies to send outside the transaction)."""
    now = ctx.clock.now()
    with ctx.tx() as s:
        rows = s.scalars(
            select(MailMessage)
            .where(
                MailMessage.channel == channel,
                MailMessage.next_attempt_at.is_not(None),
                MailMessage.next_attempt_at <= now,
            )
            .order_by(MailMessage.next_attempt_at, MailMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for r in rows:
            r.next_attempt_at = now + LEASE
        s.flush()
        s.expunge_all()
        return list(rows)


def mark_sent(ctx: Context, message_id: int) -> None:
    with ctx.tx() as s:
        row = s.get(MailMessage, message_id)
        if row is not None:
            row.sent_at, row.next_attempt_at, row.last_error = ctx.clock.now(), None, None
            row.attempts += 1


def mark_failed(ctx: Context, message_id: int, error: str) -> datetime | None:
    """Record the failure and when to try again (doubling from [sender] mail_retry_base)."""
    cfg = ctx.config.sender
    with ctx.tx() as s:
        row = s.get(MailMessage, message_id)
        if row is None:
            return None
        row.attempts += 1
        row.last_error = error[:500]
        wait = min(cfg.mail_retry_base * (2 ** min(row.attempts - 1, 20)), cfg.mail_retry_max)
        row.next_attempt_at = ctx.clock.now() + wait
        return row.next_attempt_at


def listing(ctx: Context, *, include_sent: bool = False, limit: int = 200) -> dict[str, Any]:
    """The queue for admins: waiting and failing messages first, with the last error."""
    with ctx.tx() as s:
        q = select(MailMessage).order_by(MailMessage.id.desc()).limit(limit)
        if not include_sent:
            q = q.where(MailMessage.sent_at.is_(None))
        rows = s.scalars(q).all()
        waiting = s.scalar(select(func.count()).where(MailMessage.sent_at.is_(None))) or 0
        failing = s.scalar(select(func.count()).where(MailMessage.sent_at.is_(None), MailMessage.attempts > 0)) or 0
        return {
            "waiting": waiting,
            "failing": failing,
            "messages": [
                {
                    "id": r.id,
                    "channel": r.channel,
                    "key": r.key,
                    "username": r.username,
                    "to": r.to,
                    "subject": r.subject,
                    "created_at": r.created_at.isoformat(),
                    "attempts": r.attempts,
                    "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
                    "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                    "last_error": r.last_error,
                }
                for r in rows
            ],
        }


def overview(ctx: Context, days: int = 30) -> dict[str, Any]:
    """Delivery by channel for the admin console: sent in the last `days`, waiting, failing, and
    the failing messages with their last error (portal copies are shown, never sent)."""
    since = ctx.clock.now() - timedelta(days=days)
    with ctx.tx() as s:
        waiting = MailMessage.sent_at.is_(None)

        def count(cond: Any) -> Any:
            return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

        # One row per channel, counted with CASE (PostgreSQL groups by columns, not by expressions).
        counts: dict[str, dict[str, int]] = {
            channel: {"sent": int(sent), "waiting": int(wait), "failing": int(fail)}
            for channel, sent, wait, fail in s.execute(
                select(
                    MailMessage.channel,
                    count(MailMessage.sent_at.is_not(None)),
                    count(waiting),
                    count(waiting & (MailMessage.attempts > 0)),
                )
                .where(waiting | (MailMessage.sent_at >= since))
                .group_by(MailMessage.channel)
            )
        }
        failing = s.scalars(
            select(MailMessage)
            .where(MailMessage.sent_at.is_(None), MailMessage.attempts > 0)
            .order_by(MailMessage.next_attempt_at)
            .limit(100)
        ).all()
        return {
            "days": days,
            "channels": counts,
            "failing": [
                {
                    "id": r.id,
                    "channel": r.channel,
                    "username": r.username,
                    "to": r.to,
                    "subject": r.subject or r.body[:80],
                    "attempts": r.attempts,
                    "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
                    "last_error": r.last_error,
                }
                for r in failing
            ],
        }
