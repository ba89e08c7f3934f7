"""The PPP channel of one Fortinet tunnel: the thin asyncio layer around `PppConnection`.

After `/remote/sslvpn-tunnel` the connection's protocol becomes a `PppChannel`, a `StreamChannel`:
frames are found in place in the shared buffer, IPv4 packets go to the hub as slices of it,
negotiation answers back to the client; a one-second tick drives retransmissions and keepalive
echoes. It is also the tunnel's `Channel`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from campusvpn.fortinet import ppp
from campusvpn.fortinet.connection import Data, Phase, PppConnection, ProtocolError, Terminated, Write
from campusvpn.tunnels.stream import SCRATCH, StreamChannel
from campusvpn.tunnels.tunnel import Ending, Tunnel

TICK = 1.0  # seconds between timer checks
# After the client's own Terminate-Request it closes the connection itself (closing first makes
# openconnect take it for a drop); if it does not, we do after this long.
CLIENT_CLOSE_GRACE = 3.0


class PppChannel(StreamChannel):
    def __init__(self, transport: asyncio.Transport, conn: PppConnection) -> None:
        super().__init__()
        self.transport = transport
        self.conn = conn
        self.tunnel: Tunnel | None = None
        self._on_packet: Callable[[Tunnel, memoryview], None] = lambda _t, _p: None
        self._paused = False
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[Ending] = loop.create_future()
        self._timer = loop.call_later(TICK, self._tick)

    def bind(self, tunnel: Tunnel, on_packet: Callable[[Tunnel, memoryview], None]) -> None:
        self.tunnel = tunnel
        self._on_packet = on_packet

    # --- Channel (called by the hub) -------------------------------------------------------

    @property
    def ready(self) -> bool:
        return not self._paused and self.conn.phase is Phase.NETWORK

    def send_packets(self, packets: Sequence[bytes]) -> None:
        if self.conn.phase is Phase.NETWORK:
            encode = ppp.encode_ipv4
            self.transport.writelines([encode(p) for p in packets])

    def send_keepalive(self) -> None:
        if self.conn.phase is Phase.NETWORK:
            self.transport.write(self.conn.send_echo_request(time.monotonic()))

    def close(self, reason: str) -> None:
        """LCP Terminate-Request with the reason (openconnect prints it), then close."""
        self.transport.write(self.conn.send_terminate(reason))
        self._finish(Ending(reason))
        self.transport.close()

    def drop(self) -> None:
        self._finish(Ending("dropped"))
        self.transport.close()

    # --- asyncio callbacks -----------------------------------------------------------------

    def process(self, filled: int) -> int:
        if self.ended.done():
            return filled
        now = time.monotonic()
        events, used = self.conn.receive_buffer(SCRATCH, filled, now)
        t = self.tunnel
        if t is not None:
            t.last_rx = now
            if self.conn.last_data == now:
                t.last_data = now
        for ev in events:
            if type(ev) is Data:
                if t is not None:
                    self._on_packet(t, ev.payload)  # type: ignore[arg-type]  # a slice of our buffer
            elif type(ev) is Write:
                self.transport.write(ev.data)
            elif type(ev) is Terminated:
                self._finish(
                    Ending(f"client signed off: {ev.reason}"[:200] if ev.reason else "client signed off", True)
                )
                asyncio.get_running_loop().call_later(CLIENT_CLOSE_GRACE, self.transport.close)
                return filled
            elif type(ev) is ProtocolError:
                self._finish(Ending(f"protocol error: {ev.reason}", protocol_error=True))
                self.transport.close()
                return filled
        return used

    def eof_received(self) -> bool | None:
        self._finish(Ending("connection closed"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(Ending("connection closed"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    # --- the rest --------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.ended.done():
            return
        data, failed = self.conn.due(time.monotonic())
        if data:
            self.transport.write(data)
        if failed is not None:
            self._finish(Ending(f"protocol error: {failed.reason}", protocol_error=True))
            self.transport.close()
            return
        self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _finish(self, ending: Ending) -> None:
        self._timer.cancel()
        if not self.ended.done():
            self.ended.set_result(ending)
