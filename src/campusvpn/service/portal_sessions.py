"""Portal (web) sessions kept in the database (so several nodes share them and an admin can end them).

The browser holds a random token; the table holds its SHA-256. Every change of privilege
(password accepted, sign-in complete) moves the session to a new token: a token planted
before sign-in is worthless after it (session fixation).

Nothing is stored until a browser submits a form: before that it holds a *pre-session*, a random
token in its cookie whose CSRF token is that token sealed with the secret box (so forms need
no row, any node can check them, and anonymous page loads cannot grow the database)."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from campusvpn.core.codes import token_digest
from campusvpn.core.policy import AccountStatus
from campusvpn.platform.secretbox import SecretBoxError
from campusvpn.service.context import Context
from campusvpn.store.models import User, WebSession


@dataclass
class Current:
    """The request's view of its session row (detached; saved with `save`); `id` None: a
    pre-session, not stored."""

    id: int | None
    token: str
    csrf: str
    username: str | None
    signin: dict[str, Any] | None
    signed_in_at: datetime | None
    second_factor_at: datetime | None
    flash: dict[str, Any] | None
    rotated: bool = False
    # The account is active now (read with the session at every request): admin power needs it.
    account_active: bool = False

    @property
    def signed_in(self) -> bool:
        return self.username is not None and self.signed_in_at is not None

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf, str(sent))


def load(ctx: Context, token: str | None) -> Current | None:
    if not token or len(token) > 100:
        return None
    now = ctx.clock.now()
    idle = ctx.config.portal.idle_timeout
    with ctx.tx() as s:
        row = s.scalars(select(WebSession).where(WebSession.token_digest == token_digest(token))).one_or_none()
        if row is None:
            return None
        if row.expires_at <= now or now - row.last_seen_at > idle:
            s.delete(row)
            return None
        row.last_seen_at = now
        status = (
            s.scalars(select(User.status).where(User.username == row.username)).one_or_none() if row.username else None
        )
        return Current(
            row.id,
            token,
            row.csrf,
            row.username,
            row.signin,
            row.signed_in_at,
            row.second_factor_at,
            row.flash,
            account_active=status == AccountStatus.ACTIVE.value,
        )


_PRE = "portal.presession"


def pre_session(ctx: Context, token: str | None) -> Current:
    """The session of a browser that has submitted no form yet: nothing is stored. `token` is
    the cookie it sent (kept, so its forms stay valid), or None for a new one."""
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
    sealed = ctx.box.seal(f"{token}|{int(ctx.clock.now().timestamp())}".encode(), _PRE)
    return Current(None, token, base64.urlsafe_b64encode(sealed).decode(), None, None, None, None, None)


def is_pre_session_token(ctx: Context, sent: str) -> bool:
    """Whether `sent` is a pre-session's CSRF token at all (for whichever cookie): a form from a page
    shown before any sign-in, as opposed to one from a signed-in page whose session has since ended."""
    try:
        ctx.box.open(base64.urlsafe_b64decode(sent), _PRE)
    except (SecretBoxError, binascii.Error, ValueError):
        return False
    return True


def pre_session_csrf_ok(ctx: Context, cur: Current, sent: str | None) -> bool:
    """The form's CSRF token was made for this pre-session's cookie, within a session's lifetime."""
    if not sent or len(sent) > 400:
        return False
    try:
        token, _, issued = ctx.box.open(base64.urlsafe_b64decode(sent), _PRE).decode().rpartition("|")
        age = ctx.clock.now().timestamp() - int(issued)
    except (SecretBoxError, binascii.Error, ValueError):
        return False
    return hmac.compare_digest(token, cur.token) and 0 <= age <= ctx.config.portal.session_lifetime.total_seconds()


def store(ctx: Context, cur: Current, source: str | None, user_agent: str | None) -> None:
    """Store a pre-session (its browser submitted a valid form): it gets a row and a CSRF secret."""
    stored = create(ctx, source, user_agent, token=cur.token)
    cur.id, cur.csrf = stored.id, stored.csrf


def create(ctx: Context, source: str | None, user_agent: str | None, *, token: str | None = None) -> Current:
    now = ctx.clock.now()
    token = token or secrets.token_urlsafe(32)
    with ctx.tx() as s:
        # Expired rows of anyone are swept here: sessions are created far less often than used.
        s.execute(delete(WebSession).where(WebSession.expires_at <= now))
        row = WebSession(
            token_digest=token_digest(token),
            csrf=secrets.token_urlsafe(32),
            source=source,
            user_agent=(user_agent or "")[:200],
            created_at=now,
            last_seen_at=now,
            expires_at=now + ctx.config.portal.session_lifetime,
        )
        s.add(row)
        s.flush()
        return Current(row.id, token, row.csrf, None, None, None, None, None)


def save(ctx: Context, cur: Current, *, rotate: bool = False) -> None:
    """Write the request's changes back; with `rotate`, the session gets a new token and CSRF secret."""
    if cur.id is None:
        return  # a pre-session: nothing to write
    with ctx.tx() as s:
        row = s.get(WebSession, cur.id)
        if row is None:
            return
        row.username, row.signin, row.flash = cur.username, cur.signin, cur.flash
        row.signed_in_at, row.second_factor_at = cur.signed_in_at, cur.second_factor_at
        if rotate:
            cur.token = secrets.token_urlsafe(32)
            cur.csrf = secrets.token_urlsafe(32)
            row.token_digest, row.csrf = token_digest(cur.token), cur.csrf
            cur.rotated = True


def end(ctx: Context, cur: Current) -> None:
    if cur.id is None:
        return
    with ctx.tx() as s:
        s.execute(delete(WebSession).where(WebSession.id == cur.id))


def end_for_user(s: Session, username: str) -> int:
    """Sign the user out of the portal everywhere (account closed or suspended, MFA reset)."""
    return s.execute(delete(WebSession).where(WebSession.username == username)).rowcount or 0  # type: ignore[attr-defined]
