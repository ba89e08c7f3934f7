"""VPN sign-in through the browser (AnyConnect single sign-on): the attempts and their one-time tokens.

A VPN client begins an attempt (its auth handle); the browser signs the person in on the portal and
concludes it (allowed, or refused with the reasons); the client redeems the token once, from the
address that began it. Everything is in the database, so each step may run in any worker process.
The token is bound to its attempt, lives `TOKEN_LIFETIME`, and only its digest is stored.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from campusvpn.core.codes import token_digest
from campusvpn.core.sso_handoff import new_token
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.service.errors import Forbidden
from campusvpn.store.models import SsoAttempt
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say

TOKEN_LIFETIME = timedelta(minutes=2)  # from the browser's last step to the client's POST
KEEP_FOR = timedelta(days=1)  # ended attempts, for the browser's last page; then deleted
START_PATH, DONE_PATH = "/sso/start", "/sso/done"  # the portal pages of this sign-in
TOKEN_COOKIE, ERROR_COOKIE = "acSamlv2Token", "acSamlv2Error"  # the names Cisco's gateways use


def base_url(ctx: Context) -> str:
    """The gateway's address as people's browsers reach it (its name: passkeys need one)."""
    port = ctx.config.gateway.listen.rpartition(":")[2]
    host = ctx.config.gateway.hostname
    return f"https://{host}" if port == "443" else f"https://{host}:{port}"


def start_url(ctx: Context, handle: str) -> str:
    return f"{base_url(ctx)}{START_PATH}?h={handle}"


def done_url(ctx: Context) -> str:
    return base_url(ctx) + DONE_PATH


@dataclass(frozen=True)
class Attempt:
    handle: str
    protocol: str
    profile: str | None
    external: bool  # the token goes to the client's own listener, sealed to its key
    client_key: str | None
    outcome: dict[str, Any] | None  # None while the browser has not finished


@dataclass(frozen=True)
class Redeemed:
    username: str | None
    profile: str | None
    outcome: dict[str, Any]  # {"ok": bool, "message": English text, ...}


def begin(
    ctx: Context, handle: str, *, protocol: str, profile: str | None, source: str | None, client_key: str | None
) -> None:
    now = ctx.clock.now()
    with ctx.tx() as s:
        s.execute(delete(SsoAttempt).where(SsoAttempt.expires_at < now - KEEP_FOR))
        s.add(
            SsoAttempt(
                handle=handle,
                protocol=protocol,
                profile=profile,
                source=source,
                client_key=client_key,
                created_at=now,
                expires_at=now + ctx.config.gateway.auth_timeout,
            )
        )


def find(ctx: Context, handle: str | None) -> Attempt | None:
    """The attempt, while the browser may still finish it or show its outcome."""
    if not handle or len(handle) > 64:
        return None
    now = ctx.clock.now()
    with ctx.tx() as s:
        row = s.scalars(select(SsoAttempt).where(SsoAttempt.handle == handle)).one_or_none()
        if row is None or (row.outcome is None and row.expires_at <= now):
            return None
        return Attempt(row.handle, row.protocol, row.profile, row.client_key is not None, row.client_key, row.outcome)


def conclude(ctx: Context, handle: str, *, username: str | None, outcome: dict[str, Any]) -> str | None:
    """The browser's result for a pending attempt; returns its one-time token (None: the attempt is
    unknown, expired or already concluded, so nothing is handed on)."""
    now = ctx.clock.now()
    token = new_token()
    with ctx.tx() as s:
        done = s.execute(
            update(SsoAttempt)
            .where(SsoAttempt.handle == handle, SsoAttempt.outcome.is_(None), SsoAttempt.expires_at > now)
            .values(
                username=username,
                outcome=outcome,
                token_digest=token_digest(token),
                token_expires_at=now + TOKEN_LIFETIME,
            )
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return None
        audit.record(
            s,
            now,
            "vpn.sso.concluded",
            actor=username or "-",
            subject=username,
            outcome="ok" if outcome.get("ok") else "refused",
            note=None if outcome.get("ok") else str(outcome.get("message", ""))[:500],
        )
    return token


def redeem(ctx: Context, handle: str | None, token: str, source: str | None) -> Redeemed:
    """The client hands the token back: once, before it expires, for its own attempt (its handle, if
    it has one) and from the address that began the attempt."""
    now = ctx.clock.now()
    with ctx.tx() as s:
        # A client that kept no handle (openfortivpn holds only the id) is found by its token.
        which = SsoAttempt.handle == handle if handle else SsoAttempt.token_digest == token_digest(token)
        row = s.scalars(select(SsoAttempt).where(which)).first()
        good = (
            row is not None
            and row.token_digest is not None
            and hmac.compare_digest(row.token_digest, token_digest(token))
            and row.redeemed_at is None
            and row.token_expires_at is not None
            and row.token_expires_at > now
            and row.source == source
            and row.outcome is not None
        )
        if good and row is not None:
            # Only one of two simultaneous redemptions changes the row.
            taken = s.execute(
                update(SsoAttempt)
                .where(SsoAttempt.id == row.id, SsoAttempt.redeemed_at.is_(None))
                .values(redeemed_at=now)
            )
            good = taken.rowcount == 1  # type: ignore[attr-defined]
        if not good or row is None or row.outcome is None:
            audit.record(s, now, "vpn.sso.token_refused", actor="-", source=source, outcome="refused")
            redeemed = None
        else:
            redeemed = Redeemed(row.username, row.profile, dict(row.outcome))
    if redeemed is None:  # raised after the block, so the audit line is kept
        raise Forbidden(say(Code.ERROR_SSO_TOKEN))
    return redeemed


def said_of(outcome: Mapping[str, Any]) -> tuple[Message, ...]:
    """What a concluded attempt's outcome tells the person (codes and parameters, see portal.sso_pages)."""
    return tuple(Message.from_json(m) for m in outcome.get("said") or ())
