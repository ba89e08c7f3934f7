"""The asyncio gateway: moves bytes between sockets, the TUN device and the sans-IO pieces.

One TLS listener serves the sign-in dialogue (HTTP/1.1 keep-alive, XML) and then, on the same
or a new connection, `CONNECT /CSCOSSLC/tunnel`, after which the stream carries CSTP frames.
Packets from the TUN device go to the tunnel whose address they are for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import cast

import h11
from sqlalchemy import select
from starlette.types import ASGIApp

from campusvpn.core.policy import Decision
from campusvpn.gateway import asgi_bridge, cstp, logs, metrics, xmlauth
from campusvpn.gateway.cstp import FrameType
from campusvpn.gateway.login import GatewayLogin
from campusvpn.gateway.tls import TlsServerProtocol
from campusvpn.gateway.tunnel import WRITE_HIGH_WATER, Ending, Tunnel, TunnelProtocol
from campusvpn.gateway.tunnel_config import Timers, connected_response, refused_response
from campusvpn.service import eligibility, sessions
from campusvpn.service.context import Context
from campusvpn.store.models import User, VpnSession

MAX_BODY = xmlauth.MAX_BODY
READ_SIZE = 256 * 1024
REQUEST_TIMEOUT = 30.0
KEEPALIVE_FRAME = cstp.encode(FrameType.KEEPALIVE)
FIRST_KEEPALIVES = (0.01, 0.1)  # seconds after the CONNECT answer


def ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # a client-started renegotiation would stall a memory-BIO write
    return ctx


def cert_sha1(cert_path: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(open(cert_path).read())  # noqa: SIM115
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the protocol's certificate hash, not security


class Gateway:
    def __init__(self, ctx: Context, *, tun_fd: int | None, node: str = "") -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.tun_fd = tun_fd
        self.node = node or os.uname().nodename
        self.tunnels: dict[str, Tunnel] = {}  # by session id
        self.by_address: dict[bytes, Tunnel] = {}
        self.logins: dict[str, GatewayLogin] = {}
        self.notices: dict[str, str] = {}  # session id -> text for its first connect banner
        self._registry_lock = threading.Lock()  # sign-in steps run in worker threads
        self.pending = asyncio.Semaphore(self.cfg.gateway.max_pending)
        self.cert_sha1 = cert_sha1(str(self.cfg.path(self.cfg.tls.certificate)))
        self._last_end_check = ctx.clock.now() - timedelta(seconds=5)
        # When live sessions' eligibility may change next: a periodic re-check, brought forward to the
        # exact time a notice says something changes (a training deadline, an affiliation's last day).
        self._next_policy_at = ctx.clock.now() + self.cfg.gateway.policy_recheck
        self._last_flush = time.monotonic()
        self._tun_woken = 0.0
        self._marks: list[sessions.Mark] = []  # session state and traffic waiting for the database
        self._marks_writing = False
        self._last_expiry = 0.0
        self.server: asyncio.Server | None = None
        self.portal: ASGIApp | None = None
        if self.cfg.portal.enabled:
            from campusvpn.portal.app import create_app

            self.portal = create_app(ctx)

    # --- start and stop -------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        detached = await asyncio.to_thread(sessions.detach_node, self.ctx, self.node)
        if detached:
            logs.event("gateway.sessions_detached", count=detached, note="left connected by an earlier run")
        tls = ssl_context(str(self.cfg.path(self.cfg.tls.certificate)), str(self.cfg.path(self.cfg.tls.key)))
        handshake_timeout = self.cfg.gateway.handshake_timeout.total_seconds()

        def http_phase() -> asyncio.BaseProtocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=READ_SIZE), self._client)

        self.server = await asyncio.get_running_loop().create_server(
            lambda: TlsServerProtocol(tls, http_phase, handshake_timeout), host, port, backlog=1024
        )
        if self.tun_fd is not None:
            asyncio.get_running_loop().add_reader(self.tun_fd, self._tun_readable)
        logs.event("gateway.listening", listen=f"{host}:{port}", node=self.node)

    async def run_housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                ended = await asyncio.to_thread(self._housekeeping_db)
            except Exception as exc:  # keep the gateway up; the next round retries
                logs.event("gateway.housekeeping_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
                ended = []
            for sid, reason in ended:
                t = self.tunnels.get(sid)
                if t is not None:
                    self._close(t, reason, end=True)
            self._check_timers()
            if time.monotonic() - self._last_flush >= 10:
                self._last_flush = time.monotonic()
                # Idle tunnels have nothing to write; the others join the marks' next batch.
                for t in list(self.tunnels.values()):
                    if t.bytes_in != t.flushed_in or t.bytes_out != t.flushed_out:
                        self._write_later(t, connected=True)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.tun_fd is not None:
            asyncio.get_running_loop().remove_reader(self.tun_fd)
        # Sessions stay resumable: clients reconnect with their cookie once we are back.
        for t in list(self.tunnels.values()):
            self._detach(t, "gateway stopping")
            t.transport.close()

    # --- one client connection ------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else None
        if self.pending.locked():
            metrics.PROTOCOL_ERRORS.labels("too_many_pending").inc()
            writer.close()
            return
        await self.pending.acquire()
        released = False
        try:
            tunnel_args = await self._http(reader, writer, source)
            if tunnel_args is not None:
                self.pending.release()
                released = True
                await self._run_tunnel(reader, writer, *tunnel_args)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:  # the gateway is stopping; sessions stay resumable
            pass
        except Exception as exc:  # one client's failure never takes the gateway down
            logs.event("gateway.connection_error", logging.ERROR, source=source, error=f"{type(exc).__name__}: {exc}")
        finally:
            if not released:
                self.pending.release()
            with contextlib.suppress(Exception):
                writer.close()

    async def _http(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: str | None
    ) -> tuple[VpnSession, bytes, str] | None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        login: GatewayLogin | None = None
        deadline = time.monotonic() + self.cfg.gateway.auth_timeout.total_seconds()
        while True:
            request, body = await self._read_request(conn, reader, deadline)
            if request is None:
                return None
            method = request.method.decode("ascii", "replace")
            target = request.target.decode("ascii", "replace")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
            if method == "CONNECT":
                token = _cookie(headers.get("cookie", ""), "webvpn")
                answer = await asyncio.to_thread(self._connect_session, token, source)
                if isinstance(answer, bytes):
                    writer.write(answer)
                    await writer.drain()
                    return None
                row, response = answer
                writer.write(response)
                await writer.drain()
                leftover = conn.trailing_data[0]
                return row, leftover, headers.get("user-agent", "")
            if not asgi_bridge.is_vpn_request(method, target, headers) and self.portal is not None:
                if body is None:
                    writer.write(_plain(conn, 413, "The upload is too large."))
                    return None
                peer, local = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
                writer.write(
                    await asgi_bridge.call(
                        self.portal,
                        conn,
                        request,
                        body,
                        (str(peer[0]), int(peer[1])) if peer else None,
                        (str(local[0]), int(local[1])) if local else None,
                    )
                )
                # A browser may keep the connection for many pages: each page gets a fresh deadline.
                deadline = time.monotonic() + self.cfg.gateway.auth_timeout.total_seconds()
            elif method == "POST":
                if body is None:
                    writer.write(_plain(conn, 413, "Request body too large"))
                    return None
                login, reply, extra = await asyncio.to_thread(self._login_step, login, body, target, headers, source)
                writer.write(_xml(conn, reply, extra))
            elif method == "GET" and target.split("?")[0] in ("/", "/index.html"):
                writer.write(
                    _plain(
                        conn,
                        200,
                        f"This is the {self.cfg.service.name} gateway. Connect with Cisco Secure "
                        "Client (AnyConnect) or openconnect to this address.",
                    )
                )
            else:
                writer.write(_plain(conn, 404, "Not found"))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return None
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return None

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, deadline: float
    ) -> tuple[h11.Request | None, bytes | None]:
        request: h11.Request | None = None
        body = bytearray()
        too_big = False
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                metrics.PROTOCOL_ERRORS.labels("http").inc()
                logs.event("gateway.bad_http", logging.WARNING, error=str(exc))
                return None, None
            if event is h11.NEED_DATA:
                left = min(REQUEST_TIMEOUT, deadline - time.monotonic())
                if left <= 0:
                    return None, None
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout=left)
                if not data:
                    return None, None
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                length = dict(event.headers).get(b"content-length", b"0")
                limit = self._body_limit(event)
                if length.isdigit() and int(length) > limit:
                    return request, None  # refuse at once; never read a body we will not use
                continue
            if isinstance(event, h11.Data):
                if request is None or len(body) + len(event.data) > self._body_limit(request):
                    too_big = True
                else:
                    body += event.data
                continue
            if isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return request, (None if too_big else bytes(body))
            if isinstance(event, h11.ConnectionClosed):
                return None, None

    def _body_limit(self, request: h11.Request) -> int:
        """VPN sign-in bodies are small XML; portal uploads (roster CSVs) may be larger."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        method, target = request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace")
        if self.portal is None or asgi_bridge.is_vpn_request(method, target, headers):
            return MAX_BODY
        return self.cfg.portal.max_upload + 64 * 1024  # room for the multipart framing

    # --- sign-in (runs in a worker thread: Argon2 and the database block) -------------------

    def _login_step(
        self, login: GatewayLogin | None, body: bytes, target: str, headers: dict[str, str], source: str | None
    ) -> tuple[GatewayLogin | None, bytes, list[tuple[str, str]]]:
        try:
            req = xmlauth.parse(body)
        except xmlauth.XmlAuthError as exc:
            metrics.PROTOCOL_ERRORS.labels("xml").inc()
            logs.event("gateway.bad_xml", logging.WARNING, source=source, error=str(exc))
            fail = xmlauth.auth_form(
                handle="-",
                title=self.cfg.service.name,
                inputs=[],
                message="The VPN client sent a request the gateway cannot read.",
                error="The VPN client sent a request the gateway cannot read.",
            )
            return login, fail, []
        now = self.ctx.clock.now()
        with self._registry_lock:
            for stale in [h for h, lg in self.logins.items() if lg.expired(now)]:
                del self.logins[stale]
        if req.kind == "logout":
            self._logout(req.session_token)
            return None, xmlauth.logout_ok(), []
        handle = req.handle or _cookie(headers.get("cookie", ""), "webvpncontext")
        with self._registry_lock:
            known = self.logins.get(handle or "")
        # A sign-in continues only from the address that began it.
        if req.kind != "init" and known is not None and known.source == source:
            login = known
        if login is None or req.kind == "init":
            device = _device_token(target, req.group_access, headers.get("cookie", ""))
            login = GatewayLogin(
                self.ctx,
                source=source,
                user_agent=headers.get("user-agent"),
                cert_sha1=self.cert_sha1,
                device_token=device,
            )
            with self._registry_lock:
                self.logins[login.handle] = login
        reply = login.handle_request(req)
        cookies = [("Set-Cookie", f"webvpncontext={login.handle}; Secure; HttpOnly; Max-Age=300")]
        if reply.finished:
            with self._registry_lock:
                self.logins.pop(login.handle, None)
            metrics.LOGINS.labels("ok" if reply.token else "refused").inc()
            logs.event(
                "gateway.login",
                source=source,
                outcome="ok" if reply.token else "refused",
                user=login._engine.username if login._engine else None,
            )
        if reply.token:
            cookies.append(("Set-Cookie", f"webvpn={reply.token}; Secure; HttpOnly"))
            if reply.notice and reply.session_id:
                self.notices[reply.session_id] = reply.notice
        if reply.device_token:
            days = self.cfg.trusted_devices.lifetime.days
            cookies.append(
                ("Set-Cookie", f"campusvpn-device={reply.device_token}; Secure; HttpOnly; Max-Age={days * 86400}")
            )
        return (None if reply.finished else login), reply.body, cookies

    def _logout(self, token: str | None) -> None:
        if not token:
            return
        with self.ctx.tx() as s:
            row = sessions.resumable(self.ctx, s, token)
            if row is not None:
                sessions.end(self.ctx, s, row, "Signed out", actor=row.username)

    # --- CONNECT ---------------------------------------------------------------------------

    def _connect_session(self, token: str | None, source: str | None) -> bytes | tuple[VpnSession, bytes]:
        if not token:
            return refused_response(401, "Cookie is not acceptable")
        with self.ctx.tx() as s:
            row = sessions.resumable(self.ctx, s, token)
            if row is None:
                return refused_response(401, "Cookie is not acceptable")
            user = s.get(User, row.user_id)
            assert user is not None
            decision = eligibility.decision_for(self.ctx, s, user)
            if not decision.allowed:
                sessions.end(self.ctx, s, row, decision.user_message(), actor="policy")
                return refused_response(503, "Service Unavailable", decision.user_message())
            self._note_changes(decision)
            profile = next((p for p in self.cfg.vpn.profiles if p.name == row.profile), None)
            settings = self.cfg.vpn.settings_for(profile)
            notice = self.notices.pop(row.public_id, None)
            if notice:
                settings = settings.model_copy(update={"banner": "\n".join(x for x in (settings.banner, notice) if x)})
            now = self.ctx.clock.now()
            g = self.cfg.gateway
            timers = Timers(
                dpd=int(g.dpd.total_seconds()),
                keepalive=int(g.keepalive.total_seconds()),
                idle_timeout=int(g.idle_timeout.total_seconds()),
                session_remaining=max(1, int((row.expires_at - now).total_seconds())),
                disconnected_timeout=int(g.disconnected_timeout.total_seconds()),
            )
            row.connected, row.node, row.last_seen_at = True, self.node, now
            s.flush()
            s.expunge(row)  # handed to the event loop; detached so it never lazy-loads there
            return row, connected_response(settings, row.address, timers)

    async def _run_tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        row: VpnSession,
        leftover: bytes,
        user_agent: str,
    ) -> None:
        old = self.tunnels.get(row.public_id)
        if old is not None:  # the same cookie connected again: the newer connection wins
            self._close(old, "session re-used by a new connection", end=False)
        transport = cast(asyncio.Transport, writer.transport)  # a full transport: it reads, too
        t = Tunnel(row.public_id, row.username, row.user_id, row.address, _ip4(row.address), transport, row.expires_at)
        self.tunnels[t.session_id] = t
        self.by_address[t.addr_bytes] = t
        metrics.SESSIONS.set(len(self.tunnels))
        logs.event("gateway.tunnel_up", session=t.session_id, user=t.username, address=t.address)
        protocol = TunnelProtocol(t, self._from_client)
        transport.set_protocol(protocol)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        # What the stream reader already holds arrived before the switch: it goes first, in order.
        reader.feed_eof()
        protocol.feed(leftover + await reader.read())
        if not transport.is_reading():  # the stream reader may have paused a fast sender
            transport.resume_reading()
        # openconnect without DTLS holds its tunnel device back for one pass of its loop, which then
        # sleeps up to a second unless something arrives: a keepalive just after the answer ends
        # that wait (a client that is quicker reads it before sleeping, at no cost).
        for delay in FIRST_KEEPALIVES:
            asyncio.get_running_loop().call_later(delay, self._keepalive, t)
        ending = Ending("gateway stopping")
        try:
            ending = await protocol.ended
        finally:
            if ending.protocol_error:
                metrics.PROTOCOL_ERRORS.labels("cstp").inc()
                logs.event("gateway.bad_frame", logging.WARNING, session=t.session_id, error=ending.reason)
            if self.tunnels.get(t.session_id) is t:
                if ending.signed_off:
                    self._end_later(t, ending.reason)
                else:
                    self._detach(t, ending.reason)

    def _keepalive(self, t: Tunnel) -> None:
        if not t.closing and self.tunnels.get(t.session_id) is t:
            t.send(KEEPALIVE_FRAME)

    def _from_client(self, t: Tunnel, packet: memoryview) -> None:
        # Only IPv4 from the client's own address goes on: no spoofing other clients or the campus.
        if len(packet) < 20 or packet[0] >> 4 != 4 or packet[12:16] != t.addr_bytes:
            return
        t.bytes_in += len(packet)
        t.packets_in += 1
        if self.tun_fd is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self.tun_fd, packet)

    def _tun_readable(self) -> None:
        assert self.tun_fd is not None
        batches: dict[Tunnel, list[bytes]] = {}
        now = time.monotonic()
        # Busy (woken again within 2 ms): read a batch, up to the bounded 256 so one flood cannot
        # starve the loop. Idle: read one packet and leave; if another waits, epoll wakes us at
        # once. That saves the read that ends a batch with EAGAIN, whose exception is costly on
        # a machine whose caches went cold while it slept.
        batch = 256 if now - self._tun_woken < 0.002 else 1
        self._tun_woken = now
        for _ in range(batch):
            try:
                packet = os.read(self.tun_fd, 65535)
            except (BlockingIOError, InterruptedError):
                break
            if len(packet) < 20 or packet[0] >> 4 != 4:
                continue
            t = self.by_address.get(packet[16:20])
            if t is None or t.closing or len(packet) > cstp.MAX_PAYLOAD:
                continue
            if t.paused:  # its queue is full: drop, as a router does
                metrics.PACKETS_DROPPED.inc()
                continue
            t.bytes_out += len(packet)
            t.packets_out += 1
            frames = batches.get(t)
            if frames is None:
                batches[t] = [cstp.encode(FrameType.DATA, packet)]
            else:
                frames.append(cstp.encode(FrameType.DATA, packet))
        for t, frames in batches.items():
            t.last_data = now
            # Each frame becomes its own TLS record (openconnect needs that), and the records of one
            # wake-up leave in a single socket write.
            t.transport.writelines(frames)

    # --- ending ----------------------------------------------------------------------------

    def _close(self, t: Tunnel, reason: str, *, end: bool) -> None:
        """Tell the client why (it prints the reason) and close; `end` also ends the session."""
        if t.closing:
            return
        t.closing = True
        with contextlib.suppress(Exception):
            t.send(cstp.disconnect(reason))
            t.transport.close()
        self._forget(t)
        self._write_later(t, connected=None)  # its traffic; the session's state is someone else's to set
        logs.event("gateway.tunnel_closed", session=t.session_id, user=t.username, reason=reason, ended=end)

    def _forget(self, t: Tunnel) -> None:
        if self.tunnels.get(t.session_id) is t:
            del self.tunnels[t.session_id]
        if self.by_address.get(t.addr_bytes) is t:
            del self.by_address[t.addr_bytes]
        metrics.SESSIONS.set(len(self.tunnels))

    def _detach(self, t: Tunnel, reason: str) -> None:
        """The connection went away; the session stays resumable. Called on the event loop."""
        self._forget(t)
        self._write_later(t, connected=False)
        logs.event("gateway.tunnel_down", session=t.session_id, user=t.username, reason=reason)

    def _end_later(self, t: Tunnel, reason: str) -> None:
        """End the session for good (BYE, idle, time limit). Called on the event loop."""
        self._forget(t)
        logs.event("gateway.session_ended", session=t.session_id, user=t.username, reason=reason)
        din, dout = self._take_counts(t)
        asyncio.get_running_loop().run_in_executor(None, self._end_session, t.session_id, t.username, reason, din, dout)

    def _end_session(self, session_id: str, username: str, reason: str, din: int, dout: int) -> None:
        sessions.mark(self.ctx, session_id, connected=False, node=self.node, bytes_in=din, bytes_out=dout)
        with self.ctx.tx() as s:
            row = s.scalars(select(VpnSession).where(VpnSession.public_id == session_id)).one_or_none()
            if row is not None:
                sessions.end(self.ctx, s, row, reason, actor=username)

    def _take_counts(self, t: Tunnel) -> tuple[int, int]:
        """Traffic since the last write, counted into the metrics (on the event loop: no locks needed)."""
        din, dout = t.bytes_in - t.flushed_in, t.bytes_out - t.flushed_out
        pin, pout = t.packets_in - t.flushed_pin, t.packets_out - t.flushed_pout
        t.flushed_in, t.flushed_out, t.flushed_pin, t.flushed_pout = (
            t.bytes_in,
            t.bytes_out,
            t.packets_in,
            t.packets_out,
        )
        metrics.BYTES_IN.inc(din)
        metrics.BYTES_OUT.inc(dout)
        metrics.PACKETS_IN.inc(pin)
        metrics.PACKETS_OUT.inc(pout)
        return din, dout

    def _write_later(self, t: Tunnel, *, connected: bool | None) -> None:
        din, dout = self._take_counts(t)
        # A detach recorded late must not mark a session that has since reconnected as detached.
        at = None if connected else self.ctx.clock.now()
        self._marks.append(sessions.Mark(t.session_id, connected, din, dout, at))
        if not self._marks_writing:  # one writer at a time; what queues meanwhile goes in its next batch
            self._marks_writing = True
            asyncio.get_running_loop().call_soon(self._write_marks)

    def _write_marks(self) -> None:
        batch, self._marks = self._marks, []
        done = asyncio.get_running_loop().run_in_executor(None, self._store_marks, batch)
        done.add_done_callback(self._marks_stored)

    def _marks_stored(self, _done: asyncio.Future[None]) -> None:
        if self._marks:
            self._write_marks()
        else:
            self._marks_writing = False

    def _store_marks(self, batch: list[sessions.Mark]) -> None:
        try:
            sessions.mark_many(self.ctx, batch, node=self.node)
        except Exception as exc:
            logs.event("gateway.write_failed", logging.ERROR, sessions=len(batch), error=str(exc))

    # --- housekeeping: ended sessions, policy, timers ----------------------------------------

    def _housekeeping_db(self) -> list[tuple[str, str]]:
        """Sessions ended elsewhere (CLI, portal, policy) that have a tunnel here, with the reason."""
        now = self.ctx.clock.now()
        since = self._last_end_check
        self._last_end_check = now
        with self.ctx.tx() as s:
            ended = s.execute(
                select(VpnSession.public_id, VpnSession.end_reason).where(
                    VpnSession.ended_at.is_not(None), VpnSession.ended_at >= since - timedelta(seconds=2)
                )
            ).all()
        if time.monotonic() - self._last_expiry >= 10:
            self._last_expiry = time.monotonic()
            with self.ctx.tx() as s:
                sessions.expire_stale(self.ctx, s)
        if now >= self._next_policy_at:
            self._recheck_policy()
        return [(sid, reason or "Session ended") for sid, reason in ended if sid in self.tunnels]

    def _recheck_policy(self) -> None:
        """A training deadline or an affiliation end passes while people are connected."""
        now = self.ctx.clock.now()
        self._next_policy_at = now + self.cfg.gateway.policy_recheck
        for uid in {t.user_id for t in self.tunnels.values()}:
            with self.ctx.tx() as s:
                user = s.get(User, uid)
                if user is None:
                    continue
                d = eligibility.decision_for(self.ctx, s, user)
                if not d.allowed:
                    sessions.end_for_user(s, user, now, d.user_message(), actor="policy")
                else:
                    self._note_changes(d)

    def _note_changes(self, d: Decision) -> None:
        upcoming = [n.until for n in d.notices if n.until is not None and n.until > d.at]
        if upcoming:
            self._next_policy_at = min(self._next_policy_at, min(upcoming))

    def _check_timers(self) -> None:
        mono = time.monotonic()
        now = self.ctx.clock.now()
        g = self.cfg.gateway
        silent_limit = 3 * g.dpd.total_seconds()
        for t in list(self.tunnels.values()):
            if now >= t.expires_at:
                self._close(t, "Max time exceeded: sign in again", end=True)
                self._end_later(t, "session time limit reached")
            elif mono - t.last_data > g.idle_timeout.total_seconds():
                self._close(t, "Idle Timeout", end=True)
                self._end_later(t, "idle timeout")
            elif mono - t.last_rx > silent_limit:
                t.transport.close()  # dead peer: drop the connection, keep the session for resumption
                self._detach(t, "dead peer")


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name and v:
            return v
    return None


def _device_token(target: str, group_access: str | None, cookie: str) -> str | None:
    """A trusted-device token travels in the URL the client connects to (`/d/TOKEN`) or a cookie."""
    for url in (target, group_access or ""):
        path = url.split("://", 1)[-1]
        path = path[path.find("/") :] if "/" in path else ""
        parts = [p for p in path.split("?")[0].split("/") if p]
        if len(parts) >= 2 and parts[0] == "d":
            return parts[1][:100]
    return _cookie(cookie, "campusvpn-device")


def _ip4(address: str) -> bytes:
    return bytes(int(x) for x in address.split("."))


def _xml(conn: h11.Connection, body: bytes, extra: list[tuple[str, str]]) -> bytes:
    headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Transcend-Version", "1"),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    return (
        (conn.send(h11.Response(status_code=200, headers=headers)) or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )


def _plain(conn: h11.Connection, status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    if status >= 400:
        headers.append(("Connection", "close"))
    try:
        return (
            (conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            + (conn.send(h11.Data(data=body)) or b"")
            + (conn.send(h11.EndOfMessage()) or b"")
        )
    except h11.LocalProtocolError:
        return b""


def prepare_tun(ctx: Context) -> int:
    """Create and configure the TUN device; done before the event loop starts (pyroute2 runs its own)."""
    from campusvpn.gateway import tun

    fd = tun.open_tun(ctx.config.gateway.tun_device)
    pools = sorted({ctx.config.vpn.settings_for(p).pool for p in [None, *ctx.config.vpn.profiles]})
    tun.configure(ctx.config.gateway.tun_device, pools, ctx.config.vpn.mtu)
    return fd


async def serve(ctx: Context, tun_fd: int | None, after_bind: Callable[[], None] | None = None) -> None:
    """Run the gateway until SIGTERM or SIGINT; `after_bind` runs once both listeners are bound (the CLI
    gives up root there)."""
    from prometheus_client import start_http_server

    g = ctx.config.gateway
    mhost, _, mport = g.metrics_listen.rpartition(":")
    start_http_server(int(mport), addr=mhost.strip("[]"))
    gw = Gateway(ctx, tun_fd=tun_fd)
    loop = asyncio.get_running_loop()
    host, _, port = g.listen.rpartition(":")
    await gw.start(host.strip("[]"), int(port))
    if after_bind is not None:
        after_bind()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    keeper = asyncio.create_task(gw.run_housekeeping())
    await stop.wait()
    keeper.cancel()
    await gw.stop()
    logs.event("gateway.stopped")
