"""PPP on a Fortinet TLS stream, sans-IO: the 6-byte framing and the control packets' layout.

Every PPP frame travels behind a header of its own (no HDLC: no flags, no stuffing, no FCS):

    total length (u16 BE, = 6 + PPP frame) | 0x5050 | PPP frame length (u16 BE) | PPP frame

Frames may be split across TLS records or packed several into one. openconnect puts the HDLC
address and control bytes `FF 03` before each PPP frame and openfortivpn does not, so both are
accepted; we never send them (pppd behind openfortivpn would get them twice).

Control packets (LCP, IPCP; RFC 1661 section 5):  code | identifier | length (u16 BE) | data
Configuration options:                             type | length | value
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

MAGIC = 0x5050
HEADER = 6
# A frame must fit a TLS record; openconnect reserves 16 KiB for one.
MAX_FRAME = 16384

PROTO_IPV4 = 0x0021
PROTO_IPV6 = 0x0057
PROTO_LCP = 0xC021
PROTO_IPCP = 0x8021

HEADER_STRUCT = struct.Struct(">HHH")
_IPV4_HEAD = b"\x00\x21"


class FramingError(Exception):
    """The peer broke the framing: the stream cannot be resynchronised.

    `before` holds the complete frames that came before the bad one: they still count.
    """

    def __init__(self, message: str, before: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.before = before or []


class Frame(NamedTuple):
    protocol: int
    info: bytes | memoryview  # what follows the protocol field


def encode(protocol: int, info: bytes | memoryview = b"") -> bytes:
    """One framed PPP frame; the protocol field always takes two bytes (no compression)."""
    size = 2 + len(info)
    return HEADER_STRUCT.pack(HEADER + size, MAGIC, size) + protocol.to_bytes(2, "big") + bytes(info)


def encode_ipv4(packet: bytes | memoryview) -> bytes:
    size = 2 + len(packet)
    return b"".join((HEADER_STRUCT.pack(HEADER + size, MAGIC, size), _IPV4_HEAD, packet))


def frame_problem(total: int, magic: int, size: int) -> str | None:
    """What is wrong with a frame header (total length, magic, PPP frame length), or None."""
    if magic != MAGIC:
        return f"bad magic 0x{magic:04x}"
    if total != size + HEADER:
        return f"lengths disagree: total {total}, frame {size}"
    if size < 1 or total > MAX_FRAME:
        return f"frame length {size} out of range"
    return None


def split_frames(view: memoryview, filled: int) -> tuple[list[Frame], int]:
    """The complete frames in `view[:filled]` and how many bytes they used.

    Payloads are slices of `view`. Raises FramingError on a bad magic or inconsistent lengths.
    """
    frames: list[Frame] = []
    pos = 0
    while filled - pos >= HEADER:
        total, magic, size = HEADER_STRUCT.unpack_from(view, pos)
        problem = frame_problem(total, magic, size)
        if problem is not None:
            raise FramingError(problem, frames)
        if filled - pos < total:
            break
        frames.append(parse_frame(view[pos + HEADER : pos + total]))
        pos += total
    return frames, pos


def parse_frame(frame: memoryview) -> Frame:
    """One PPP frame (what follows the 6-byte header): its protocol and information field."""
    if len(frame) >= 2 and frame[0] == 0xFF and frame[1] == 0x03:
        frame = frame[2:]  # HDLC address and control (openconnect sends them)
    if not frame:
        return Frame(0, frame)
    if frame[0] & 1:  # a compressed (1-byte) protocol field: accepted, though never negotiated
        return Frame(frame[0], frame[1:])
    if len(frame) < 2:
        return Frame(frame[0] << 8, frame[1:])
    return Frame((frame[0] << 8) | frame[1], frame[2:])


# --- control packets ---------------------------------------------------------------------------


class Packet(NamedTuple):
    code: int
    ident: int
    data: bytes


def parse_packet(info: bytes | memoryview) -> Packet | None:
    """A control packet, or None when it is too short to be one (RFC 1661: silently discard).

    Octets beyond the length field are padding and dropped.
    """
    if len(info) < 4:
        return None
    code, ident, length = info[0], info[1], int.from_bytes(info[2:4], "big")
    if length < 4 or length > len(info):
        return None
    return Packet(code, ident, bytes(info[4:length]))


def packet(code: int, ident: int, data: bytes = b"") -> bytes:
    return bytes((code, ident)) + (4 + len(data)).to_bytes(2, "big") + data


class Option(NamedTuple):
    kind: int
    value: bytes

    def encode(self) -> bytes:
        return bytes((self.kind, 2 + len(self.value))) + self.value


def parse_options(data: bytes) -> list[Option] | None:
    """A Configure packet's options, or None when they overrun the packet (discard it)."""
    out: list[Option] = []
    for kind, value in _options(data):
        if value is None:
            return None
        out.append(Option(kind, value))
    return out


def _options(data: bytes) -> Iterator[tuple[int, bytes | None]]:
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2 or data[pos + 1] < 2 or pos + data[pos + 1] > len(data):
            yield 0, None
            return
        n = data[pos + 1]
        yield data[pos], data[pos + 2 : pos + n]
        pos += n


def encode_options(options: list[Option]) -> bytes:
    return b"".join(o.encode() for o in options)
