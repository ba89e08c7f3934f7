"""One CSTP connection as a state machine, sans-IO (in the manner of h11).

Bytes the client sent go in with `receive_data(data, now)` and come out as events; what the
gateway sends is asked for with `send_*`, which return the bytes to write (each one frame, to be
written as one TLS record). No socket, no clock: the caller passes the time, so tests and fuzzers
drive it byte by byte.

    OPEN --Disconnect--> CLOSED      (the client ended the connection, or the session with BYE)
    OPEN --bad framing--> CLOSED     (ProtocolError: the connection cannot continue)
    OPEN --send_disconnect--> CLOSED (the gateway ended it)

The data path uses `receive_buffer`, which finds frames in place in a buffer the caller owns and
hands packets on as memoryview slices: no copy per packet.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from campusvpn.anyconnect import cstp
from campusvpn.anyconnect.cstp import HEADER, MAGIC, FrameType


class State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Data(NamedTuple):
    """An IP packet from the client (a slice of the caller's buffer on the data path)."""

    payload: bytes | memoryview


class DpdRequest(NamedTuple):
    """The client probes the gateway; `reply` is the answer to write."""

    reply: bytes


class DpdResponse(NamedTuple):
    pass


class Keepalive(NamedTuple):
    pass


class Disconnect(NamedTuple):
    """The client closed the tunnel; `signed_off` when the user ended the session itself."""

    code: int | None
    text: str
    signed_off: bool


class ProtocolError(NamedTuple):
    reason: str


Event = Data | DpdRequest | DpdResponse | Keepalive | Disconnect | ProtocolError

_HEADER = cstp.HEADER_STRUCT
DATA = FrameType.DATA.value  # a plain int: compared once per packet
_KEEPALIVE = cstp.encode(FrameType.KEEPALIVE)
_DPD_REQUEST = cstp.encode(FrameType.DPD_REQ)


class ConnectionClosed(Exception):
    """Bytes or a send after the connection ended: a bug in the caller."""


class CstpConnection:
    """The gateway's side of one CSTP stream."""

    def __init__(self, now: float, max_payload: int = cstp.MAX_PAYLOAD) -> None:
        self.state = State.OPEN
        self.last_received = now  # any frame: the peer is alive
        self.last_data = now  # a data frame: the user is active
        self._max = max_payload
        self._buffer = bytearray()  # receive_data's unfinished frame

    # --- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Events for `data`; payloads are copies (keeps any unfinished frame for the next call)."""
        self._buffer += data
        events, used = self.receive_buffer(self._buffer, len(self._buffer), now)
        events = [Data(bytes(e.payload)) if isinstance(e, Data) else e for e in events]
        del self._buffer[:used]
        return events

    def receive_buffer(self, buf: bytearray | memoryview, filled: int, now: float) -> tuple[list[Event], int]:
        """Events for the complete frames in `buf[:filled]`, and how many bytes they used.

        Data payloads are slices of `buf`, valid until the caller reuses it.
        """
        if self.state is State.CLOSED:
            raise ConnectionClosed("data received after the connection ended")
        self.last_received = now
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        events: list[Event] = []
        append = events.append
        unpack = _HEADER.unpack_from
        limit = self._max
        pos = 0
        got_data = False
        # The data path: one header unpack and one slice per packet, nothing copied.
        while filled - pos >= HEADER:
            magic, length, ftype, zero = unpack(view, pos)
            if magic != MAGIC or zero or length > limit:
                problem = cstp.header_problem(magic, length, zero, limit) or "bad frame header"
                append(self._close(ProtocolError(problem)))
                return events, filled
            stop = pos + HEADER + length
            if stop > filled:
                break
            if ftype == DATA:
                got_data = True
                append(Data(view[pos + HEADER : stop]))
            elif ftype == FrameType.DPD_REQ:
                append(DpdRequest(cstp.encode(FrameType.DPD_RESP, view[pos + HEADER : stop])))
            elif ftype == FrameType.KEEPALIVE:
                append(Keepalive())
            elif ftype == FrameType.DPD_RESP:
                append(DpdResponse())
            elif ftype == FrameType.DISCONNECT:
                code, text = cstp.disconnect_reason(bytes(view[pos + HEADER : stop]))
                append(self._close(Disconnect(code, text, signed_off=code == cstp.BYE_USER)))
                return events, stop
            else:
                append(self._close(ProtocolError(f"unexpected frame type {ftype}")))
                return events, filled
            pos = stop
        if got_data:
            self.last_data = now
        return events, pos

    def _close(self, event: Disconnect | ProtocolError) -> Disconnect | ProtocolError:
        self.state = State.CLOSED
        return event

    # --- sending ---------------------------------------------------------------------------

    def send_packet(self, packet: bytes | memoryview) -> bytes:
        self._check_open()
        return cstp.encode(FrameType.DATA, packet)

    def send_keepalive(self) -> bytes:
        self._check_open()
        return _KEEPALIVE

    def send_dpd_request(self) -> bytes:
        self._check_open()
        return _DPD_REQUEST

    def send_disconnect(self, reason: str) -> bytes:
        """The last frame: openconnect prints `reason` and does not reconnect."""
        self._check_open()
        self.state = State.CLOSED
        return cstp.disconnect(reason)

    def _check_open(self) -> None:
        if self.state is State.CLOSED:
            raise ConnectionClosed("send after the connection ended")

    # --- timers ----------------------------------------------------------------------------

    def silent_for(self, now: float) -> float:
        """Seconds since the client last sent anything (dead-peer detection)."""
        return now - self.last_received
