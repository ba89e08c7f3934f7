"""The CSTP channel of one connected tunnel: the thin asyncio layer around `CstpConnection`.

Once CONNECT succeeds the connection's protocol is switched to `CstpChannel`, a buffered protocol:
TLS plaintext is decrypted straight into one preallocated buffer, the sans-IO connection finds the
frames in place and each packet goes to the hub as a memoryview slice, in the same callback that
received it. No stream reader, no task wake-up and no copy per packet: on this path those were
most of the time a packet spent in the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from campusvpn.anyconnect import cstp
from campusvpn.anyconnect.connection import (
    ConnectionClosed,
    CstpConnection,
    Data,
    Disconnect,
    DpdRequest,
    ProtocolError,
    State,
)
from campusvpn.anyconnect.cstp import FrameType
from campusvpn.tunnels.tunnel import Ending, Tunnel

# Room for many TLS records per wake-up. One buffer serves every tunnel (the loop is one thread and
# a wake-up's frames are handled before the next read); a tunnel keeps only its unfinished frame.
BUFFER_SIZE = 256 * 1024
_SCRATCH = bytearray(BUFFER_SIZE)
_SCRATCH_VIEW = memoryview(_SCRATCH)
class CstpChannel(asyncio.BufferedProtocol):
    """Frames from one client: packets to `on_packet`, DPD answered, DISCONNECT ends the tunnel.

    It is also the tunnel's `Channel`: the hub sends packets through it.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.conn = CstpConnection(time.monotonic())
        self.tunnel: Tunnel | None = None
        self._on_packet: Callable[[Tunnel, memoryview], None] = lambda _t, _p: None
        self._tail = b""  # the start of a frame whose end has not arrived yet
        self._filled = 0  # bytes of the tail put back at the start of the buffer
        self._paused = False  # the client is not keeping up: its queue is full
        self.ended: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()

    def bind(self, tunnel: Tunnel, on_packet: Callable[[Tunnel, memoryview], None]) -> None:
        self.tunnel = tunnel
        self._on_packet = on_packet

    # --- Channel (called by the hub) -------------------------------------------------------

    @property
    def ready(self) -> bool:
        return not self._paused and self.conn.state is State.OPEN

    def send_packets(self, packets: Sequence[bytes]) -> None:
        # Each frame becomes its own TLS record (openconnect needs that), and the records of one
        # wake-up leave in a single socket write.
        encode = cstp.encode
        self.transport.writelines([encode(FrameType.DATA, p) for p in packets])

    def send_keepalive(self) -> None:
        if self.conn.state is State.OPEN:
            self.transport.write(self.conn.send_keepalive())

    def close(self, reason: str) -> None:
        if self.conn.state is State.OPEN:
            self.transport.write(self.conn.send_disconnect(reason))
        self.transport.close()

    def drop(self) -> None:
        self.transport.close()

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
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

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
        now = time.monotonic()
        try:
            events, used = self.conn.receive_buffer(_SCRATCH_VIEW, filled, now)
        except ConnectionClosed:
            return
        t = self.tunnel
        if t is not None:
            t.last_rx = now
            if self.conn.last_data == now:
                t.last_data = now
        for ev in events:
            if type(ev) is Data:
                if t is not None:
                    self._on_packet(t, ev.payload)  # type: ignore[arg-type]  # a slice of our buffer
            elif type(ev) is DpdRequest:
                self.transport.write(ev.reply)
            elif type(ev) is Disconnect:
                who = "client signed off" if ev.signed_off else "client detached"
                self._finish(Ending(f"{who}: {ev.text}"[:200], signed_off=ev.signed_off))
                self.transport.close()
                return
            elif type(ev) is ProtocolError:
                self._finish(Ending(f"protocol error: {ev.reason}", protocol_error=True))
                self.transport.close()
                return
        self._tail = bytes(_SCRATCH_VIEW[used:filled]) if used < filled else b""

    def _finish(self, ending: Ending) -> None:
        if not self.ended.done():
            self.ended.set_result(ending)
