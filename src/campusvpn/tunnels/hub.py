"""The tunnel hub: this node's live tunnels, their addresses and the TUN device, protocol-neutral.

Everything here runs on the event loop and owns its dictionaries; threads (database writes, the
policy re-check) get snapshots and hand results back. Protocol packages attach a tunnel with the
channel their client connected over, feed it the client's packets (`from_client`) and report how
its connection ended; the hub routes packets from the TUN device to the tunnel whose address they
are for, counts traffic and closes tunnels with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable

from campusvpn.platform import logs, metrics
from campusvpn.service import client_texts, live_sessions
from campusvpn.service.context import Context
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.tunnels.accounting import MarksWriter, has_unwritten_traffic, take_counts
from campusvpn.tunnels.tunnel import Channel, Ending, SessionInfo, Tunnel

# Larger IP packets than this never go to a client (every protocol frames at most this much).
MAX_PACKET = 16384 - 8


def session_info(outcome: live_sessions.Attached, protocol: str) -> SessionInfo:
    """What the hub keeps of a session its client may connect now (every protocol's site builds it so)."""
    return SessionInfo(
        outcome.session_id,
        outcome.username,
        outcome.user_id,
        outcome.address,
        outcome.expires_at,
        protocol,
        outcome.language,
    )


class Hub:
    def __init__(self, ctx: Context, *, tun_fd: int | None, node: str) -> None:
        self.ctx = ctx
        self.tun_fd = tun_fd
        self.node = node
        self.tunnels: dict[str, Tunnel] = {}  # by session id
        self.by_address: dict[bytes, Tunnel] = {}
        self.live_by_protocol: Counter[str] = Counter()  # len(self.tunnels) by protocol, for the gauge
        self.marks = MarksWriter(ctx, node)
        self._tun_woken = 0.0

    # --- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        if self.tun_fd is not None:
            asyncio.get_running_loop().add_reader(self.tun_fd, self._tun_readable)

    def stop(self) -> None:
        if self.tun_fd is not None:
            asyncio.get_running_loop().remove_reader(self.tun_fd)
        # Sessions stay resumable: clients reconnect with their cookie once we are back.
        for t in list(self.tunnels.values()):
            self.detach(t, "gateway stopping")
            t.channel.drop()

    # --- registry --------------------------------------------------------------------------

    def attach(self, session: SessionInfo, channel: Channel) -> Tunnel:
        """A client connected a session's tunnel; a newer connection of the same session wins."""
        old = self.tunnels.get(session.session_id)
        if old is not None:
            self.close(old, "session re-used by a new connection", end=False, told=self.tell(old, Code.TUNNEL_REUSED))
        t = Tunnel(session, channel)
        self.tunnels[t.session_id] = t
        self.by_address[t.addr_bytes] = t
        self._count(session.protocol, +1)
        logs.event(
            "gateway.tunnel_up", protocol=session.protocol, session=t.session_id, user=t.username, address=t.address
        )
        return t

    def is_live(self, t: Tunnel) -> bool:
        return not t.closing and self.tunnels.get(t.session_id) is t

    def snapshot(self) -> tuple[frozenset[str], frozenset[int]]:
        """Session and user ids of the live tunnels, for work done off the event loop."""
        return frozenset(self.tunnels), frozenset(t.user_id for t in self.tunnels.values())

    def _forget(self, t: Tunnel) -> None:
        if self.tunnels.get(t.session_id) is t:
            del self.tunnels[t.session_id]
            self._count(t.session.protocol, -1)
        if self.by_address.get(t.addr_bytes) is t:
            del self.by_address[t.addr_bytes]

    def _count(self, protocol: str, delta: int) -> None:
        self.live_by_protocol[protocol] += delta
        metrics.SESSIONS.labels(protocol).set(self.live_by_protocol[protocol])

    # --- packets ---------------------------------------------------------------------------

    def from_client(self, t: Tunnel, packet: memoryview) -> None:
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
            if len(packet) < 20 or packet[0] >> 4 != 4 or len(packet) > MAX_PACKET:
                continue
            t = self.by_address.get(packet[16:20])
            if t is None or t.closing:
                continue
            packets = batches.get(t)
            if packets is None:
                batches[t] = [packet]
            else:
                packets.append(packet)
        for t, packets in batches.items():
            channel = t.best_channel()
            if channel is None:  # its queue is full: drop, as a router does
                metrics.PACKETS_DROPPED.inc(len(packets))
                continue
            t.last_data = now
            t.packets_out += len(packets)
            t.bytes_out += sum(map(len, packets))
            channel.send_packets(packets)

    def send_keepalive(self, t: Tunnel) -> None:
        if self.is_live(t):
            t.channel.send_keepalive()

    # --- ending ----------------------------------------------------------------------------

    def tell(self, t: Tunnel, code: Code) -> str:
        """`code` for this tunnel's client box, by the one rule of service.client_texts (the person's
        language, else both); the language came with the session, so no database query on the loop."""
        return client_texts.in_language(self.ctx, say(code), t.session.language)

    def close(self, t: Tunnel, reason: str, *, end: bool, told: str | None = None) -> None:
        """Tell the client why (it prints `told`, by default `reason`) and close; `end` says the
        session ended too. `reason` is for the logs: English whatever the person reads."""
        if t.closing:
            return
        t.closing = True
        for ch in t.channels():
            with contextlib.suppress(Exception):
                ch.close(told if told is not None else reason)
        self._forget(t)
        self.marks.note(t, connected=None)  # its traffic; the session's state is someone else's to set
        logs.event(
            "gateway.tunnel_closed",
            protocol=t.session.protocol,
            session=t.session_id,
            user=t.username,
            reason=reason,
            ended=end,
        )

    def detach(self, t: Tunnel, reason: str) -> None:
        """The connection went away; the session stays resumable."""
        self._forget(t)
        self.marks.note(t, connected=False)
        logs.event(
            "gateway.tunnel_down", protocol=t.session.protocol, session=t.session_id, user=t.username, reason=reason
        )

    def end_session(self, t: Tunnel, reason: str, said: Message | None = None) -> None:
        """End the session for good (the user signed off, idle, time limit)."""
        self._forget(t)
        logs.event(
            "gateway.session_ended", protocol=t.session.protocol, session=t.session_id, user=t.username, reason=reason
        )
        din, dout = take_counts(t)
        asyncio.get_running_loop().run_in_executor(
            None, self._end_in_store, t.session_id, t.username, said or reason, din, dout
        )

    def _end_in_store(self, session_id: str, username: str, reason: Message | str, din: int, dout: int) -> None:
        live_sessions.end(self.ctx, session_id, reason, actor=username, node=self.node, bytes_in=din, bytes_out=dout)

    def connection_ended(self, t: Tunnel, ending: Ending, *, error_kind: str) -> None:
        """A protocol's channel stopped: count and log a protocol error (metric label `error_kind`),
        then end or detach the tunnel's session as the ending says."""
        if ending.protocol_error:
            metrics.PROTOCOL_ERRORS.labels(error_kind).inc()
            logs.event(
                "gateway.bad_frame",
                logging.WARNING,
                protocol=t.session.protocol,
                session=t.session_id,
                error=ending.reason,
            )
        self.channel_ended(t, ending.reason, signed_off=ending.signed_off)

    def channel_ended(self, t: Tunnel, reason: str, *, signed_off: bool) -> None:
        """A protocol reports that the client's connection of a live tunnel ended."""
        if self.tunnels.get(t.session_id) is not t:
            return  # already closed by the gateway, or replaced by a newer connection
        if signed_off:
            self.end_session(t, reason)
        else:
            self.detach(t, reason)

    def close_sessions(self, ended: Iterable[live_sessions.Ended]) -> None:
        """Sessions ended elsewhere (CLI, portal, policy): close their tunnels with the reason."""
        for e in ended:
            t = self.tunnels.get(e.session_id)
            if t is not None:
                self.close(t, e.reason, end=True, told=e.told)

    # --- timers ----------------------------------------------------------------------------

    def check_timers(self, *, idle_timeout: float, dead_after: float) -> None:
        mono = time.monotonic()
        now = self.ctx.clock.now()
        for t in list(self.tunnels.values()):
            if now >= t.expires_at:
                self.close(t, "Max time exceeded: sign in again", end=True, told=self.tell(t, Code.TUNNEL_TIME_LIMIT))
                self.end_session(t, "session time limit reached", say(Code.TUNNEL_TIME_LIMIT))
            elif mono - t.last_data > idle_timeout:
                self.close(t, "Idle Timeout", end=True, told=self.tell(t, Code.TUNNEL_IDLE))
                self.end_session(t, "idle timeout", say(Code.TUNNEL_IDLE))
            elif mono - t.last_rx > dead_after:
                t.channel.drop()  # dead peer: drop the connection, keep the session for resumption
                self.detach(t, "dead peer")

    def flush_traffic(self) -> None:
        """Idle tunnels have nothing to write; the others join the marks' next batch."""
        for t in list(self.tunnels.values()):
            if has_unwritten_traffic(t):
                self.marks.note(t, connected=True)
