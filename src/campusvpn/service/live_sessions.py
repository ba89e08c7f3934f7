"""Use cases of the tunnel hub: a session's connection attaches, signs out, ends; what ended elsewhere;
the policy re-check of connected users. Each call is one transaction and returns plain values, so the
event loop never holds a database row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from campusvpn.core.policy import Decision
from campusvpn.platform.config_schema import VpnProfile
from campusvpn.service import client_texts, eligibility, notices, sessions
from campusvpn.service.accounts import current_role
from campusvpn.service.context import Context
from campusvpn.service.errors import Forbidden
from campusvpn.store.models import User, VpnSession
from campusvpn.texts import stored
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say
from campusvpn.texts.render import render


@dataclass(frozen=True)
class OpenedSession:
    token: str  # the client's session cookie; only its digest is stored
    session_id: str
    address: str


def open_for_vpn(
    ctx: Context,
    username: str,
    profile: VpnProfile | None,
    *,
    pool: str,
    source: str | None,
    client: str | None,
    protocol: str,
) -> OpenedSession:
    """A signed-in user's new VPN session in `profile` (whose roles must include the user's), opened
    over `protocol` ("anyconnect", "fortinet")."""
    with ctx.tx() as s:
        user = ctx.user(s, username)
        role = current_role(ctx, s, user)
        if profile is not None and profile.roles and role not in profile.roles:
            allowed = ", ".join(p.name for p in ctx.config.vpn.profiles if not p.roles or role in p.roles)
            others = allowed or say(Code.ERROR_ANOTHER_GROUP)
            raise Forbidden(say(Code.ERROR_WRONG_GROUP, group=profile.name, role=str(role), allowed=others))
        opened = sessions.open_session(
            ctx,
            s,
            user,
            profile=profile.name if profile else None,
            pool=pool,
            source=source,
            client=client,
            protocol=protocol,
        )
        return OpenedSession(opened.token, opened.session.public_id, opened.session.address)


@dataclass(frozen=True)
class Attached:
    """A session whose client may connect now."""

    session_id: str
    username: str
    user_id: int
    address: str
    profile: str | None
    expires_at: datetime
    next_review: datetime | None  # when its eligibility may change while connected
    notices: tuple[str, ...] = ()  # for the connect banner, in the user's language (connect_banner)
    language: str | None = None  # the person's stored language (None: never chosen): the hub's texts


@dataclass(frozen=True)
class Refused:
    status: int  # 401: the cookie names no session it may resume; 503: the policy refuses now
    message: str
    user_message: str | None = None


def attach(ctx: Context, token: str | None, node: str) -> Attached | Refused:
    """The client presents its session cookie to connect (or reconnect) a tunnel."""
    if not token:
        return Refused(401, "Cookie is not acceptable")
    with ctx.tx() as s:
        row = sessions.resumable(ctx, s, token)
        if row is None:
            return Refused(401, "Cookie is not acceptable")
        user = s.get(User, row.user_id)
        assert user is not None
        decision = eligibility.decision_for(ctx, s, user)
        if not decision.allowed:
            sessions.end(ctx, s, row, decision.said, actor="policy")
            return Refused(503, "Service Unavailable", client_texts.in_language(ctx, decision.said, user.language))
        now = ctx.clock.now()
        row.connected, row.node, row.last_seen_at = True, node, now
        return Attached(
            row.public_id,
            row.username,
            row.user_id,
            row.address,
            row.profile,
            row.expires_at,
            decision.next_review,
            banner_notices(ctx, user, decision),
            user.language,
        )


BANNERS = {"training_due": "banner_training_due", "affiliation_ending": "banner_affiliation_ending"}


def banner_notices(ctx: Context, user: User, decision: Decision) -> tuple[str, ...]:
    """The policy's notices (training due, affiliation ending) as the operator's banner texts in
    the user's language: people who only use the VPN learn of them before they are refused."""
    out = []
    for n in decision.notices:
        kind = BANNERS.get(n.code)
        if kind is None:
            continue
        params = dict(n.params)
        if "end" in params:
            params["last_day"] = params.pop("end")
        out.append(notices.render(ctx, user, kind, **params)[1])
    return tuple(out)


def connect_banner(configured: str, notices_: tuple[str, ...], *extra: str | None) -> str:
    """The banner a VPN client shows on connecting, for every protocol: the operator's [vpn]
    banner, the user's notices, then what this sign-in adds (a trusted device, a recovery code)."""
    return "\n".join(x for x in (configured, *notices_, *extra) if x)


def is_resumable(ctx: Context, token: str) -> bool:
    """Whether this cookie names a live session that may connect now (one whose disconnected time ran
    out ends here, as it would on CONNECT)."""
    with ctx.tx() as s:
        return sessions.resumable(ctx, s, token) is not None


def sign_out(ctx: Context, token: str | None) -> None:
    """The client's own sign-out (its `logout` request): the session ends."""
    if not token:
        return
    with ctx.tx() as s:
        row = sessions.resumable(ctx, s, token)
        if row is not None:
            sessions.end(ctx, s, row, say(Code.SESSION_SIGNED_OUT), actor=row.username)


def end(
    ctx: Context, session_id: str, reason: sessions.Reason, *, actor: str, node: str, bytes_in: int, bytes_out: int
) -> None:
    """A session ended by its tunnel (BYE, idle, time limit), with its last traffic."""
    sessions.mark(ctx, session_id, connected=False, node=node, bytes_in=bytes_in, bytes_out=bytes_out)
    with ctx.tx() as s:
        row = s.scalars(select(VpnSession).where(VpnSession.public_id == session_id)).one_or_none()
        if row is not None:
            sessions.end(ctx, s, row, reason, actor=actor)


@dataclass(frozen=True)
class Ended:
    """A session ended elsewhere: why in English (logs) and as its client is told."""

    session_id: str
    reason: str
    told: str  # in the person's stored language, else both (client_texts.in_language)


def ended_since(ctx: Context, since: datetime, among: frozenset[str]) -> list[Ended]:
    """Sessions among `among` ended elsewhere (CLI, portal, policy, another node) since `since`."""
    with ctx.tx() as s:
        ended = s.execute(
            select(VpnSession.public_id, VpnSession.end_reason, User.language)
            .join(User, User.id == VpnSession.user_id, isouter=True)
            .where(VpnSession.ended_at.is_not(None), VpnSession.ended_at >= since - timedelta(seconds=2))
        ).all()
    out = []
    for sid, reason, language in ended:
        if sid not in among:
            continue
        said = stored.load(reason) if reason else (say(Code.SESSION_ENDED),)
        if isinstance(said, str):  # a row from before end reasons were messages: its text as it is
            out.append(Ended(sid, said, said))
        else:
            out.append(Ended(sid, render(said, "en"), client_texts.in_language(ctx, said, language)))
    return out


def taken_over(ctx: Context, since: datetime, among: frozenset[str], node: str) -> list[str]:
    """Sessions among `among` (this node's tunnels) whose client connected again to another node (or
    another worker) since `since`: the newer connection wins, as it does within one process."""
    with ctx.tx() as s:
        rows = s.execute(
            select(VpnSession.public_id).where(
                VpnSession.last_seen_at >= since - timedelta(seconds=2),
                VpnSession.connected.is_(True),
                VpnSession.node != node,
                VpnSession.ended_at.is_(None),
            )
        ).all()
    return [sid for (sid,) in rows if sid in among]


def expire_stale(ctx: Context) -> int:
    with ctx.tx() as s:
        return sessions.expire_stale(ctx, s)


@dataclass(frozen=True)
class Recheck:
    ended_users: int  # users whose sessions the re-check ended (their tunnels close on the next round)
    next_review: datetime | None  # the earliest time a still-allowed user's eligibility may change


def recheck(ctx: Context, user_ids: frozenset[int]) -> Recheck:
    """Ask the policy again for every connected user: a deadline or an affiliation's end has passed."""
    now = ctx.clock.now()
    ended, upcoming = 0, []
    for uid in sorted(user_ids):
        with ctx.tx() as s:
            user = s.get(User, uid)
            if user is None:
                continue
            d = eligibility.decision_for(ctx, s, user)
            if not d.allowed:
                sessions.end_for_user(s, user, now, d.said, actor="policy")
                ended += 1
            elif d.next_review is not None:
                upcoming.append(d.next_review)
    return Recheck(ended, min(upcoming) if upcoming else None)


def detach_node(ctx: Context, node: str) -> int:
    return sessions.detach_node(ctx, node)


def mark_many(ctx: Context, marks: list[sessions.Mark], node: str) -> None:
    sessions.mark_many(ctx, marks, node=node)


@dataclass(frozen=True)
class Live:
    """A session a cookie names, looked at without connecting it (a client fetching its settings)."""

    session_id: str
    address: str
    profile: str | None
    expires_at: datetime
    notices: tuple[str, ...] = ()  # for the banner (connect_banner)


def look_up(ctx: Context, token: str | None) -> Live | None:
    """The live session this cookie names, if it may connect now; nothing about it changes."""
    if not token:
        return None
    with ctx.tx() as s:
        row = sessions.resumable(ctx, s, token)
        if row is None:
            return None
        user = s.get(User, row.user_id)
        shown = banner_notices(ctx, user, eligibility.decision_for(ctx, s, user)) if user is not None else ()
        return Live(row.public_id, row.address, row.profile, row.expires_at, shown)
