"""AnyConnect on the front door: which requests are ours, the XML sign-in dialogue, and CONNECT.

Sign-in steps and CONNECT's session check run in worker threads (Argon2id and the database block);
everything else, the login registry included, stays on the event loop. After CONNECT the stream is
a `CstpChannel` attached to the hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import h11

from campusvpn.anyconnect import xmlauth
from campusvpn.anyconnect.channel import CstpChannel
from campusvpn.anyconnect.connect_answer import Timers, connected_response, refused_response
from campusvpn.anyconnect.dtls_offer import ClientOffer, answer_headers, base_mtu, dtls_mtu, read_offer
from campusvpn.anyconnect.login import PROTOCOL, GatewayLogin
from campusvpn.frontdoor.http import Answer, Peer, Request, Upgrade, cookie, plain, respond_with
from campusvpn.platform import logs, metrics
from campusvpn.platform.local_share import LocalShare
from campusvpn.service import client_texts, live_sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import Unavailable
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say
from campusvpn.tunnels.hub import Hub, session_info
from campusvpn.tunnels.tunnel import WRITE_HIGH_WATER, SessionInfo

if TYPE_CHECKING:  # pyOpenSSL costs ~9 MB of memory: imported only when DTLS is on
    from campusvpn.anyconnect.dtls_port import DtlsPort

VPN_USER_AGENTS = ("anyconnect", "openconnect", "cisco", "secure client")
FIRST_KEEPALIVES = (0.01, 0.1)  # seconds after the CONNECT answer


def is_vpn_request(method: str, target: str, headers: dict[str, str]) -> bool:
    """AnyConnect-protocol clients say so in their headers; browsers never send these."""
    if method == "CONNECT" or "x-aggregate-auth" in headers or "x-transcend-version" in headers:
        return True
    if target.startswith("/d/"):
        return True  # the trusted-device URL given to VPN clients
    ua = headers.get("user-agent", "").lower()
    return any(word in ua for word in VPN_USER_AGENTS)


def cert_sha1(cert_path: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(open(cert_path).read())  # noqa: SIM115
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the protocol's certificate hash, not security


class AnyConnectSite:
    too_large = "Request body too large"

    def __init__(
        self,
        ctx: Context,
        hub: Hub,
        *,
        claim_everything: bool,
        on_review: Callable[[datetime | None], None] = lambda _when: None,
        dtls: DtlsPort | None = None,
        share: LocalShare | None = None,
    ) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.hub = hub
        self.claim_everything = claim_everything  # no portal: browsers get the gateway's own answers
        self.on_review = on_review  # a connected session's eligibility may change at this time
        self.logins: dict[str, GatewayLogin] = {}
        self.dtls = dtls  # None: TLS only
        # Sign-ins between requests and first-connect notices, seen by every worker of this host.
        self.share = share or LocalShare(None, self.cfg.gateway.auth_timeout.total_seconds())
        self.cert_sha1 = cert_sha1(str(self.cfg.path(self.cfg.tls.certificate)))
        metrics.declare_protocol(PROTOCOL)

    # --- the front door's questions ----------------------------------------------------------

    def claims(self, request: Request) -> bool:
        return self.claim_everything or is_vpn_request(request.method, request.target, request.headers)

    def body_limit(self, request: Request) -> int:
        return xmlauth.MAX_BODY

    async def holds_session(self, request: Request) -> bool:
        """A client connecting (or resuming) its tunnel with a live session cookie."""
        token = cookie(request.headers.get("cookie", ""), "webvpn")
        if request.method != "CONNECT" or not token:
            return False
        return await asyncio.to_thread(live_sessions.is_resumable, self.ctx, token)

    async def respond(self, request: Request, body: bytes, conn: h11.Connection, peer: Peer) -> Answer | Upgrade:
        if request.method == "CONNECT":
            return await self._connect(request, peer)
        if request.method == "POST":
            return Answer(await self._sign_in_step(request, body, conn, peer))
        entry = request.path in ("/", "/index.html") or request.path.startswith("/d/")
        if request.method == "GET" and entry and _is_vpn_client(request.headers):
            # Clients that do not post XML (openconnect --no-xmlpost) start with a GET: the form, as XML.
            init = xmlauth.AuthRequest(kind="init", group_access=request.target)
            return Answer(await self._sign_in_step(request, b"", conn, peer, parsed=init))
        if request.method == "GET" and request.path in ("/", "/index.html"):
            return Answer(
                plain(
                    conn,
                    200,
                    client_texts.for_anyone(self.ctx, say(Code.VPN_GATEWAY_PAGE, service=self.cfg.service.name)),
                )
            )
        return Answer(plain(conn, 404, "Not found"))

    # --- sign-in -----------------------------------------------------------------------------

    async def _sign_in_step(
        self, request: Request, body: bytes, conn: h11.Connection, peer: Peer, parsed: xmlauth.AuthRequest | None = None
    ) -> bytes:
        form_post = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        try:
            req = parsed or (xmlauth.parse_form(body) if form_post else xmlauth.parse(body))
        except xmlauth.XmlAuthError as exc:
            metrics.PROTOCOL_ERRORS.labels("xml").inc()
            logs.event("gateway.bad_xml", logging.WARNING, protocol=PROTOCOL, source=peer.source, error=str(exc))
            unreadable = client_texts.for_anyone(self.ctx, say(Code.VPN_UNREADABLE))
            return _xml(
                conn,
                xmlauth.auth_form(
                    handle="-", title=self.cfg.service.name, inputs=[], message=unreadable, error=unreadable
                ),
                [],
            )
        now = self.ctx.clock.now()
        for stale in [h for h, lg in self.logins.items() if lg.expired(now)]:
            del self.logins[stale]
        if req.kind == "logout":
            await asyncio.to_thread(live_sessions.sign_out, self.ctx, req.session_token)
            peer.state.pop("anyconnect.login", None)
            return _xml(conn, xmlauth.logout_ok(client_texts.for_anyone(self.ctx, say(Code.VPN_SIGNED_OUT))), [])
        login: GatewayLogin | None = peer.state.get("anyconnect.login")
        handle = req.handle or cookie(request.headers.get("cookie", ""), "webvpncontext")
        known = self.logins.get(handle or "")
        if self.share.folder is not None and handle and req.kind != "init":  # its last step may have been elsewhere
            shared = self.share.get("login", handle)
            known = GatewayLogin.restore(self.ctx, self.cert_sha1, shared) if shared else None
        # A sign-in continues only from the address that began it.
        if req.kind != "init" and known is not None and known.source == peer.source:
            login = known
        if login is None or req.kind == "init" or (known is None and handle and "sso-token" in req.fields):
            login = GatewayLogin(
                self.ctx,
                source=peer.source,
                user_agent=request.headers.get("user-agent"),
                cert_sha1=self.cert_sha1,
                device_token=_device_token(request.target, req.group_access, request.headers.get("cookie", "")),
                client_key=request.headers.get("x-anyconnect-strap-dh-pubkey"),
            )
            if req.kind != "init" and handle and "sso-token" in req.fields:
                # The browser's token names its attempt, which lives in the database: any process can take it.
                login.handle = handle
            self.logins[login.handle] = login
        reply = await asyncio.to_thread(login.handle_request, req)
        cookies = [("Set-Cookie", f"webvpncontext={login.handle}; Secure; HttpOnly; Max-Age=300")]
        if reply.finished:
            self.logins.pop(login.handle, None)
            self.share.pop("login", login.handle)
            outcome = "ok" if reply.token else "refused"
            metrics.LOGINS.labels(PROTOCOL, outcome).inc()
            logs.event("gateway.login", protocol=PROTOCOL, source=peer.source, outcome=outcome, user=login.username)
        peer.state["anyconnect.login"] = None if reply.finished else login
        if not reply.finished:
            self.share.put("login", login.handle, login.snapshot())
        if reply.token:
            cookies.append(("Set-Cookie", f"webvpn={reply.token}; Secure; HttpOnly"))
            if reply.notice and reply.session_id:
                self.share.put("notice", reply.session_id, reply.notice)
        if reply.device_token:
            days = self.cfg.trusted_devices.lifetime.days
            cookies.append(
                ("Set-Cookie", f"campusvpn-device={reply.device_token}; Secure; HttpOnly; Max-Age={days * 86400}")
            )
        return _xml(conn, reply.body, cookies)

    # --- CONNECT -----------------------------------------------------------------------------

    async def _connect(self, request: Request, peer: Peer) -> Answer | Upgrade:
        token = cookie(request.headers.get("cookie", ""), "webvpn")
        try:
            outcome = await asyncio.to_thread(live_sessions.attach, self.ctx, token, self.hub.node)
        except Unavailable as exc:  # the client retries its reconnect; live tunnels keep running meanwhile
            return Answer(refused_response(503, "Service Unavailable", str(exc)), close=True)
        if isinstance(outcome, live_sessions.Refused):
            return Answer(refused_response(outcome.status, outcome.message, outcome.user_message), close=True)
        self.on_review(outcome.next_review)
        profile = next((p for p in self.cfg.vpn.profiles if p.name == outcome.profile), None)
        settings = self.cfg.vpn.settings_for(profile)
        notice = self.share.pop("notice", outcome.session_id)
        banner = live_sessions.connect_banner(settings.banner, outcome.notices, notice)
        if banner != settings.banner:
            settings = settings.model_copy(update={"banner": banner})
        g = self.cfg.gateway
        timers = Timers(
            dpd=int(g.dpd.total_seconds()),
            keepalive=int(g.keepalive.total_seconds()),
            idle_timeout=int(g.idle_timeout.total_seconds()),
            session_remaining=max(1, int((outcome.expires_at - self.ctx.clock.now()).total_seconds())),
            disconnected_timeout=int(g.disconnected_timeout.total_seconds()),
        )
        session = session_info(outcome, PROTOCOL)
        offer = read_offer(request.headers) if self.dtls is not None else None
        dtls_headers: list[tuple[str, str]] = []
        mtu: int | None = None
        dtls_session = b""
        if offer is not None and self.dtls is not None and peer.source:
            mtu = dtls_mtu(base_mtu(request.headers), settings.mtu)
            dtls_session = self.dtls.keys.prime(offer.master_secret, offer.suite.cipher_id)
            dtls_headers = answer_headers(
                dtls_session, offer.suite, port=self.dtls.port, mtu=mtu, dpd=timers.dpd, keepalive=timers.keepalive
            )

        async def run(transport: Any, leftover: bytes) -> None:
            dtls = None
            if dtls_session and offer is not None and mtu is not None and peer.source:
                dtls = _DtlsPlan(dtls_session, offer, mtu, peer.source)
            await self._run_tunnel(transport, session, leftover, dtls)

        answer = connected_response(settings, outcome.address, timers, mtu=mtu, dtls=dtls_headers)
        return Upgrade(answer, run)

    async def _run_tunnel(
        self, transport: asyncio.Transport, session: SessionInfo, leftover: bytes, dtls: _DtlsPlan | None = None
    ) -> None:
        channel = CstpChannel(transport)
        t = self.hub.attach(session, channel)
        if dtls is not None and self.dtls is not None:
            from campusvpn.anyconnect.dtls_port import Offer

            g = self.cfg.gateway
            # Quiet over DTLS for longer than two of the client's keepalives (it sends one each
            # interval over DTLS): its UDP is gone, packets go over TLS until DTLS is heard again.
            quiet = 2 * max(g.keepalive.total_seconds(), 1.0) + 1.0
            self.dtls.offer(Offer(dtls.session_id, t, dtls.source, dtls.mtu, quiet, self.hub.from_client))
        channel.bind(t, self.hub.from_client)
        transport.set_protocol(channel)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        channel.feed(leftover)
        if not transport.is_reading():  # the stream reader may have paused a fast sender
            transport.resume_reading()
        # openconnect without DTLS holds its tunnel device back for one pass of its loop, which then
        # sleeps up to a second unless something arrives: a keepalive just after the answer ends
        # that wait (a client that is quicker reads it before sleeping, at no cost).
        for delay in FIRST_KEEPALIVES:
            asyncio.get_running_loop().call_later(delay, self.hub.send_keepalive, t)
        try:
            ending = await channel.ended
        finally:
            if dtls is not None and self.dtls is not None:
                self.dtls.withdraw(dtls.session_id)  # the DTLS channel ends with its stream
        self.hub.connection_ended(t, ending, error_kind="cstp")


@dataclass(frozen=True)
class _DtlsPlan:
    """A CONNECT answer's DTLS offer, for the tunnel to register once it is attached."""

    session_id: bytes
    offer: ClientOffer
    mtu: int
    source: str


def _is_vpn_client(headers: dict[str, str]) -> bool:
    if "x-transcend-version" in headers or "x-aggregate-auth" in headers:
        return True
    ua = headers.get("user-agent", "").lower()
    return any(word in ua for word in VPN_USER_AGENTS)


def _device_token(target: str, group_access: str | None, cookie_header: str) -> str | None:
    """A trusted-device token travels in the URL the client connects to (`/d/TOKEN`) or a cookie."""
    for url in (target, group_access or ""):
        path = url.split("://", 1)[-1]
        path = path[path.find("/") :] if "/" in path else ""
        parts = [p for p in path.split("?")[0].split("/") if p]
        if len(parts) >= 2 and parts[0] == "d":
            return parts[1][:100]
    return cookie(cookie_header, "campusvpn-device")


def _xml(conn: h11.Connection, body: bytes, extra: list[tuple[str, str]]) -> bytes:
    headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Transcend-Version", "1"),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    return respond_with(conn, 200, headers, body)
