"""CSTP (`anyconnect.connection.CstpConnection`): same events however the stream is split, bounded payloads.

The whole input is fed once at a time and once in chunks (`fuzzlib.chunks`); the events must be
the same. Payloads never exceed the limit, a DPD request's reply is a valid DPD response frame,
the connection is closed exactly after Disconnect or ProtocolError, and then it raises only
ConnectionClosed.
"""

from __future__ import annotations

import atheris
from fuzzlib import Broken, chunks, main, require

with atheris.instrument_imports(include=["campusvpn"]):
    from campusvpn.anyconnect import cstp
    from campusvpn.anyconnect.connection import (
        ConnectionClosed,
        CstpConnection,
        Data,
        Disconnect,
        DpdRequest,
        Event,
        ProtocolError,
        State,
    )

MAX = 1400  # a small limit as well as the default: more inputs reach "over the limit"


def feed(pieces: list[bytes], limit: int) -> list[Event]:
    conn = CstpConnection(0.0, max_payload=limit)
    events: list[Event] = []
    for n, piece in enumerate(pieces):
        if conn.state is State.CLOSED:
            try:
                conn.receive_data(piece, float(n))
            except ConnectionClosed:
                pass
            else:
                raise Broken("bytes accepted after the end")
            break
        got = conn.receive_data(piece, float(n))
        for i, e in enumerate(got):
            ends = isinstance(e, Disconnect | ProtocolError)
            require(not ends or i == len(got) - 1, "events after the connection ended")
            if isinstance(e, Data):
                require(isinstance(e.payload, bytes) and len(e.payload) <= limit, "payload over the limit")
            if isinstance(e, DpdRequest):
                magic, length, ftype, zero = cstp.HEADER_STRUCT.unpack_from(e.reply)
                require(magic == cstp.MAGIC and zero == 0 and ftype == cstp.FrameType.DPD_RESP, "bad DPD reply")
                require(length == len(e.reply) - cstp.HEADER and length <= cstp.MAX_PAYLOAD, "DPD reply length")
        if any(isinstance(e, Disconnect | ProtocolError) for e in got):
            require(conn.state is State.CLOSED, "an ending event left the connection open")
        else:
            require(conn.state is State.OPEN, "closed without saying why")
        events += got
    return events


def check(data: bytes) -> None:
    size, parts = chunks(data)
    pieces = list(parts)
    limit = MAX if size % 2 else cstp.MAX_PAYLOAD
    whole = feed([b"".join(pieces)] if pieces else [], limit)
    split = feed(pieces, limit)
    require(whole == split, f"events depend on how the stream is split ({size}-byte pieces)")


if __name__ == "__main__":
    main(check)
