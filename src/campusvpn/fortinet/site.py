"""FortiGate SSL-VPN on the front door: `/remote/...`, realm redirects, sign-in, settings and the tunnel.

The open clients parse HTTP with their own small parsers: status lines are exactly
`HTTP/1.1 200 OK` (the reason phrase included), every answer has a Content-Length, the session
cookie is the first Set-Cookie, and the connection stays open after the settings (openfortivpn
sends the tunnel request on it). A tunnel request with a live cookie gets no HTTP answer at all:
the stream carries framed PPP from the next byte on.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

import h11

from campusvpn.fortinet.channel import PppChannel
from campusvpn.fortinet.connection import PppConnection
from campusvpn.fortinet.login import DENIED, PROTOCOL, FortiLogin
from campusvpn.fortinet.tunnel_config import Timeouts, tunnel_xml
from campusvpn.frontdoor.http import Answer, Peer, Request, Upgrade, cookie
from campusvpn.platform import logs, metrics
from campusvpn.platform.config_schema import VpnProfile
from campusvpn.platform.local_share import LocalShare
from campusvpn.service import client_texts, live_sessions, sso
from campusvpn.service.context import Context
from campusvpn.service.errors import ServiceError
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.tunnels.hub import Hub, session_info
from campusvpn.tunnels.tunnel import WRITE_HIGH_WATER, SessionInfo

MAX_BODY = 8 * 1024
COOKIE = "SVPNCOOKIE"
CLEAR_COOKIE = f"{COOKIE}=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; secure; httponly"
# Both open clients send this User-Agent (openfortivpn's default, copied by openconnect).
AGENTS = ("mozilla/5.0 sv1", "forticlient")
REASONS = {200: b"OK", 302: b"Found", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed"}
PERMISSION_DENIED = "<!--sslvpnerrmsgkey=sslvpn_login_permission_denied-->\npermission denied\n"


def is_fortinet_agent(headers: dict[str, str]) -> bool:
    ua = headers.get("user-agent", "").lower()
    return any(ua.startswith(a) or a in ua for a in AGENTS)


def login_form(body: bytes) -> dict[str, str]:
    """A `/remote/logincheck` body (urlencoded): the first value of each field; anything is readable."""
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def respond(
    conn: h11.Connection, status: int, body: bytes | str, content_type: str, headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """One answer with the exact reason phrase (openfortivpn compares the status line byte for byte)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    all_headers = [
        *headers,  # Set-Cookie first: openfortivpn reads only the first one
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
    ]
    try:
        return (
            (conn.send(h11.Response(status_code=status, headers=all_headers, reason=REASONS.get(status, b""))) or b"")
            + (conn.send(h11.Data(data=data)) or b"")
            + (conn.send(h11.EndOfMessage()) or b"")
        )
    except h11.LocalProtocolError:
        return b""


class FortinetSite:
    too_large = "Request body too large"

    def __init__(
        self,
        ctx: Context,
        hub: Hub,
        *,
        on_review: Callable[[datetime | None], None] = lambda _when: None,
        share: LocalShare | None = None,
    ) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.hub = hub
        self.on_review = on_review
        self.logins: dict[str, FortiLogin] = {}  # by the challenge's magic
        self.share = share  # with several workers: sign-ins between requests, seen by every worker
        metrics.declare_protocol(PROTOCOL)

    # --- the front door's questions ----------------------------------------------------------

    def claims(self, request: Request) -> bool:
        path = request.path
        if path.startswith("/remote/"):
            return True
        if request.method != "GET" or not is_fortinet_agent(request.headers):
            return False
        return path == "/" or self._realm(path.strip("/")) is not None

    def body_limit(self, request: Request) -> int:
        return MAX_BODY

    async def holds_session(self, request: Request) -> bool:
        """A client starting (or resuming) its tunnel with a live SVPNCOOKIE."""
        token = cookie(request.headers.get("cookie", ""), COOKIE)
        if request.path != "/remote/sslvpn-tunnel" or not token:
            return False
        return await asyncio.to_thread(live_sessions.is_resumable, self.ctx, token)

    async def respond(self, request: Request, body: bytes, conn: h11.Connection, peer: Peer) -> Answer | Upgrade:
        path = request.path
        token = cookie(request.headers.get("cookie", ""), COOKIE)
        if request.method == "POST" and path == "/remote/logincheck":
            return Answer(await self._logincheck(request, body, conn, peer))
        if request.method != "GET":
            return Answer(respond(conn, 405, "Method not allowed\n", "text/plain"))
        if path == "/remote/saml/start":
            return Answer(await self._saml_start(request, conn, peer))
        if path == "/remote/saml/auth_id":
            return Answer(await self._saml_auth_id(request, conn, peer))
        if path in ("/", "/remote/login"):
            return Answer(respond(conn, 200, self._login_page(request), "text/html; charset=utf-8"))
        if path == "/remote/sslvpn-tunnel":
            return await self._tunnel(token, conn)
        if path == "/remote/logout":
            await asyncio.to_thread(live_sessions.sign_out, self.ctx, token)
            return Answer(
                respond(
                    conn,
                    200,
                    self._page(say(Code.VPN_SIGNED_OUT)),
                    "text/html; charset=utf-8",
                    [("Set-Cookie", CLEAR_COOKIE)],
                )
            )
        if path in ("/remote/index", "/remote/fortisslvpn", "/remote/fortisslvpn_xml"):
            live = await asyncio.to_thread(live_sessions.look_up, self.ctx, token)
            if live is None:
                return Answer(respond(conn, 403, PERMISSION_DENIED, "text/html"))
            if path == "/remote/fortisslvpn_xml":
                return Answer(respond(conn, 200, self._config(live), "text/xml"))
            # The portal page FortiGate clients load before the tunnel: the same banner as AnyConnect's.
            banner = live_sessions.connect_banner(self._settings_for(live.profile).banner, live.notices)
            text = "".join(f"<p>{html.escape(line)}</p>" for line in banner.splitlines())
            return Answer(respond(conn, 200, f"<html><body>SSL-VPN{text}</body></html>", "text/html; charset=utf-8"))
        profile = self._realm(path.strip("/"))
        if profile is not None:
            return Answer(
                respond(conn, 302, "", "text/html", [("Location", f"/remote/login?realm={quote(profile.name)}")])
            )
        return Answer(respond(conn, 404, "Not found\n", "text/plain"))

    # --- sign-in through the browser (openfortivpn --saml-login) ------------------------------

    async def _saml_start(self, request: Request, conn: h11.Connection, peer: Peer) -> bytes:
        """The browser starts here: it signs in on the portal's page, then goes to the client's listener."""
        realm = (parse_qs(request.target.partition("?")[2]).get("realm") or [""])[0]
        profile = self._realm(realm) if realm else self._default_profile()
        if self.cfg.vpn.settings_for(profile).login != "browser":
            said = client_texts.for_anyone(self.ctx, say(Code.VPN_CLIENT_SIGNS_IN))
            return respond(conn, 404, said + "\n", "text/plain; charset=utf-8")
        handle = secrets.token_urlsafe(16)
        await asyncio.to_thread(
            sso.begin,
            self.ctx,
            handle,
            protocol=PROTOCOL,
            profile=profile.name if profile else None,
            source=peer.source,
            client_key=None,
        )
        return respond(conn, 302, "", "text/html", [("Location", sso.start_url(self.ctx, handle))])

    async def _saml_auth_id(self, request: Request, conn: h11.Connection, peer: Peer) -> bytes:
        """The client hands back the id the browser brought it: once, from the address that began it."""
        token = (parse_qs(request.target.partition("?")[2]).get("id") or [""])[0][:200]
        try:
            got = await asyncio.to_thread(sso.redeem, self.ctx, None, token, peer.source)
            if not got.outcome.get("ok") or not got.username:
                said = sso.said_of(got.outcome) or (say(Code.ERROR_SSO_REFUSED),)
                metrics.LOGINS.labels(PROTOCOL, "refused").inc()
                return respond(conn, 403, client_texts.for_client(self.ctx, said, got.username) + "\n", "text/plain")
            profile = next((p for p in self.cfg.vpn.profiles if p.name == got.profile), None)
            opened = await asyncio.to_thread(
                live_sessions.open_for_vpn,
                self.ctx,
                got.username,
                profile,
                pool=self.cfg.vpn.settings_for(profile).pool,
                source=peer.source,
                client=request.headers.get("user-agent"),
                protocol=PROTOCOL,
            )
        except ServiceError as exc:
            metrics.LOGINS.labels(PROTOCOL, "refused").inc()
            return respond(conn, 403, client_texts.for_client(self.ctx, exc.said, None) + "\n", "text/plain")
        metrics.LOGINS.labels(PROTOCOL, "ok").inc()
        logs.event("gateway.login", protocol=PROTOCOL, source=peer.source, outcome="ok", user=got.username)
        set_cookie = f"{COOKIE}={opened.token}; path=/; secure; httponly"
        return respond(conn, 200, "", "text/html", [("Set-Cookie", set_cookie)])

    # --- sign-in -----------------------------------------------------------------------------

    async def _logincheck(self, request: Request, body: bytes, conn: h11.Connection, peer: Peer) -> bytes:
        form = login_form(body)
        now = self.ctx.clock.now()
        for stale in [m for m, lg in self.logins.items() if lg.expired(now)]:
            del self.logins[stale]
        if "magic" in form or "code" in form or "ftmpush" in form:
            login = self.logins.get(form.get("magic", ""))
            if self.share is not None:  # its challenge may have been sent by another worker
                shared = self.share.get("forti", form.get("magic", ""))
                login = FortiLogin.restore(self.ctx, shared) if shared else None
            if login is None or login.source != peer.source:  # a sign-in continues only where it began
                return respond(conn, 405, DENIED, "text/plain", [("Set-Cookie", CLEAR_COOKIE)])
            answer = await asyncio.to_thread(login.code, form.get("code", ""))
        else:
            realm = form.get("realm", "")
            profile = self._realm(realm) if realm else self._default_profile()
            login = FortiLogin(
                self.ctx,
                source=peer.source,
                user_agent=f"FortiGate SSL-VPN client ({request.headers.get('user-agent', '-')[:100]})",
                profile=profile,
                device_token=cookie(request.headers.get("cookie", ""), "campusvpn-device"),
            )
            if profile is None and (realm or len(self.cfg.vpn.profiles) > 1):
                answer = login.refuse(self._realm_help())
            else:
                answer = await asyncio.to_thread(login.password, form.get("username", ""), form.get("credential", ""))
        if answer.outcome:
            metrics.LOGINS.labels(PROTOCOL, answer.outcome).inc()
            logs.event(
                "gateway.login", protocol=PROTOCOL, source=peer.source, outcome=answer.outcome, user=login.username
            )
        if answer.finished:
            self.logins.pop(login.magic, None)
            if self.share is not None:
                self.share.pop("forti", login.magic)
        else:  # a challenge, or a refusal that answers any code with its reason until it expires
            self.logins[login.magic] = login
            if self.share is not None:
                self.share.put("forti", login.magic, login.snapshot())
        headers: list[tuple[str, str]] = []
        if answer.token:
            headers.append(("Set-Cookie", f"{COOKIE}={answer.token}; path=/; secure; httponly"))
        elif answer.status != 200:
            headers.append(("Set-Cookie", CLEAR_COOKIE))
        if answer.device_token:
            days = self.cfg.trusted_devices.lifetime.days
            headers.append(
                (
                    "Set-Cookie",
                    f"campusvpn-device={answer.device_token}; path=/; secure; httponly; max-age={days * 86400}",
                )
            )
        return respond(conn, answer.status, answer.body, "text/plain; charset=utf-8", headers)

    def _realm(self, name: str) -> VpnProfile | None:
        if not name or "/" in name:
            return None
        return next((p for p in self.cfg.vpn.profiles if p.name.lower() == name.lower()), None)

    def _default_profile(self) -> VpnProfile | None:
        profiles = self.cfg.vpn.profiles
        return profiles[0] if len(profiles) == 1 else None

    def _realm_help(self) -> str:
        host = self.cfg.gateway.hostname
        names = " | ".join(f"https://{host}/{p.name}" for p in self.cfg.vpn.profiles)
        return client_texts.for_anyone(self.ctx, say(Code.VPN_CHOOSE_REALM, addresses=names))

    def _login_page(self, request: Request) -> str:
        realm = parse_qs(request.target.partition("?")[2]).get("realm", [""])[0]
        name = html.escape(self.cfg.service.name)

        def both(code: Code) -> str:
            return html.escape(client_texts.for_anyone(self.ctx, say(code)))

        return (
            f'<html><head><meta charset="utf-8"><title>{name}</title></head><body><h1>{name}</h1>'
            f"<p>{both(Code.VPN_FORTINET_PAGE)}</p>"
            '<form action="/remote/logincheck" method="post">'
            f'<input type="hidden" name="realm" value="{html.escape(realm)}">'
            f'<input type="text" name="username" aria-label="{both(Code.SIGNIN_USERNAME)}">'
            f'<input type="password" name="credential" aria-label="{both(Code.SIGNIN_PASSWORD)}">'
            f'<input type="submit" value="{both(Code.SIGNIN_SUBMIT)}"></form></body></html>'
        )

    def _page(self, said: Message) -> str:
        text = html.escape(client_texts.for_anyone(self.ctx, said))
        return f'<html><head><meta charset="utf-8"></head><body>{text}</body></html>'

    # --- settings and tunnel -----------------------------------------------------------------

    def _settings_for(self, profile_name: str | None) -> Any:
        profile = next((p for p in self.cfg.vpn.profiles if p.name == profile_name), None)
        return self.cfg.vpn.settings_for(profile)

    def _config(self, live: live_sessions.Live) -> bytes:
        g = self.cfg.gateway
        timeouts = Timeouts(
            idle=int(g.idle_timeout.total_seconds()),
            session_remaining=int((live.expires_at - self.ctx.clock.now()).total_seconds()),
            reconnect=int(g.disconnected_timeout.total_seconds()),
        )
        return tunnel_xml(self._settings_for(live.profile), live.address, timeouts)

    async def _tunnel(self, token: str | None, conn: h11.Connection) -> Answer | Upgrade:
        outcome = await asyncio.to_thread(live_sessions.attach, self.ctx, token, self.hub.node)
        if isinstance(outcome, live_sessions.Refused):
            text = outcome.user_message or outcome.message
            return Answer(respond(conn, 403, PERMISSION_DENIED + text + "\n", "text/html"), close=True)
        self.on_review(outcome.next_review)
        logs.event("gateway.tunnel_request", protocol=PROTOCOL, session=outcome.session_id, user=outcome.username)
        settings = self._settings_for(outcome.profile)
        session = session_info(outcome, PROTOCOL)

        async def run(transport: Any, leftover: bytes) -> None:
            now = time.monotonic()
            ppp = PppConnection(
                now,
                address=session.address,
                dns=settings.dns,
                wins=settings.wins,
                mru=settings.mtu,
                echo_interval=self.cfg.gateway.dpd.total_seconds(),
            )
            await self._run_tunnel(transport, session, ppp, leftover)

        return Upgrade(b"", run)

    async def _run_tunnel(
        self, transport: asyncio.Transport, session: SessionInfo, ppp: PppConnection, leftover: bytes
    ) -> None:
        channel = PppChannel(transport, ppp)
        t = self.hub.attach(session, channel)
        channel.bind(t, self.hub.from_client)
        transport.set_protocol(channel)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        transport.write(ppp.start(time.monotonic()))
        channel.feed(leftover)
        if not transport.is_reading():
            transport.resume_reading()
        self.hub.connection_ended(t, await channel.ended, error_kind="ppp")
