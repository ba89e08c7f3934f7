"""The gateway's side of one PPP link on a Fortinet tunnel, sans-IO (in the manner of h11).

Bytes the client sent go in with `receive_data(data, now)` (or, read in place, `receive_buffer`)
and come out as events; what the gateway must write is either an event (`Write`: answers to
negotiation and echoes, in order) or the return value of a `send_*` call. No socket and no clock:
the caller passes the time, and calls `due(now)` about once a second for retransmissions and
keepalive echoes.

    ESTABLISH --LCP and IPCP both ways acked--> NETWORK (LinkUp: IPv4 flows)
    any --Terminate-Request from the client--> CLOSED (Terminated, by_peer)
    any --send_terminate--> TERMINATING --Terminate-Ack--> CLOSED (Terminated)
    any --bad framing / no negotiation--> CLOSED (ProtocolError)

LCP (RFC 1661): we ask for MRU and a Magic-Number; we reject ACCM, PFC, ACFC, authentication and
anything unknown in the client's request, keep our MRU when it is Nak'ed (openconnect Naks it once
and then accepts), answer echoes, and Protocol-Reject protocols we do not speak (IPv6CP, CCP...).
IPCP (RFC 1332, 1877): our own request is empty (openfortivpn counts an empty one as "negotiation
complete"); the client's IP-Address, DNS (129, 131) and NBNS/WINS (130, 132) are Nak'ed to the
session's values, VJ compression and unknown options rejected, and a matching request Acked byte
for byte.
"""

from __future__ import annotations

import enum
import ipaddress
import secrets
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from campusvpn.fortinet import ppp
from campusvpn.fortinet.ppp import Option, Packet

# Control packet codes (RFC 1661 section 5).
CONF_REQ, CONF_ACK, CONF_NAK, CONF_REJ = 1, 2, 3, 4
TERM_REQ, TERM_ACK, CODE_REJ, PROTO_REJ = 5, 6, 7, 8
ECHO_REQ, ECHO_REP, DISCARD_REQ = 9, 10, 11

LCP_MRU, LCP_MAGIC = 1, 5
IPCP_ADDRESS, IPCP_DNS1, IPCP_NBNS1, IPCP_DNS2, IPCP_NBNS2 = 3, 129, 130, 131, 132

# The framing, for the data path's inline checks.
HEADER, MAGIC, MAX_FRAME, IPV4, HDLC = ppp.HEADER, ppp.MAGIC, ppp.MAX_FRAME, ppp.PROTO_IPV4, 0xFF03
_U16 = struct.Struct(">H")

RESTART = 3.0  # seconds between Configure-Request retransmissions (openconnect uses 3 s too)
MAX_CONFIGURE = 10  # unanswered Configure-Requests before the link is given up
MAX_FAILURE = 10  # Naks of our request before we stop offering the option


class Phase(enum.Enum):
    ESTABLISH = "establish"
    NETWORK = "network"
    TERMINATING = "terminating"
    CLOSED = "closed"


class Data(NamedTuple):
    """An IPv4 packet from the client (from `receive_buffer`: a slice of the caller's buffer)."""

    payload: bytes | memoryview


class Write(NamedTuple):
    """Bytes the gateway must write now (negotiation answers, echo replies, rejects)."""

    data: bytes


class LinkUp(NamedTuple):
    """IPCP is open both ways: IPv4 may flow."""

    mru: int  # the largest frame the client said it takes


class EchoReply(NamedTuple):
    pass


class Terminated(NamedTuple):
    """The link ended: the client asked (`by_peer`, with its text) or acked our request."""

    reason: str
    by_peer: bool


class ProtocolError(NamedTuple):
    reason: str


Event = Data | Write | LinkUp | EchoReply | Terminated | ProtocolError


class _Negotiation:
    """One control protocol's option negotiation (the Configure half of RFC 1661's automaton)."""

    def __init__(
        self, protocol: int, ours: list[Option], judge: Callable[[list[Option]], tuple[int, list[Option]]]
    ) -> None:
        self.protocol = protocol
        self.ours = ours
        self.judge = judge  # their options -> (ACK/NAK/REJ, the options to send back)
        self.ident = 0
        self.sent: bytes | None = None  # the options of our outstanding request
        self.sent_at = 0.0
        self.tries = 0
        self.naks = 0
        self.our_acked = False
        self.their_acked = False

    @property
    def opened(self) -> bool:
        return self.our_acked and self.their_acked

    def reset(self) -> None:
        self.sent, self.tries, self.naks = None, 0, 0
        self.our_acked = self.their_acked = False

    def request(self, now: float) -> bytes:
        """A new Configure-Request (new identifier) with our current options."""
        self.ident = (self.ident + 1) & 0xFF
        self.sent = ppp.encode_options(self.ours)
        self.sent_at = now
        self.tries = 1
        return self._frame(ppp.packet(CONF_REQ, self.ident, self.sent))

    def retransmit(self, now: float) -> bytes | None:
        """The outstanding request again when its time is up; None when none is due."""
        if self.sent is None or self.our_acked or now - self.sent_at < RESTART:
            return None
        self.tries += 1
        self.sent_at = now
        return self._frame(ppp.packet(CONF_REQ, self.ident, self.sent))

    def answer(self, pkt: Packet) -> bytes | None:
        """Our answer to their Configure-Request; None when the options are malformed (discard)."""
        options = ppp.parse_options(pkt.data)
        if options is None:
            return None
        code, back = self.judge(options)
        self.their_acked = code == CONF_ACK
        data = pkt.data if code == CONF_ACK else ppp.encode_options(back)  # an Ack echoes byte for byte
        return self._frame(ppp.packet(code, pkt.ident, data))

    def on_reply(self, pkt: Packet, now: float) -> bytes | None:
        """Their Ack, Nak or Reject of our request; returns a new request when one is needed."""
        if self.sent is None or pkt.ident != self.ident or self.our_acked:
            return None  # not an answer to what is outstanding: discard
        if pkt.code == CONF_ACK:
            if pkt.data == self.sent:
                self.our_acked = True
            return None
        options = ppp.parse_options(pkt.data)
        if options is None:
            return None
        if pkt.code == CONF_REJ:
            gone = {o.kind for o in options}
            self.ours = [o for o in self.ours if o.kind not in gone]
        else:
            self.naks += 1
            self.ours = self._after_nak(options)
        return self.request(now)

    def _after_nak(self, suggested: list[Option]) -> list[Option]:
        mine = {o.kind: o for o in self.ours}
        for o in suggested:
            if self.protocol == ppp.PROTO_LCP and o.kind == LCP_MRU:
                if self.naks >= MAX_FAILURE:
                    mine.pop(LCP_MRU, None)  # give up asking: the default (1500) then applies
                continue  # keep our MRU: it is what the tunnel device carries
            mine[o.kind] = o  # a new magic number, IPCP's suggested address: take the peer's value
        return list(mine.values())

    def _frame(self, pkt: bytes) -> bytes:
        return ppp.encode(self.protocol, pkt)


def _ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


class PppConnection:
    """The gateway's side of one PPP link; `address` is the client's, the servers are pushed in IPCP."""

    def __init__(
        self,
        now: float,
        *,
        address: str,
        dns: Sequence[str] = (),
        wins: Sequence[str] = (),
        mru: int = 1354,
        magic: int | None = None,
        echo_interval: float = 0.0,
    ) -> None:
        self.phase = Phase.ESTABLISH
        self.address = _ip(address)
        self.dns = [_ip(a) for a in dns[:2]]
        self.wins = [_ip(a) for a in wins[:2]]
        self.magic = magic if magic is not None else (secrets.randbits(32) or 1)
        self.peer_mru = 1500  # RFC 1661's default until the client names its own
        self.echo_interval = echo_interval  # 0: no keepalive echoes from our side
        self.last_received = now
        self.last_data = now
        self._last_echo = now
        self._ident = 0  # identifiers of our LCP packets other than Configure-Requests
        self._buffer = b""  # the start of a frame whose end has not arrived
        ours = [Option(LCP_MRU, mru.to_bytes(2, "big")), Option(LCP_MAGIC, self.magic.to_bytes(4, "big"))]
        self.lcp = _Negotiation(ppp.PROTO_LCP, ours, self._judge_lcp)
        self.ipcp = _Negotiation(ppp.PROTO_IPCP, [], self._judge_ipcp)

    # --- starting -------------------------------------------------------------------------

    def start(self, now: float) -> bytes:
        """Our first LCP Configure-Request (both open clients are fine with the gateway going first)."""
        return self.lcp.request(now)

    # --- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Events for `data`; payloads are copies (keeps any unfinished frame for the next call)."""
        if self.closed:
            return []
        buf = self._buffer + bytes(data) if self._buffer else bytes(data)
        events, used = self.receive_buffer(memoryview(buf), len(buf), now)
        events = [Data(bytes(e.payload)) if type(e) is Data else e for e in events]
        self._buffer = buf[used:] if not self.closed else b""
        return events

    def receive_buffer(self, buf: bytearray | memoryview, filled: int, now: float) -> tuple[list[Event], int]:
        """Events for the complete frames in `buf[:filled]`, and how many bytes they used.

        Data payloads are slices of `buf`, valid until the caller reuses it. After a framing error
        the frames before the bad one still count, as if they had come alone.
        """
        if self.closed:
            return [], filled
        self.last_received = now
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        events: list[Event] = []
        append = events.append
        unpack = ppp.HEADER_STRUCT.unpack_from
        u16 = _U16.unpack_from
        network = self.phase is Phase.NETWORK
        got_data = False
        pos = 0
        # The data path: two small unpacks and one slice per IPv4 packet, nothing copied. The checks
        # are `ppp.frame_problem`'s and `ppp.parse_frame`'s, inline (a test holds them equal).
        while filled - pos >= HEADER:
            total, magic, size = unpack(view, pos)
            if magic != MAGIC or total != size + HEADER or size < 1 or total > MAX_FRAME:
                problem = ppp.frame_problem(total, magic, size) or "bad frame header"
                append(self._close(ProtocolError(problem)))
                return events, filled
            stop = pos + total
            if stop > filled:
                break
            if network and size >= 2:
                (proto,) = u16(view, pos + HEADER)
                at = pos + HEADER + 2
                if proto == HDLC and size >= 4:  # openconnect's FF 03 before the protocol field
                    (proto,) = u16(view, at)
                    at += 2
                if proto == IPV4:
                    got_data = True
                    append(Data(view[at:stop]))
                    pos = stop
                    continue
            frame = ppp.parse_frame(view[pos + HEADER : stop])
            pos = stop
            if frame.protocol == IPV4:
                if network:  # a compressed protocol field: rare, but accepted
                    got_data = True
                    append(Data(frame.info))
                continue  # before IPCP is open (or while ending): discarded, as RFC 1661 says
            self._control(frame.protocol, frame.info, now, events)
            if self.closed:
                return events, pos
            network = self.phase is Phase.NETWORK
        if got_data:
            self.last_data = now
        return events, pos

    def _control(self, protocol: int, info: bytes | memoryview, now: float, events: list[Event]) -> None:
        if protocol == ppp.PROTO_LCP:
            self._lcp(info, now, events)
        elif protocol == ppp.PROTO_IPCP:
            if self.lcp.opened and self.phase is not Phase.TERMINATING:
                self._ipcp(info, now, events)
        elif self.lcp.opened:
            # IPv6, IPv6CP, CCP...: not spoken here. The reject carries the protocol and its packet.
            data = protocol.to_bytes(2, "big") + bytes(info)[: max(0, self._room() - 10)]
            events.append(Write(self._lcp_packet(PROTO_REJ, data)))

    def _lcp(self, info: bytes | memoryview, now: float, events: list[Event]) -> None:
        pkt = ppp.parse_packet(info)
        if pkt is None:
            return
        if self.phase is Phase.TERMINATING:
            if pkt.code in (TERM_ACK, TERM_REQ):
                if pkt.code == TERM_REQ:
                    events.append(Write(ppp.encode(ppp.PROTO_LCP, ppp.packet(TERM_ACK, pkt.ident))))
                events.append(self._close(Terminated("", by_peer=False)))
            return
        if pkt.code == CONF_REQ:
            if self.lcp.opened:  # the client starts over: so do we, and IPCP goes down
                self.lcp.reset()
                self.ipcp.reset()
                self.phase = Phase.ESTABLISH
            if self.lcp.sent is None:  # we had not asked yet (or start over): ask now
                events.append(Write(self.lcp.request(now)))
            reply = self.lcp.answer(pkt)
            if reply is not None:
                events.append(Write(reply))
        elif pkt.code in (CONF_ACK, CONF_NAK, CONF_REJ):
            again = self.lcp.on_reply(pkt, now)
            if again is not None:
                events.append(Write(again))
        elif pkt.code == TERM_REQ:
            events.append(Write(ppp.encode(ppp.PROTO_LCP, ppp.packet(TERM_ACK, pkt.ident))))
            text = pkt.data.decode("utf-8", "replace").strip()
            events.append(self._close(Terminated(text, by_peer=True)))
            return
        elif pkt.code == ECHO_REQ:
            if self.lcp.opened:
                # The reply carries our magic number in place of theirs, then their data.
                reply = self.magic.to_bytes(4, "big") + pkt.data[4:]
                events.append(Write(ppp.encode(ppp.PROTO_LCP, ppp.packet(ECHO_REP, pkt.ident, reply))))
        elif pkt.code == ECHO_REP:
            events.append(EchoReply())
        elif pkt.code in (TERM_ACK, CODE_REJ, PROTO_REJ, DISCARD_REQ):
            pass  # nothing to do: a Protocol-Reject of IPCP would end IPv4, but no client sends one
        else:
            events.append(Write(self._lcp_packet(CODE_REJ, bytes(info)[: max(0, self._room() - 4)])))
        self._opened(now, events)

    def _ipcp(self, info: bytes | memoryview, now: float, events: list[Event]) -> None:
        pkt = ppp.parse_packet(info)
        if pkt is None:
            return
        if pkt.code == CONF_REQ:
            if self.ipcp.opened:
                self.ipcp.reset()
                self.phase = Phase.ESTABLISH
            if self.ipcp.sent is None:
                events.append(Write(self.ipcp.request(now)))
            reply = self.ipcp.answer(pkt)
            if reply is not None:
                events.append(Write(reply))
        elif pkt.code in (CONF_ACK, CONF_NAK, CONF_REJ):
            again = self.ipcp.on_reply(pkt, now)
            if again is not None:
                events.append(Write(again))
        elif pkt.code == TERM_REQ:  # IPCP alone goes down; LCP stays
            events.append(Write(ppp.encode(ppp.PROTO_IPCP, ppp.packet(TERM_ACK, pkt.ident))))
            self.ipcp.reset()
            self.phase = Phase.ESTABLISH
        elif pkt.code in (TERM_ACK, CODE_REJ):
            pass
        else:
            rejected = bytes(info)[: max(0, self._room() - 4)]
            events.append(Write(ppp.encode(ppp.PROTO_IPCP, ppp.packet(CODE_REJ, self._next_ident(), rejected))))
        self._opened(now, events)

    def _opened(self, now: float, events: list[Event]) -> None:
        if self.lcp.opened and self.ipcp.sent is None:
            events.append(Write(self.ipcp.request(now)))
        if self.phase is Phase.ESTABLISH and self.lcp.opened and self.ipcp.opened:
            self.phase = Phase.NETWORK
            self.last_data = now
            events.append(LinkUp(self.peer_mru))

    # --- judging the client's requests ----------------------------------------------------

    def _judge_lcp(self, options: list[Option]) -> tuple[int, list[Option]]:
        rejected, naked = [], []
        for o in options:
            if o.kind == LCP_MRU and len(o.value) == 2:
                continue
            if o.kind == LCP_MAGIC and len(o.value) == 4:
                if int.from_bytes(o.value, "big") == self.magic:  # our own echo: a looped-back line
                    naked.append(Option(LCP_MAGIC, ((self.magic + 0x9E3779B9) & 0xFFFFFFFF or 1).to_bytes(4, "big")))
                continue
            rejected.append(o)  # ACCM, authentication, quality, PFC, ACFC and anything unknown
        if rejected:
            return CONF_REJ, rejected
        if naked:
            return CONF_NAK, naked
        for o in options:
            if o.kind == LCP_MRU:
                self.peer_mru = int.from_bytes(o.value, "big")
        return CONF_ACK, options

    def _judge_ipcp(self, options: list[Option]) -> tuple[int, list[Option]]:
        wanted = {
            IPCP_ADDRESS: self.address,
            IPCP_DNS1: self.dns[0] if self.dns else None,
            IPCP_DNS2: self.dns[1] if len(self.dns) > 1 else None,
            IPCP_NBNS1: self.wins[0] if self.wins else None,
            IPCP_NBNS2: self.wins[1] if len(self.wins) > 1 else None,
        }
        rejected, naked = [], []
        for o in options:
            value = wanted.get(o.kind)
            if value is None or len(o.value) != 4:
                rejected.append(o)  # VJ compression, IP-Addresses, a server we do not have, unknown
            elif o.value != value:
                naked.append(Option(o.kind, value))
        if rejected:
            return CONF_REJ, rejected
        if naked:
            return CONF_NAK, naked
        return CONF_ACK, options

    # --- sending --------------------------------------------------------------------------

    def send_packet(self, packet: bytes | memoryview) -> bytes:
        return ppp.encode_ipv4(packet)

    def send_echo_request(self, now: float) -> bytes:
        self._last_echo = now
        return self._lcp_packet(ECHO_REQ, self.magic.to_bytes(4, "big"))

    def send_terminate(self, reason: str) -> bytes:
        """LCP Terminate-Request; openconnect prints the text as the server's reason."""
        if self.phase in (Phase.TERMINATING, Phase.CLOSED):
            return b""
        self.phase = Phase.TERMINATING
        text = reason.encode("utf-8")[: max(0, min(self.peer_mru, 1500) - 8)]
        return self._lcp_packet(TERM_REQ, text)

    def due(self, now: float) -> tuple[bytes, ProtocolError | None]:
        """What the timers ask for: retransmitted requests and a keepalive echo, or giving up."""
        if self.phase in (Phase.TERMINATING, Phase.CLOSED):
            return b"", None
        out = []
        for nego in (self.lcp, self.ipcp):
            again = nego.retransmit(now)
            if again is not None:
                if nego.tries > MAX_CONFIGURE:
                    gave_up = ProtocolError("PPP negotiation did not finish")
                    self._close(gave_up)
                    return b"", gave_up
                out.append(again)
        if self.echo_interval and self.lcp.opened and now - self._last_echo >= self.echo_interval:
            out.append(self.send_echo_request(now))
        return b"".join(out), None

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    def silent_for(self, now: float) -> float:
        return now - self.last_received

    # --- helpers --------------------------------------------------------------------------

    def _room(self) -> int:
        """The largest control packet we may send: the client's MRU, and a frame within MAX_FRAME."""
        return min(self.peer_mru, ppp.MAX_FRAME - ppp.HEADER - 2)

    def _next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFF
        return self._ident

    def _lcp_packet(self, code: int, data: bytes) -> bytes:
        return ppp.encode(ppp.PROTO_LCP, ppp.packet(code, self._next_ident(), data))

    def _close(self, event: Terminated | ProtocolError) -> Terminated | ProtocolError:
        self.phase = Phase.CLOSED
        self._buffer = b""
        return event
