"""VPN sessions: opened at sign-in, resumed by cookie, ended in exactly one place.

A session (this row) outlives its TLS connections. Everything that ends a user's right to
connect — sign-out, an administrator, suspension, revocation, MFA reset, a policy change —
calls `end_for_user` or `end`; gateways see the ended rows within a second and close the tunnels
with the recorded reason.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campusvpn.core.addresses import allocate
from campusvpn.core.codes import token_digest
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, NotFound
from campusvpn.store.models import User, VpnSession
from campusvpn.texts import stored
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.texts.render import render

# Why a session ended: a message (stored with its code, rendered in the reader's language) or, for
# the tunnel's own log reasons, plain text.
Reason = Message | tuple[Message, ...] | str
END_REASON_MAX = 1000  # the column's length


@dataclass(frozen=True)
class Opened:
    token: str  # the webvpn cookie; only its digest is stored
    session: VpnSession


def _live(now: datetime) -> ColumnElement[bool]:
    """A session is live until it ends or reaches its time limit."""
    return and_(VpnSession.ended_at.is_(None), VpnSession.expires_at > now)


def live_query(now: datetime) -> Select[VpnSession]:
    return select(VpnSession).where(_live(now))


def expire_stale(ctx: Context, s: Session) -> int:
    """End sessions past their time limit, and detached ones not resumed within the disconnected timeout."""
    now = ctx.clock.now()
    stale = s.scalars(
        select(VpnSession)
        .where(VpnSession.ended_at.is_(None))
        .where(
            (VpnSession.expires_at <= now)
            | (
                VpnSession.connected.is_(False)
                & (VpnSession.last_seen_at < now - ctx.config.gateway.disconnected_timeout)
            )
        )
    ).all()
    for row in stale:
        why = "session time limit reached" if row.expires_at <= now else "the disconnected session timed out"
        _end(s, row, now, why, actor=audit.SYSTEM)
    return len(stale)


def detach_node(ctx: Context, node: str) -> int:
    """A gateway (re)starting: its sessions have no live connection any more, but may resume."""
    with ctx.tx() as s:
        rows = s.scalars(
            select(VpnSession).where(
                VpnSession.ended_at.is_(None), VpnSession.node == node, VpnSession.connected.is_(True)
            )
        ).all()
        for row in rows:
            row.connected, row.last_seen_at = False, ctx.clock.now()
        return len(rows)


def open_session(
    ctx: Context,
    s: Session,
    user: User,
    *,
    profile: str | None,
    pool: str,
    source: str | None,
    client: str | None,
    protocol: str = "anyconnect",
) -> Opened:
    now = ctx.clock.now()
    expire_stale(ctx, s)  # dead sessions must not count against the limit or hold addresses
    limit = ctx.config.gateway.max_sessions_per_user
    mine = s.scalar(select(func.count()).select_from(VpnSession).where(_live(now), VpnSession.user_id == user.id)) or 0
    if mine >= limit:
        raise Conflict(say(Code.ERROR_TOO_MANY_SESSIONS, n=mine))
    previous = s.scalars(
        select(VpnSession.address).where(VpnSession.user_id == user.id).order_by(VpnSession.started_at.desc()).limit(1)
    ).first()
    for _ in range(5):  # another node may take the same address between our read and our insert
        taken = s.scalars(select(VpnSession.address).where(VpnSession.ended_at.is_(None)))
        address = allocate(pool, taken, previous)
        if address is None:
            raise Conflict(say(Code.ERROR_NO_ADDRESS, helpdesk=ctx.config.service.helpdesk))
        token = secrets.token_urlsafe(32)
        row = VpnSession(
            public_id=secrets.token_hex(6),
            token_digest=token_digest(token),
            user_id=user.id,
            username=user.username,
            profile=profile,
            address=address,
            source=source,
            client=(client or "")[:200] or None,
            protocol=protocol,
            started_at=now,
            expires_at=now + ctx.config.gateway.session_timeout,
            last_seen_at=now,
            connected=False,
        )
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            previous = None
            continue
        audit.record(
            s,
            now,
            "vpn.session.opened",
            actor=user.username,
            subject=user.username,
            source=source,
            session=row.public_id,
            address=address,
            profile=profile,
            protocol=protocol,
        )
        return Opened(token, row)
    raise Conflict(say(Code.ERROR_ADDRESS_RACE))


def resumable(ctx: Context, s: Session, token: str) -> VpnSession | None:
    """The live session this cookie names, if it may (re)connect now."""
    now = ctx.clock.now()
    row: VpnSession | None = s.scalars(
        live_query(now).where(VpnSession.token_digest == token_digest(token))
    ).one_or_none()
    if row is None:
        return None
    if not row.connected and now - row.last_seen_at > ctx.config.gateway.disconnected_timeout:
        _end(s, row, now, say(Code.SESSION_DISCONNECTED_TIMEOUT), actor=audit.SYSTEM)
        return None
    return row


def _end(s: Session, row: VpnSession, now: datetime, reason: Reason, *, actor: str) -> None:
    if row.ended_at is not None:
        return
    english = reason if isinstance(reason, str) else render(reason, "en")
    kept = reason if isinstance(reason, str) else stored.dump(reason)
    if len(kept) > END_REASON_MAX:  # a long free-text reason: its English still reaches the client
        kept = english
    row.ended_at, row.end_reason, row.connected = now, kept[:END_REASON_MAX], False
    audit.record(
        s,
        now,
        "vpn.session.ended",
        actor=actor,
        subject=row.username,
        session=row.public_id,
        address=row.address,
        bytes_in=row.bytes_in,
        bytes_out=row.bytes_out,
        note=english,
    )


def end(ctx: Context, s: Session, row: VpnSession, reason: Reason, *, actor: str) -> None:
    _end(s, row, ctx.clock.now(), reason, actor=actor)


def end_for_user(s: Session, user: User, now: datetime, reason: Reason, *, actor: str) -> int:
    rows = list(s.scalars(select(VpnSession).where(VpnSession.user_id == user.id, VpnSession.ended_at.is_(None))))
    for row in rows:
        _end(s, row, now, reason, actor=actor)
    return len(rows)


def kill(
    ctx: Context,
    *,
    session_id: str | None = None,
    username: str | None = None,
    actor: str,
    reason: str | Message | None = None,
) -> int:
    """End a session (or all of a user's): `reason` is the administrator's own words (None: none
    given), or a message the caller says."""
    said = (
        reason
        if isinstance(reason, Message)
        else say(Code.SESSION_ENDED_BY_ADMIN, reason=reason)
        if reason
        else say(Code.SESSION_ADMIN_RESET)
    )
    with ctx.tx() as s:
        now = ctx.clock.now()
        if username is not None:
            return end_for_user(s, ctx.user(s, username), now, said, actor=actor)
        row = s.scalars(
            select(VpnSession).where(VpnSession.public_id == session_id, VpnSession.ended_at.is_(None))
        ).one_or_none()
        if row is None:
            raise NotFound(say(Code.ERROR_NO_SESSION, session=str(session_id)))
        _end(s, row, now, said, actor=actor)
        return 1


class Mark(NamedTuple):
    """A gateway's note about one session: traffic (deltas) and whether a connection is attached."""

    public_id: str
    connected: bool | None  # None: traffic only; the connection state is someone else's to set
    bytes_in: int = 0
    bytes_out: int = 0
    # The connection state is left alone if the session was seen after this (it has reconnected).
    unless_seen_after: datetime | None = None


def mark(
    ctx: Context,
    public_id: str,
    *,
    connected: bool | None,
    node: str | None = None,
    bytes_in: int = 0,
    bytes_out: int = 0,
    unless_seen_after: datetime | None = None,
) -> None:
    """Record traffic (deltas) and whether a connection is attached, for one session."""
    mark_many(ctx, [Mark(public_id, connected, bytes_in, bytes_out, unless_seen_after)], node=node)


def mark_many(ctx: Context, marks: list[Mark], *, node: str | None) -> None:
    """Many sessions' marks in one transaction: after a mass disconnect, one write instead of thousands
    of small ones queueing for the database lock."""
    if not marks:
        return
    now = ctx.clock.now()
    with ctx.tx() as s:
        for m in marks:
            if m.bytes_in or m.bytes_out:
                s.execute(
                    update(VpnSession)
                    .where(VpnSession.public_id == m.public_id)
                    .values(bytes_in=VpnSession.bytes_in + m.bytes_in, bytes_out=VpnSession.bytes_out + m.bytes_out)
                )
            if m.connected is None:
                continue
            # An ended session stays ended: a late "still connected" from a gateway's traffic flush
            # must not mark it connected again.
            q = update(VpnSession).where(VpnSession.public_id == m.public_id, VpnSession.ended_at.is_(None))
            if m.unless_seen_after is not None:
                q = q.where(VpnSession.last_seen_at <= m.unless_seen_after)
            if node is not None:  # a session another gateway (worker) took over is that one's to mark
                q = q.where(or_(VpnSession.node.is_(None), VpnSession.node == node))
            s.execute(q.values(connected=m.connected, node=node, last_seen_at=now))


def listing(ctx: Context, *, live_only: bool = True, username: str | None = None) -> list[dict[str, object]]:
    with ctx.tx() as s:
        now = ctx.clock.now()
        q: Select[VpnSession] = live_query(now) if live_only else select(VpnSession)
        if username is not None:
            q = q.where(VpnSession.username == ctx.usernames.normalise(username))
        return [
            {
                "id": r.public_id,
                "user": r.username,
                "address": r.address,
                "source": r.source,
                "profile": r.profile,
                "client": r.client,
                "protocol": r.protocol,
                "start": r.started_at.isoformat(),
                "expires": r.expires_at.isoformat(),
                "connected": r.connected,
                "node": r.node,  # the gateway (HOST, or HOST/N for worker N) holding or last holding its tunnel
                "bytes_in": r.bytes_in,
                "bytes_out": r.bytes_out,
                "ended": r.ended_at.isoformat() if r.ended_at else None,
                "end_reason": stored.render_stored(r.end_reason, "en") if r.end_reason else None,
                "end_reason_ja": stored.render_stored(r.end_reason, "ja") if r.end_reason else None,
            }
            for r in s.scalars(q.order_by(VpnSession.started_at))
        ]
