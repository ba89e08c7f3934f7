"""Trusted devices: "skip the code on this device for N days" — listable, revocable, never silent."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campusvpn.core.codes import new_device_token, token_digest
from campusvpn.service import audit
from campusvpn.service.context import Context
from campusvpn.service.errors import NotFound
from campusvpn.store.models import TrustedDevice, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say


@dataclass(frozen=True)
class IssuedDevice:
    token: str  # given to the client once; only its digest is stored
    public_id: str
    expires_at: datetime


def trust_device(ctx: Context, s: Session, user: User, label: str, source: str | None) -> IssuedDevice:
    now = ctx.clock.now()
    token = new_device_token()
    dev = TrustedDevice(
        public_id=secrets.token_hex(8),
        user_id=user.id,
        token_digest=token_digest(token),
        label=(label or "unnamed device")[:200],
        source=source,
        created_at=now,
        expires_at=now + ctx.config.trusted_devices.lifetime,
    )
    s.add(dev)
    s.flush()
    audit.record(
        s,
        now,
        "device.trusted",
        actor=user.username,
        subject=user.username,
        source=source,
        device=dev.public_id,
        label=dev.label,
        expires=dev.expires_at.isoformat(),
    )
    live = active_devices(s, user, now)
    for old in live[: max(0, len(live) - ctx.config.trusted_devices.max_per_user)]:
        _revoke(s, old, now, actor=audit.SYSTEM, reason="too many trusted devices; oldest removed")
    return IssuedDevice(token, dev.public_id, dev.expires_at)


def active_devices(s: Session, user: User, now: datetime) -> list[TrustedDevice]:
    q = (
        select(TrustedDevice)
        .where(
            TrustedDevice.user_id == user.id,
            TrustedDevice.revoked_at.is_(None),
            TrustedDevice.expires_at > now,
        )
        .order_by(TrustedDevice.created_at, TrustedDevice.id)
    )
    return list(s.scalars(q))


def check_device(ctx: Context, s: Session, user: User, token: str, source: str | None) -> TrustedDevice | None:
    """The device this token names, if it is trusted for this user now. Expiry never moves."""
    if not token:
        return None
    now = ctx.clock.now()
    dev = s.scalars(select(TrustedDevice).where(TrustedDevice.token_digest == token_digest(token))).one_or_none()
    if dev is None or dev.user_id != user.id or dev.revoked_at is not None or dev.expires_at <= now:
        return None
    dev.last_used_at = now
    audit.record(s, now, "device.used", actor=user.username, subject=user.username, source=source, device=dev.public_id)
    return dev


def _revoke(s: Session, dev: TrustedDevice, now: datetime, *, actor: str, reason: str) -> None:
    dev.revoked_at, dev.revoked_reason = now, reason[:100]
    audit.record(s, now, "device.revoked", actor=actor, subject=None, device=dev.public_id, note=reason)


def revoke_device(ctx: Context, username: str, public_id: str, *, actor: str) -> None:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        dev = s.scalars(
            select(TrustedDevice).where(TrustedDevice.public_id == public_id, TrustedDevice.user_id == user.id)
        ).one_or_none()
        if dev is None or dev.revoked_at is not None:
            raise NotFound(say(Code.ERROR_NO_DEVICE, username=user.username, device=public_id))
        _revoke(s, dev, ctx.clock.now(), actor=actor, reason="revoked")
        audit.record(s, ctx.clock.now(), "device.revoked.user", actor=actor, subject=user.username, device=public_id)


def revoke_all_devices(s: Session, user: User, now: datetime, *, actor: str, reason: str) -> int:
    live = s.scalars(
        select(TrustedDevice).where(TrustedDevice.user_id == user.id, TrustedDevice.revoked_at.is_(None))
    ).all()
    for dev in live:
        dev.revoked_at, dev.revoked_reason = now, reason[:100]
    if live:
        audit.record(s, now, "device.revoked_all", actor=actor, subject=user.username, count=len(live), note=reason)
    return len(live)


def list_devices(ctx: Context, username: str) -> list[dict[str, object]]:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        now = ctx.clock.now()
        return [
            {
                "id": d.public_id,
                "label": d.label,
                "source": d.source,
                "first_used": d.created_at.isoformat(),
                "last_used": d.last_used_at.isoformat() if d.last_used_at else None,
                "expires": d.expires_at.isoformat(),
            }
            for d in active_devices(s, user, now)
        ]


def revoke_all(ctx: Context, username: str, *, actor: str, reason: str) -> int:
    with ctx.tx() as s:
        return revoke_all_devices(s, ctx.user(s, username), ctx.clock.now(), actor=actor, reason=reason)
