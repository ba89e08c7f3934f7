"""The data path of one connected tunnel: CSTP frames on a client's TLS stream after CONNECT.

Once CONNECT succeeds the connection's protocol is switched to `TunnelProtocol`, a buffered
protocol: TLS plaintext is decrypted straight into one preallocated buffer, frames are found in
place (`cstp.split_frames`) and each packet is handed on as a memoryview slice, in the same
callback that received it. No stream reader, no task wake-up and no copy per packet: on this
path those were most of the time a packet spent in the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from campusvpn.gateway import cstp
from campusvpn.gateway.cstp import CstpError, FrameType

# Room for many TLS records per wake-up. One buffer serves every tunnel (the loop is one thread and
# a wake-up's frames are handled before the next read); a tunnel keeps only its unfinished frame.
BUFFER_SIZE = 256 * 1024
_SCRATCH = bytearray(BUFFER_SIZE)
_SCRATCH_VIEW = memoryview(_SCRATCH)
# A slow client's queue: beyond this much unsent data, packets for it are dropped (as a router
# drops from a full queue) instead of buffering without bound; TCP inside the tunnel slows down.
WRITE_HIGH_WATER = 512 * 1024


@dataclass(eq=False)
class Tunnel:
    """A live CSTP connection for one session."""

    session_id: str
    username: str
    user_id: int
    address: str
    addr_bytes: bytes
    transport: asyncio.WriteTransport
    expires_at: datetime
    connected_at: float = field(default_factory=time.monotonic)
    last_rx: float = field(default_factory=time.monotonic)
    last_data: float = field(default_factory=time.monotonic)
    bytes_in: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    flushed_in: int = 0
    flushed_out: int = 0
    flushed_pin: int = 0
    flushed_pout: int = 0
    closing: bool = False
    paused: bool = False  # the client is not keeping up: its queue is full

    def send(self, frame: bytes) -> None:
        # One write, one TLS record: openconnect requires each frame in a record of its own.
        self.transport.write(frame)


class Ending(NamedTuple):
    """Why a tunnel's connection stopped."""

    reason: str
    signed_off: bool = False  # the user ended the session (not just the connection)
    protocol_error: bool = False


class TunnelProtocol(asyncio.BufferedProtocol):
    """Frames from one client: packets to `on_packet`, DPD answered, DISCONNECT ends the tunnel."""

    def __init__(self, tunnel: Tunnel, on_packet: Callable[[Tunnel, memoryview], None]) -> None:
        self.tunnel = tunnel
        self._on_packet = on_packet
        self._tail = b""  # the start of a frame whose end has not arrived yet
        self._filled = 0  # bytes of the tail put back at the start of the buffer
        self.ended: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()

    # --- asyncio callbacks -----------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        n = len(self._tail)
        if n:
            _SCRATCH_VIEW[:n] = self._tail
        self._filled = n
        return _SCRATCH_VIEW[n:]

    def buffer_updated(self, nbytes: int) -> None:
        self._process(self._filled + nbytes)

    def eof_received(self) -> bool | None:
        self._finish(Ending("connection closed"))
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(Ending("connection closed"))

    def pause_writing(self) -> None:
        self.tunnel.paused = True

    def resume_writing(self) -> None:
        self.tunnel.paused = False

    # --- the rest --------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes that arrived before the switch to this protocol (after the CONNECT request)."""
        view = memoryview(data)
        while view and not self.ended.done():
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def _process(self, filled: int) -> None:
        if self.ended.done():
            return
        t = self.tunnel
        t.last_rx = now = time.monotonic()
        view = _SCRATCH_VIEW
        try:
            spans, done = cstp.split_frames(view, 0, filled)
        except CstpError as exc:
            self._finish(Ending(f"protocol error: {exc}", protocol_error=True))
            t.transport.close()
            return
        for ftype, start, stop in spans:
            if ftype == FrameType.DATA:
                t.last_data = now
                self._on_packet(t, view[start:stop])
            elif ftype == FrameType.DPD_REQ:
                t.send(cstp.encode(FrameType.DPD_RESP, view[start:stop]))
            elif ftype == FrameType.DISCONNECT:
                code, text = cstp.disconnect_reason(bytes(view[start:stop]))
                if code == cstp.BYE_USER:
                    self._finish(Ending(f"client signed off: {text}"[:200], signed_off=True))
                else:
                    self._finish(Ending(f"client detached: {text}"[:200]))
                t.transport.close()
                return
            elif ftype not in (FrameType.KEEPALIVE, FrameType.DPD_RESP):
                self._finish(Ending(f"protocol error: unexpected frame type {ftype}", protocol_error=True))
                t.transport.close()
                return
        self._tail = bytes(view[done:filled]) if done < filled else b""

    def _finish(self, ending: Ending) -> None:
        if not self.ended.done():
            self.ended.set_result(ending)
