"""What travels inside and around AnyConnect's DTLS, sans-IO: packet types and hello session ids.

Inside the encryption each DTLS record carries one packet: a one-byte type (CSTP's codes: 0 data,
3 DPD request, 4 DPD response, 5 disconnect, 7 keepalive) and the payload. Outside, the only
thing read before the crypto is the session id of an unencrypted hello, which tells which
tunnel's offer a new UDP peer claims (anything else from an unknown address is dropped unread).
"""

from __future__ import annotations

from campusvpn.anyconnect.connection import Data, Disconnect, DpdRequest, DpdResponse, Event, Keepalive, ProtocolError
from campusvpn.anyconnect.cstp import BYE_USER, FrameType, disconnect_reason

_HANDSHAKE = 22
_RECORD_HEADER = 13
_HANDSHAKE_HEADER = 12
CLIENT_HELLO = 1
SERVER_HELLO = 2

DATA = FrameType.DATA.value
KEEPALIVE = bytes([FrameType.KEEPALIVE])
DPD_REQUEST = bytes([FrameType.DPD_REQ])


def hello_session_id(datagram: bytes, msg_type: int = CLIENT_HELLO) -> bytes | None:
    """The session id of the (unfragmented, epoch 0) hello a datagram begins with, else None."""
    if len(datagram) < _RECORD_HEADER + _HANDSHAKE_HEADER + 35 or datagram[0] != _HANDSHAKE:
        return None
    if datagram[3:5] != b"\x00\x00":  # epoch 0: not yet encrypted
        return None
    record_len = int.from_bytes(datagram[11:13], "big")
    h = _RECORD_HEADER
    if datagram[h] != msg_type or datagram[h + 6 : h + 9] != b"\x00\x00\x00":  # fragment offset 0
        return None
    body = h + _HANDSHAKE_HEADER
    at = body + 2 + 32  # version, random
    n = datagram[at]
    if n == 0 or n > 32 or at + 1 + n > min(len(datagram), _RECORD_HEADER + record_len):
        return None
    return bytes(datagram[at + 1 : at + 1 + n])


def read_packet(plaintext: bytes) -> Event | None:
    """The event for one decrypted record, or None for a record to ignore (empty, DPD response)."""
    if not plaintext:
        return None
    kind = plaintext[0]
    if kind == DATA:
        return Data(memoryview(plaintext)[1:])
    if kind == FrameType.DPD_REQ:
        return DpdRequest(bytes([FrameType.DPD_RESP]) + plaintext[1:])  # echoed: MTU probes check the size
    if kind == FrameType.KEEPALIVE:
        return Keepalive()
    if kind == FrameType.DPD_RESP:
        return DpdResponse()
    if kind == FrameType.DISCONNECT:
        code, text = disconnect_reason(plaintext[1:])
        return Disconnect(code, text, signed_off=code == BYE_USER)
    return ProtocolError(f"unexpected DTLS packet type {kind}")


def disconnect(reason: str) -> bytes:
    return bytes([FrameType.DISCONNECT, 0]) + reason.encode("utf-8", "replace")[:200]
