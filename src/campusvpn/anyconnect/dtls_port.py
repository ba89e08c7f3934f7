"""The UDP port for AnyConnect's DTLS: a thin asyncio layer that sorts datagrams to tunnels.

A tunnel's CSTP connection registers an offer (the session id its CONNECT answer named). A datagram
from a known UDP peer goes to that peer's DTLS connection; from an unknown one it is read only if
it is a hello naming a live offer and comes from the address the tunnel's TLS connection came
from: everything else is dropped unread, so strangers cost a dictionary lookup. Once the
resumption handshake finishes the `DtlsChannel` joins the tunnel's channels, and the hub prefers it
while the client keeps it alive; the CSTP stream stays the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from OpenSSL import SSL

from campusvpn.anyconnect import dtls_records
from campusvpn.anyconnect.connection import Data, Disconnect, DpdRequest, ProtocolError
from campusvpn.anyconnect.dtls_crypto import Keys, Peer
from campusvpn.anyconnect.dtls_offer import DTLS_GCM_OVERHEAD, PACKET_TYPE
from campusvpn.platform import logs, metrics
from campusvpn.tunnels.tunnel import Tunnel

HANDSHAKE_TIMEOUT = 10.0  # a peer that has not finished its handshake by then is forgotten
RETRANSMIT = (1.0, 2.0, 4.0)  # seconds after a hello: resend our flight if the client is still waiting

Address = tuple[str, int]


@dataclass(eq=False)
class Offer:
    """What one tunnel's CONNECT answer offered, until the tunnel's CSTP connection ends."""

    session_id: bytes
    tunnel: Tunnel
    source: str  # the TLS connection's address: the only one whose hello we accept
    mtu: int
    quiet_limit: float  # without a packet over DTLS for this long, the hub goes back to CSTP
    from_client: Callable[[Tunnel, memoryview], None]
    channel: DtlsChannel | None = None  # the established one


class DtlsChannel:
    """A tunnel's DTLS channel: one UDP peer, its DTLS connection, and the Channel interface."""

    def __init__(self, port: DtlsPort, offer: Offer, addr: Address) -> None:
        self.port = port
        self.offer = offer
        self.addr = addr
        self.peer = Peer(port.keys, offer.mtu + PACKET_TYPE + DTLS_GCM_OVERHEAD)
        self.up = False
        self.closed = False
        self.last_rx = time.monotonic()
        self.started = self.last_rx

    # --- Channel -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        # A client that lost UDP goes back to CSTP without a word: silence means the same for us.
        return self.up and not self.closed and time.monotonic() - self.last_rx < self.offer.quiet_limit

    def send_packets(self, packets: Sequence[bytes]) -> None:
        seal = self.peer.seal
        limit = self.offer.mtu
        records: list[bytes] = []
        too_big: list[bytes] = []
        for p in packets:
            if len(p) > limit:  # larger than a datagram holds: the stream carries it
                too_big.append(p)
            else:
                records.append(seal(b"\x00" + p))
        if records:
            self.port.send_records(records, self.addr)
        if too_big and self.offer.tunnel.channel.ready:
            self.offer.tunnel.channel.send_packets(too_big)

    def send_keepalive(self) -> None:
        if self.up and not self.closed:
            self.port.sendto(self.peer.seal(dtls_records.KEEPALIVE), self.addr)

    def close(self, reason: str) -> None:
        if self.up and not self.closed:
            with contextlib.suppress(SSL.Error):
                self.port.sendto(self.peer.seal(dtls_records.disconnect(reason)), self.addr)
        self.port.forget_channel(self, "closed", keep_session=False)  # the tunnel is over

    def drop(self) -> None:
        self.port.forget_channel(self, "closed")

    # --- datagrams -----------------------------------------------------------------------------

    def receive(self, datagram: bytes) -> None:
        try:
            records, reply = self.peer.receive(datagram)
        except SSL.Error as exc:
            self.port.drop_datagram("handshake failed" if not self.up else "bad record")
            if not self.up:
                logs.event("gateway.dtls_failed", session=self.offer.tunnel.session_id, error=str(exc)[:200])
                self.port.forget_channel(self, "handshake failed")
            return
        if reply:
            self.port.sendto(reply, self.addr)
        if not self.up:
            if not self.peer.established:
                return
            if not self.peer.resumed:  # a full handshake: not the session we offered
                self.port.drop_datagram("not resumed")
                self.port.forget_channel(self, "not resumed")
                return
            self.up = True
            self.port.channel_up(self)
            if self.closed:
                return
        if not records:
            return
        self.last_rx = now = time.monotonic()
        t = self.offer.tunnel
        t.last_rx = now
        for record in records:
            ev = dtls_records.read_packet(record)
            if type(ev) is Data:
                t.last_data = now
                self.offer.from_client(t, ev.payload)  # type: ignore[arg-type]
            elif type(ev) is DpdRequest:
                self.port.sendto(self.peer.seal(ev.reply), self.addr)
            elif type(ev) is Disconnect:  # the client gave up DTLS; its CSTP stream says the rest
                self.port.forget_channel(self, "client disconnected DTLS")
                return
            elif type(ev) is ProtocolError:
                self.port.drop_datagram("bad packet type")


# A datagram channel has no flow control: what the client's socket cannot hold is lost, and the TCP
# inside the tunnel backs off. openconnect's socket keeps Linux's default 208 KiB, about 90 of our
# datagrams, and a client that shares the CPU with us (or whose scheduler is slow to wake it) does not
# read while we send: a TUN batch of up to 256 packets in one go overflowed it (bench/ANALYSIS.md,
# "DTLS data path"). So a batch leaves in bursts of BURST datagrams, each burst in one GSO send where
# the records are of a size, and between bursts the worker offers the CPU to whoever waits for it.
BURST = 16
UDP_SEGMENT = 103  # linux/udp.h: one sendmsg, many datagrams (not in Python's socket module)
_GSO_BYTES = 65000  # a UDP send carries at most 64 KiB


def bursts(records: Sequence[bytes], limit: int = BURST) -> list[Sequence[bytes]]:
    """The records in order, cut into runs one GSO send can carry: at most `limit` records, all of
    the first one's size except the last, which may be shorter, and under 64 KiB together."""
    out: list[Sequence[bytes]] = []
    start, n = 0, len(records)
    while start < n:
        size = len(records[start])
        end = start + 1
        total = size
        while end < n and end - start < limit and total + len(records[end]) <= _GSO_BYTES:
            m = len(records[end])
            if m > size:
                break
            end += 1
            total += m
            if m < size:  # a shorter one can only end a run
                break
        out.append(records[start:end])
        start = end
    return out


SOCKET_BUFFER = 4 * 1024 * 1024  # bytes: bursts of a fast TCP stream inside the tunnel, without loss


def udp_socket(host: str, port: int) -> socket.socket:
    """The bound UDP socket, with buffers for bursts (forced while we may: start-up runs as root)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    for forced, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER)
        except OSError:  # not root: as much as net.core.[rw]mem_max allows
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # Linux; not in Python's socket module


class DtlsPort(asyncio.DatagramProtocol):
    """The gateway's DTLS endpoint: offers by session id, channels by UDP peer."""

    def __init__(self, keys: Keys, port: int) -> None:
        self.keys = keys
        self.port = port  # told to clients in X-DTLS-Port
        self.offers: dict[bytes, Offer] = {}
        self.peers: dict[Address, DtlsChannel] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None  # the same socket, for GSO sends (uvloop's has no sendmsg)
        self._gso = True  # until the kernel refuses it

    # --- offers (from the CSTP side) ------------------------------------------------------------

    def offer(self, offer: Offer) -> None:
        self.offers[offer.session_id] = offer

    def withdraw(self, session_id: bytes) -> None:
        """The tunnel's CSTP connection ended: so does its DTLS."""
        offer = self.offers.pop(session_id, None)
        for ch in [c for c in self.peers.values() if c.offer is offer]:
            self.forget_channel(ch, "tunnel ended", keep_session=False)  # nobody resumes it now

    # --- asyncio --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._sock = socket.socket(fileno=os.dup(sock.fileno()))

    def datagram_received(self, data: bytes, addr: Address) -> None:
        addr = addr[:2]
        ch = self.peers.get(addr)
        if ch is not None:
            ch.receive(data)
            return
        sid = dtls_records.hello_session_id(data)
        offer = self.offers.get(sid) if sid else None
        if offer is None:
            self.drop_datagram("unknown peer")
            return
        if addr[0] != offer.source:
            self.drop_datagram("wrong source")
            logs.event("gateway.dtls_refused", session=offer.tunnel.session_id, source=addr[0], reason="wrong source")
            return
        # A client starting DTLS again (new socket) gets a new channel; the one it had stays until
        # the new one is up, so a hello that fails cannot take a working channel down.
        ch = DtlsChannel(self, offer, addr)
        self.peers[addr] = ch
        loop = asyncio.get_running_loop()
        loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_deadline, ch)
        for delay in RETRANSMIT:
            loop.call_later(delay, self._retransmit, ch)
        ch.receive(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for a peer that went away: its channel goes quiet and the hub uses CSTP

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def send_records(self, records: Sequence[bytes], addr: Address) -> None:
        """Datagrams for one client, in bursts (see BURST), each in one send where the kernel can."""
        sock = self._sock
        if sock is None or self.transport is None:
            for r in records:
                self.sendto(r, addr)
            return
        runs = bursts(records)
        last = len(runs) - 1
        for i, run in enumerate(runs):
            try:
                if len(run) == 1 or not self._gso:
                    for r in run:
                        sock.sendto(r, addr)
                else:
                    seg = len(run[0]).to_bytes(2, sys.byteorder)
                    sock.sendmsg(run, [(socket.SOL_UDP, UDP_SEGMENT, seg)], 0, addr)
            except BlockingIOError:  # the send buffer is full: the transport queues the rest
                for r in [x for rest in runs[i:] for x in rest]:
                    self.transport.sendto(r, addr)
                return
            except OSError as exc:
                if len(run) > 1 and self._gso:  # no GSO here (EIO, EINVAL): one datagram per send from now on
                    self._gso = False
                    logs.event("gateway.dtls_no_gso", error=str(exc))
                    for r in run:
                        self.transport.sendto(r, addr)
                # else: ICMP errors and the like, as the transport would ignore them
            if i < last:
                os.sched_yield()

    def close(self) -> None:
        for ch in list(self.peers.values()):
            ch.drop()
        if self.transport is not None:
            self.transport.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # --- channels -------------------------------------------------------------------------------

    def channel_up(self, ch: DtlsChannel) -> None:
        if self.offers.get(ch.offer.session_id) is not ch.offer:  # the tunnel ended meanwhile
            self.forget_channel(ch, "tunnel ended", keep_session=False)
            return
        old = ch.offer.channel
        if old is not None:
            self.forget_channel(old, "replaced by a new DTLS connection")
        ch.offer.channel = ch
        t = ch.offer.tunnel
        t.extra_channels.append(ch)
        metrics.DTLS_CHANNELS.inc()
        logs.event(
            "gateway.channel_up",
            channel="dtls",
            session=t.session_id,
            user=t.username,
            peer=f"{ch.addr[0]}:{ch.addr[1]}",
            handshake_ms=round((time.monotonic() - ch.started) * 1000, 1),
        )

    def forget_channel(self, ch: DtlsChannel, reason: str, *, keep_session: bool = True) -> None:
        if ch.closed:
            return
        ch.closed = True
        ch.peer.release(keep_session=keep_session)
        if self.peers.get(ch.addr) is ch:
            del self.peers[ch.addr]
        if ch.offer.channel is ch:
            ch.offer.channel = None
        t = ch.offer.tunnel
        if ch in t.extra_channels:
            t.extra_channels.remove(ch)
        if ch.up:
            metrics.DTLS_CHANNELS.dec()
            logs.event("gateway.channel_down", channel="dtls", session=t.session_id, user=t.username, reason=reason)

    def drop_datagram(self, reason: str) -> None:
        metrics.DTLS_DROPPED.labels(reason).inc()

    def _handshake_deadline(self, ch: DtlsChannel) -> None:
        if not ch.up and not ch.closed:
            self.forget_channel(ch, "handshake timed out")

    def _retransmit(self, ch: DtlsChannel) -> None:
        if not ch.up and not ch.closed:
            flight = ch.peer.retransmit()
            if flight:
                self.sendto(flight, ch.addr)
