"""The Fortinet PPP link (`fortinet.connection.PppConnection`): LCP and IPCP negotiation as a client drives it.

Contract: no exception for any bytes; every `Write` is whole, valid frames of at most MAX_FRAME
bytes each carrying a well-formed control packet; IPv4 data only in the NETWORK phase; closed
exactly after Terminated or ProtocolError, and silent afterwards; the events do not depend on how
the stream is split (at one instant); the timers (`due`) never raise.
"""

from __future__ import annotations

import atheris
from fuzzlib import chunks, main, require

with atheris.instrument_imports(include=["campusvpn"]):
    from campusvpn.fortinet import ppp
    from campusvpn.fortinet.connection import (
        Data,
        EchoReply,
        Event,
        LinkUp,
        Phase,
        PppConnection,
        ProtocolError,
        Terminated,
        Write,
    )

MAGIC = 0x12345678  # fixed, so that a seed can Ack our request byte for byte


def link() -> PppConnection:
    return PppConnection(
        0.0, address="10.20.0.7", dns=["10.20.0.53", "10.20.0.54"], wins=["10.20.0.61"], mru=1354, magic=MAGIC
    )


def valid_write(data: bytes) -> None:
    frames, used = ppp.split_frames(memoryview(data), len(data))
    require(used == len(data) and frames, "a Write is not whole frames")
    pos = 0
    while pos < len(data):
        total = int.from_bytes(data[pos : pos + 2], "big")
        require(total <= ppp.MAX_FRAME, f"a written frame of {total} bytes exceeds MAX_FRAME")
        pos += total
    for f in frames:
        if f.protocol in (ppp.PROTO_LCP, ppp.PROTO_IPCP):
            pkt = ppp.parse_packet(f.info)
            require(pkt is not None and 4 + len(pkt.data) == len(f.info), "a written control packet is malformed")


def drive(pieces: list[bytes], *, timers: bool) -> list[Event]:
    conn = link()
    valid_write(conn.start(0.0))
    events: list[Event] = []
    now = 0.0
    for piece in pieces:
        phase = conn.phase
        got = conn.receive_data(piece, now)
        if phase is Phase.CLOSED:
            require(got == [], "events after the link closed")
        for i, e in enumerate(got):
            require(isinstance(e, Data | Write | LinkUp | EchoReply | Terminated | ProtocolError), f"event {e!r}")
            if isinstance(e, Write):
                valid_write(e.data)
            if isinstance(e, Terminated | ProtocolError):
                require(conn.closed, "ended but not closed")
                require(i == len(got) - 1, "events after the end")
            # Later frames of the same read may start a negotiation again (and say so with Writes).
            if isinstance(e, LinkUp) and all(isinstance(x, Data | EchoReply) for x in got[i + 1 :]):
                require(conn.lcp.opened and conn.ipcp.opened, "link up before both negotiations opened")
        network = phase is Phase.NETWORK
        for e in got:  # the phase as the events tell it (a restarted negotiation is silent: a weaker check)
            network = network or isinstance(e, LinkUp)
            require(network or not isinstance(e, Data), "IPv4 data before the link was up")
        events += got
        if timers:
            now += 1.7
            out, gave_up = conn.due(now)
            if out:
                valid_write(out)
            require(gave_up is None or conn.closed, "gave up but still open")
    return events


def check(data: bytes) -> None:
    size, parts = chunks(data)
    pieces = list(parts)
    if size % 2:
        drive(pieces, timers=True)
        return
    whole = drive([b"".join(pieces)] if pieces else [], timers=False)
    split = drive(pieces, timers=False)
    require(whole == split, f"events depend on how the stream is split ({size}-byte pieces)")


if __name__ == "__main__":
    main(check)
