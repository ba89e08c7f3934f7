"""Accounts: creation, roster import, affiliation periods, status changes, passwords."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from campusvpn.core.calendar import local_day
from campusvpn.core.lifecycle import gap_day
from campusvpn.core.policy import AccountFacts, AccountStatus, continuous_since
from campusvpn.core.policy import Affiliation as AffiliationPeriod
from campusvpn.core.usernames import InvalidUsername
from campusvpn.service import api_tokens, audit, portal_sessions, sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Invalid
from campusvpn.service.mfa_methods import method_summary
from campusvpn.service.trusted import revoke_all_devices
from campusvpn.store.models import Affiliation, TrainingRecord, TrustedDevice, User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
IMPORT_COLUMNS = ("username", "name", "role", "email", "from", "until")


@dataclass(frozen=True)
class NewUser:
    username: str
    role: str
    name: str | None = None
    email: str | None = None
    start: date | None = None
    end: date | None = None


def parse_date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise Invalid(say(Code.ERROR_NOT_A_DATE, what=what, value=text)) from exc


MAX_NAME = 100


def _validate(ctx: Context, new: NewUser) -> NewUser:
    try:
        username = ctx.usernames.normalise(new.username)
    except InvalidUsername as exc:
        raise Invalid(exc.said) from exc
    if new.role not in ctx.config.service.roles:
        raise Invalid(say(Code.ERROR_UNKNOWN_ROLE, role=new.role, roles=", ".join(ctx.config.service.roles)))
    name = " ".join((new.name or "").split())
    if len(name) > MAX_NAME:  # the column holds 200; a person's name on a page needs far less
        raise Invalid(say(Code.ERROR_NAME_LONG, n=len(name), most=MAX_NAME))
    if any(not ch.isprintable() for ch in name):
        raise Invalid(say(Code.ERROR_NAME_CONTROL))
    if new.email and len(new.email) > 254:
        raise Invalid(say(Code.ERROR_EMAIL_LONG))
    if new.email and not _EMAIL.match(new.email):
        raise Invalid(say(Code.ERROR_EMAIL_FORM, email=new.email))
    if new.start and new.end and new.end < new.start:
        raise Invalid(say(Code.ERROR_AFFILIATION_ORDER, end=new.end, start=new.start))
    return NewUser(
        username,
        new.role,
        name or None,
        (new.email or "").strip() or None,
        new.start,
        new.end,
    )


def add_user(ctx: Context, new: NewUser, *, actor: str, password: str | None = None) -> User:
    """Create an account, or add an affiliation period to an existing one (roster re-import)."""
    new = _validate(ctx, new)
    now = ctx.clock.now()
    if password is not None:
        check_password_rule(ctx, password)
    with ctx.tx() as s:
        user = _add(ctx, s, new, now, actor)
        if password is not None:
            _set_password(ctx, s, user, password, now, actor)
        return user


def add_new_in(ctx: Context, s: Session, new: NewUser, *, actor: str) -> User:
    """Create an account inside the caller's transaction (an account made at sign-in)."""
    return _add(ctx, s, _validate(ctx, new), ctx.clock.now(), actor)


def _add(ctx: Context, s: Session, new: NewUser, now: datetime, actor: str) -> User:
    start = new.start or now.astimezone(ctx.config.zone).date()
    user = s.scalars(select(User).where(User.username == new.username)).one_or_none()
    if user is None:
        user = User(username=new.username, display_name=new.name, email=new.email, status="active", created_at=now)
        s.add(user)
        user.affiliations.append(Affiliation(role=new.role, start=start, end=new.end))
        s.flush()
        audit.record(
            s,
            now,
            "account.created",
            actor=actor,
            subject=user.username,
            role=new.role,
            start=start.isoformat(),
            end=new.end.isoformat() if new.end else None,
        )
        return user
    if new.name:
        user.display_name = new.name
    if new.email:
        user.email = new.email
    _add_affiliation(ctx, s, user, AffiliationPeriod(new.role, start, new.end), now, actor)
    return user


def _add_affiliation(
    ctx: Context, s: Session, user: User, period: AffiliationPeriod, now: datetime, actor: str
) -> None:
    for a in user.affiliations:
        if a.role == period.role and a.start == period.start:
            if a.end != period.end:  # the roster corrected the end date
                a.end = period.end
                audit.record(
                    s,
                    now,
                    "affiliation.updated",
                    actor=actor,
                    subject=user.username,
                    role=a.role,
                    start=a.start.isoformat(),
                    end=period.end.isoformat() if period.end else None,
                )
            return
        overlaps = a.start <= (period.end or date.max) and period.start <= (a.end or date.max)
        if overlaps and a.role == period.role:
            until = say(Code.ERROR_AFFILIATION_TO, end=a.end) if a.end else say(Code.ERROR_AFFILIATION_OPEN)
            raise Conflict(
                say(Code.ERROR_AFFILIATION_OVERLAP, username=user.username, role=a.role, start=a.start, until=until)
            )
    user.affiliations.append(Affiliation(role=period.role, start=period.start, end=period.end))
    # A gap before this period is not acted on here: the lifecycle job resets the account on the
    # gap's first day (core.lifecycle), so a roster imported weeks early takes nothing away early.
    gap = gap_day([AffiliationPeriod(a.role, a.start, a.end) for a in user.affiliations], date.max)
    audit.record(
        s,
        now,
        "affiliation.added",
        actor=actor,
        subject=user.username,
        role=period.role,
        start=period.start.isoformat(),
        end=period.end.isoformat() if period.end else None,
        after_gap=gap is not None and gap[1] == period.start,
    )


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    errors: list[tuple[int, Message]] = field(default_factory=list)


def import_users(ctx: Context, text: str, *, actor: str, progress: Callable[[int], None] | None = None) -> ImportReport:
    """Roster CSV (`username,name,role,email,from,until`). Each row is its own transaction:
    a bad row is reported with its line number and writes nothing; the rest go in."""
    report = ImportReport()
    rows = csv_rows(text, IMPORT_COLUMNS)
    if isinstance(rows, Message):
        report.errors.append((1, rows))
        return report
    for lineno, row in rows:
        try:
            if "__error__" in row:
                raise Invalid(say(Code.ERROR_CSV_MORE_FIELDS))
            new = _validate(
                ctx,
                NewUser(
                    username=row.get("username", ""),
                    role=(row.get("role") or "").strip(),
                    name=row.get("name"),
                    email=row.get("email"),
                    start=parse_date(row["from"], "from") if (row.get("from") or "").strip() else None,
                    end=parse_date(row["until"], "until") if (row.get("until") or "").strip() else None,
                ),
            )
            with ctx.tx() as s:
                existed = s.scalars(select(User.id).where(User.username == new.username)).first()
                _add(ctx, s, new, ctx.clock.now(), actor)
            if existed:
                report.updated += 1
            else:
                report.added += 1
        except (Invalid, Conflict) as exc:
            report.errors.append((lineno, exc.said))
        if progress:
            progress(1)
    return report


def csv_rows(text: str, columns: Iterable[str]) -> list[tuple[int, dict[str, str]]] | Message:
    """Rows with the line each starts on (a row with "__error__" has more fields than columns); a
    message says why the file is unusable."""
    text = text.removeprefix("\ufeff")  # Excel writes a BOM
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in columns if c not in header and c not in ("name", "email", "until", "from")]
    if not header:
        return say(Code.ERROR_CSV_EMPTY)
    if missing:
        return say(Code.ERROR_CSV_HEADER, missing=", ".join(missing), columns=",".join(columns))
    reader.fieldnames = header
    out = []
    line = reader.line_num
    try:
        for row in reader:
            if None in row:
                out.append((line + 1, {"__error__": "more fields than columns"}))
            else:
                out.append((line + 1, {k: (v or "") for k, v in row.items()}))
            line = reader.line_num
    except csv.Error as exc:
        return say(Code.ERROR_CSV_INVALID, line=reader.line_num, cause=str(exc))
    return [(n, r) for n, r in out if any(v.strip() for v in r.values())]


def check_password_rule(ctx: Context, password: str) -> None:
    if len(password) < ctx.config.passwords.min_length:
        raise Invalid(say(Code.ERROR_PASSWORD_SHORT, n=ctx.config.passwords.min_length))
    if len(password) > 1024:
        raise Invalid(say(Code.ERROR_PASSWORD_LONG))


def set_password(ctx: Context, username: str, password: str, *, actor: str) -> None:
    check_password_rule(ctx, password)
    with ctx.tx() as s:
        _set_password(ctx, s, ctx.user(s, username), password, ctx.clock.now(), actor)


def set_password_in(ctx: Context, s: Session, user: User, password: str, now: datetime, *, actor: str) -> None:
    """Inside the caller's transaction (the member's own change, service.self_service)."""
    _set_password(ctx, s, user, password, now, actor)


def _set_password(ctx: Context, s: Session, user: User, password: str, now: datetime, actor: str) -> None:
    had = user.password_hash is not None
    user.password_hash = ctx.hasher.hash(password)
    user.password_changed_at = now
    audit.record(s, now, "password.changed" if had else "password.set", actor=actor, subject=user.username)
    if had:
        revoke_all_devices(s, user, now, actor=actor, reason="password changed")


def set_status(ctx: Context, username: str, status: AccountStatus, *, actor: str, reason: str | None = None) -> User:
    with ctx.tx() as s:
        user = ctx.user(s, username)
        if status is AccountStatus.SUSPENDED and not (reason or "").strip():
            raise Invalid(say(Code.ERROR_SUSPEND_REASON))
        apply_status(s, user, status, ctx.clock.now(), actor=actor, reason=reason)
        return user


def apply_status(
    s: Session, user: User, status: AccountStatus, now: datetime, *, actor: str, reason: str | None
) -> None:
    """Change the status inside the caller's transaction (the CLI, the portal, the lifecycle job)."""
    before = user.status
    user.status, user.status_reason, user.status_changed_at = status.value, reason, now
    audit.record(
        s,
        now,
        f"account.{ {'active': 'restored'}.get(status.value, status.value) }",
        actor=actor,
        subject=user.username,
        before=before,
        note=reason,
    )
    if status is AccountStatus.REVOKED:
        revoke_all_devices(s, user, now, actor=actor, reason="account revoked")
        sessions.end_for_user(s, user, now, say(Code.SESSION_ACCOUNT_CLOSED), actor=actor)
        portal_sessions.end_for_user(s, user.username)
        api_tokens.revoke_for_owner(s, user.username, now, actor=actor, reason="account revoked")
    elif status is AccountStatus.SUSPENDED:
        sessions.end_for_user(s, user, now, say(Code.SESSION_ACCOUNT_SUSPENDED, reason=reason or ""), actor=actor)
        portal_sessions.end_for_user(s, user.username)
        api_tokens.revoke_for_owner(s, user.username, now, actor=actor, reason="account suspended")


def facts(ctx: Context, s: Session, user: User) -> AccountFacts:
    confirmed = [m for m in user.methods if m.confirmed_at is not None]
    completed = s.scalars(select(TrainingRecord.completed_on).where(TrainingRecord.user_id == user.id))
    return AccountFacts(
        username=user.username,
        status=AccountStatus(user.status),
        status_reason=user.status_reason,
        affiliations=tuple(AffiliationPeriod(a.role, a.start, a.end) for a in user.affiliations),
        mfa_applied_at=user.mfa_applied_at,
        mfa_methods=len(confirmed),
        training_completed=tuple(completed),
    )


def describe(ctx: Context, s: Session, user: User) -> dict[str, object]:
    """Everything an operator may see of an account: never a secret."""
    devices = s.scalars(
        select(TrustedDevice).where(TrustedDevice.user_id == user.id, TrustedDevice.revoked_at.is_(None))
    ).all()
    now = ctx.clock.now()
    return {
        "username": user.username,
        "name": user.display_name,
        "email": user.email,
        "status": user.status,
        "status_reason": user.status_reason,
        "created_at": user.created_at.isoformat(),
        "has_password": user.password_hash is not None,
        "affiliations": [
            {"role": a.role, "from": a.start.isoformat(), "until": a.end.isoformat() if a.end else None}
            for a in user.affiliations
        ],
        "mfa_applied_at": user.mfa_applied_at.isoformat() if user.mfa_applied_at else None,
        "methods": [method_summary(m) for m in user.methods if m.confirmed_at is not None],
        "trusted_devices": sum(1 for d in devices if d.expires_at > now),
    }


def search(ctx: Context, q: str, limit: int = 50) -> list[dict[str, object]]:
    """Accounts whose user name or name contains `q`, or whose user name `q` is a form of."""
    q = q.strip()
    if not q:
        return []
    with ctx.tx() as s:
        conds: list[ColumnElement[bool]] = [User.display_name.ilike(f"%{q}%"), User.username.like(f"%{q}%")]
        with contextlib.suppress(ValueError):
            conds.append(User.username == ctx.usernames.normalise(q))  # any accepted form of a name
        rows = s.scalars(select(User).where(or_(*conds)).order_by(User.username).limit(limit)).all()
        return [{"username": u.username, "name": u.display_name, "status": u.status} for u in rows]


def current_role(ctx: Context, s: Session, user: User) -> str | None:
    """The role of the affiliation that covers today, if any."""
    aff = continuous_since(facts(ctx, s, user).affiliations, local_day(ctx.clock.now(), ctx.policy.zone))
    return aff.role if aff else None
