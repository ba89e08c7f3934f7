"""Reading a tunnel's TLS stream in place: the buffered-protocol half every stream channel shares.

TLS plaintext is decrypted straight into one preallocated buffer; the channel's sans-IO connection
finds the frames there and each packet goes to the hub as a memoryview slice, in the same callback
that received it. No stream reader, no task wake-up and no copy per packet: on this path those were
most of the time a packet spent in the gateway.
"""

from __future__ import annotations

import asyncio

# Room for many TLS records per wake-up. One buffer serves every tunnel (the loop is one thread and
# a wake-up's frames are handled before the next read); a tunnel keeps only its unfinished frame.
BUFFER_SIZE = 256 * 1024
_SCRATCH = bytearray(BUFFER_SIZE)
SCRATCH = memoryview(_SCRATCH)


class StreamChannel(asyncio.BufferedProtocol):
    """A buffered protocol that hands `SCRATCH[:filled]` to `process`, which says how much it used."""

    def __init__(self) -> None:
        self._tail = b""  # the start of a frame whose end has not arrived yet
        self._filled = 0  # bytes of the tail put back at the start of the buffer

    def process(self, filled: int) -> int:
        """Handle the complete frames in `SCRATCH[:filled]`; return the bytes they took."""
        raise NotImplementedError

    def get_buffer(self, sizehint: int) -> memoryview:
        n = len(self._tail)
        if n:
            SCRATCH[:n] = self._tail
        self._filled = n
        return SCRATCH[n:]

    def buffer_updated(self, nbytes: int) -> None:
        filled = self._filled + nbytes
        used = self.process(filled)
        self._tail = bytes(SCRATCH[used:filled]) if used < filled else b""

    def feed(self, data: bytes) -> None:
        """Bytes that arrived before the switch to this protocol (after the tunnel request)."""
        view = memoryview(data)
        while view:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]
