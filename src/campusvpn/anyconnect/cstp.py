"""CSTP framing: the frame header, its rule, and the frames the gateway sends.

    0  'S' 'T' 'F' 0x01 | length (u16 BE, payload only) | type | 0x00 | payload

The TLS stream is read as a byte stream and reassembled by the length field (`connection.py`); each
frame we send must go out as exactly one TLS record (openconnect insists), which the I/O layer ensures.
"""

from __future__ import annotations

import enum
import struct

MAGIC = b"STF\x01"
HEADER = 8
# A frame must fit one TLS record (16 KiB of plaintext).
MAX_PAYLOAD = 16384 - HEADER


class FrameType(enum.IntEnum):
    DATA = 0x00
    DPD_REQ = 0x03
    DPD_RESP = 0x04
    DISCONNECT = 0x05
    KEEPALIVE = 0x07
    COMPRESSED = 0x08
    TERMINATE = 0x09


# Disconnect reason codes seen on the wire.
BYE_USER = 0xB0  # openconnect: user ended the session (Ctrl-C): the session is over
BYE_RECONNECT = 0x91  # Cisco: "reconnecting the VPN tunnel": keep the session


HEADER_STRUCT = struct.Struct(">4sHBB")  # magic, payload length, type, zero


def header_problem(magic: bytes, length: int, zero: int, max_payload: int = MAX_PAYLOAD) -> str | None:
    """What is wrong with a frame header, or None: the framing rule, in one place."""
    if magic != MAGIC:
        return f"bad frame magic {magic!r}"
    if zero != 0:
        return "bad frame: byte 7 is not zero"
    if length > max_payload:
        return f"frame of {length} bytes exceeds the {max_payload}-byte limit"
    return None


def encode(ftype: int, payload: bytes | memoryview = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit one frame")
    return HEADER_STRUCT.pack(MAGIC, len(payload), ftype, 0) + payload


def disconnect(reason: str, code: int = 0) -> bytes:
    """A DISCONNECT frame; openconnect prints `Received server disconnect: <code> '<reason>'`."""
    return encode(FrameType.DISCONNECT, bytes([code]) + reason.encode("utf-8", "replace")[:1000])


def disconnect_reason(payload: bytes) -> tuple[int | None, str]:
    if not payload:
        return None, ""
    return payload[0], payload[1:].decode("utf-8", "replace")
