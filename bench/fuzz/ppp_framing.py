"""Fortinet's PPP framing and control-packet layout (`fortinet.ppp`): FramingError only, exact round trips."""

from __future__ import annotations

import atheris
from fuzzlib import main, require

with atheris.instrument_imports(include=["campusvpn"]):
    from campusvpn.fortinet import ppp


def check(data: bytes) -> None:
    view = memoryview(data)
    try:
        frames, used = ppp.split_frames(view, len(data))
    except ppp.FramingError as exc:
        require(str(exc), "a FramingError says what is wrong")
        frames = exc.before
    else:
        require(0 <= used <= len(data), "used more bytes than given")
        require(len(data) - used < ppp.MAX_FRAME, "a whole frame's worth of bytes left unread")
    for f in frames:
        require(0 <= f.protocol <= 0xFFFF and len(f.info) <= ppp.MAX_FRAME, "frame out of range")
        again = ppp.encode(f.protocol, f.info)
        if len(again) <= ppp.MAX_FRAME:  # a compressed protocol field grows by one byte
            back, n = ppp.split_frames(memoryview(again), len(again))
            require(n == len(again) and len(back) == 1, "an encoded frame does not read back whole")
            require(back[0].protocol == f.protocol and bytes(back[0].info) == bytes(f.info), "frame round trip")
        pkt = ppp.parse_packet(f.info)
        if pkt is not None:
            require(4 + len(pkt.data) <= len(f.info), "packet longer than its frame")
            require(ppp.packet(pkt.code, pkt.ident, pkt.data) == bytes(f.info[: 4 + len(pkt.data)]), "packet trip")
            options = ppp.parse_options(pkt.data)
            if options is not None:
                require(ppp.encode_options(options) == pkt.data, "options do not encode back to their bytes")
    # The same rules on the raw input, so that short inputs reach the packet and option parsers.
    pkt = ppp.parse_packet(data)
    require(pkt is None or ppp.packet(pkt.code, pkt.ident, pkt.data) == data[: 4 + len(pkt.data)], "packet trip")
    options = ppp.parse_options(data)
    require(options is None or ppp.encode_options(options) == data, "options round trip")


if __name__ == "__main__":
    main(check)
