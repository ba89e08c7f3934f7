"""The front door: the public TLS port, HTTP/1.1, and which site answers each request.

It owns the listening socket, TLS (`frontdoor.tls`), request reading with h11, the connection
budget (`frontdoor.budget`) and the time limits. Each request goes to the first site that claims it (a VPN protocol)
or to the default site (the portal, when it is on); an answer that upgrades the connection hands
the stream to the protocol's tunnel and frees the connection's budget slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import h11

from campusvpn.frontdoor.budget import Budget, Slot
from campusvpn.frontdoor.http import Peer, Request, Site, Upgrade, plain
from campusvpn.frontdoor.tls import TlsServerProtocol
from campusvpn.platform import logs, metrics

READ_SIZE = 256 * 1024
MAX_HEAD = 16 * 1024


def ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # a client-started renegotiation would stall a memory-BIO write
    return ctx


@dataclass(frozen=True)
class Limits:
    """The front door's time limits, in seconds, and its slowest accepted upload."""

    handshake: float  # TLS handshake
    header: float  # a request's line and headers, once they start
    keepalive: float  # idle, waiting for the next request
    min_rate: int  # bytes per second for a body, after `header` seconds of grace


class FrontDoor:
    def __init__(
        self,
        tls: ssl.SSLContext,
        sites: Sequence[Site],
        default: Site,
        *,
        budget: Budget,
        limits: Limits,
    ) -> None:
        self.tls = tls
        self.sites = sites
        self.default = default
        self.budget = budget
        self.limits = limits
        budget.on_change = metrics.PENDING.set  # summed over the workers (multiprocess livesum)
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Listen on host:port, or accept on `sock`, a listening socket bound already (shared by workers)."""

        def http_phase() -> asyncio.BaseProtocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=READ_SIZE), self._client)

        def protocol() -> asyncio.BaseProtocol:
            return TlsServerProtocol(self.tls, http_phase, self.limits.handshake, self._admit)

        loop = asyncio.get_running_loop()
        if sock is not None:
            self.server = await loop.create_server(protocol, sock=sock, backlog=1024)
        else:
            self.server = await loop.create_server(protocol, host, port, backlog=1024)

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    def site_for(self, request: Request) -> Site:
        for site in self.sites:
            if site.claims(request):
                return site
        return self.default

    def _admit(self, address: str | None) -> Slot | None:
        slot = self.budget.admit(address)
        if slot is None:
            metrics.PROTOCOL_ERRORS.labels("too_many_pending").inc()
        return slot

    # --- one client connection ------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_addr, local = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
        peer = Peer(
            str(peer_addr[0]) if peer_addr else None,
            (str(peer_addr[0]), int(peer_addr[1])) if peer_addr else None,
            (str(local[0]), int(local[1])) if local else None,
        )
        slot: Slot | None = writer.get_extra_info("admission_slot")
        try:
            upgrade = await self._http(reader, writer, peer)
            if upgrade is not None:
                if slot is not None:
                    slot.release()  # a tunnel now: it no longer counts against the sign-in budget
                # What the stream reader already holds arrived before the switch: it goes first, in order.
                leftover, switch = upgrade
                reader.feed_eof()
                await switch.run(writer.transport, leftover + await reader.read())
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:  # the gateway is stopping; sessions stay resumable
            pass
        except Exception as exc:  # one client's failure never takes the gateway down
            logs.event(
                "gateway.connection_error", logging.ERROR, source=peer.source, error=f"{type(exc).__name__}: {exc}"
            )
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _http(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> tuple[bytes, Upgrade] | None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        idle_limit = self.limits.header  # the first request follows the handshake at once
        while True:
            head, body = await self._read_request(conn, reader, idle_limit)
            idle_limit = self.limits.keepalive
            if head is None:
                return None
            site = self.site_for(head)
            if head.headers.get("transfer-encoding") is not None and head.headers.get("content-length") is not None:
                # RFC 9112 6.1: a message with both may be an attempt at request smuggling
                writer.write(plain(conn, 400, "A request may not carry both Content-Length and Transfer-Encoding."))
                await writer.drain()
                return None
            if self.budget.in_reserve and not await site.holds_session(head):
                metrics.PROTOCOL_ERRORS.labels("reserved_for_sessions").inc()
                writer.write(plain(conn, 503, "The gateway is busy; try again in a minute."))
                await writer.drain()
                return None
            if body is None:
                writer.write(plain(conn, 413, site.too_large))
                await writer.drain()
                return None
            answer = await site.respond(head, body, conn, peer)
            if isinstance(answer, Upgrade):
                writer.write(answer.response)
                await writer.drain()
                return conn.trailing_data[0], answer
            writer.write(answer.data)
            await writer.drain()
            if answer.close or conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return None
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return None

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, idle_limit: float
    ) -> tuple[Request | None, bytes | None]:
        """The next request and its body; the body is None when it exceeds the site's limit.

        Each part has a deadline of its own: the first byte within `idle_limit`, the head within
        `limits.header` of its first byte, the body at `limits.min_rate` or faster. A client that
        trickles a byte at a time cannot hold its slot longer than that.
        """
        reading = RequestReading(conn, lambda r: self.site_for(r).body_limit(r))
        deadline = time.monotonic() + idle_limit
        started = conn.trailing_data[0] != b""  # a pipelined request already began
        if started:
            deadline = time.monotonic() + self.limits.header
        while True:
            step = reading.advance()
            if step is Step.NEED_DATA:
                left = deadline - time.monotonic()
                if left <= 0:
                    metrics.PROTOCOL_ERRORS.labels("slow_request").inc()
                    return None, None
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout=left)
                if not data:
                    return None, None
                if not started:
                    started = True
                    deadline = time.monotonic() + self.limits.header
                conn.receive_data(data)
            elif step is Step.HEAD:
                deadline = time.monotonic() + self.limits.header + reading.expected / self.limits.min_rate
            else:
                if reading.error is not None:
                    metrics.PROTOCOL_ERRORS.labels("http").inc()
                    logs.event("gateway.bad_http", logging.WARNING, error=reading.error)
                return reading.result()


class Step(enum.Enum):
    NEED_DATA = "need_data"  # feed h11 more bytes
    HEAD = "head"  # the request line and headers arrived: `expected` body bytes follow
    DONE = "done"  # `result()` is ready


@dataclass
class RequestReading:
    """Reading one request from h11's events, sans-IO: the front door adds the sockets and deadlines.

    `body_limit` is the limit of the site that claims the request. A body over it is dropped
    (`result()` gives None for it); an announced one is refused before any of it is read.
    """

    conn: h11.Connection
    body_limit: Callable[[Request], int]
    request: Request | None = None
    limit: int = 0
    expected: int = 0  # body bytes announced by Content-Length (else the limit)
    body: bytearray = field(default_factory=bytearray)
    too_big: bool = False
    error: str | None = None  # the client broke HTTP
    done: bool = False

    def advance(self) -> Step:
        while not self.done:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.error = str(exc)
                return self._end(None)
            if event is h11.NEED_DATA:
                return Step.NEED_DATA
            if isinstance(event, h11.Request):
                request = self.request = Request.of(event)
                self.limit = self.body_limit(request)
                length = request.headers.get("content-length", "0")
                if length.isdigit() and int(length) > self.limit:
                    self.too_big = True  # refuse at once; never read a body we will not use
                    return self._end(request)
                self.expected = int(length) if length.isdigit() else self.limit
                return Step.HEAD
            if isinstance(event, h11.Data):
                if self.request is None or len(self.body) + len(event.data) > self.limit:
                    self.too_big = True
                else:
                    self.body += event.data
                continue
            if isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return self._end(self.request)
            if isinstance(event, h11.ConnectionClosed):
                return self._end(None)
        return Step.DONE

    def _end(self, request: Request | None) -> Step:
        self.request = request
        self.done = True
        return Step.DONE

    def result(self) -> tuple[Request | None, bytes | None]:
        """The request (None if there is none to answer) and its body (None when over the limit)."""
        if self.request is None:
            return None, None
        return self.request, (None if self.too_big else bytes(self.body))
