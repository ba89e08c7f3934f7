"""TLS for the gateway's connections: `ssl.SSLObject` over memory BIOs on a plain TCP transport.

asyncio's own TLS layer runs a general state machine and several Python calls for each record; a
tunnel packet pays for them on every wake-up. This layer does only what the gateway needs: the
handshake (with a time limit), then ciphertext is received into one buffer shared by all
connections, decrypted straight into the application protocol's buffer (as many records as are
there, one call to the application), and each write becomes one TLS record, with all the records
of one `writelines` leaving in a single socket write.

The application protocol is an ordinary asyncio protocol (`StreamReaderProtocol` for the HTTP
phase, the tunnel's `BufferedProtocol` after CONNECT) and sees a transport like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterable
from typing import Any, cast

from campusvpn.frontdoor.budget import Slot

# Ciphertext lands here first; every connection uses the same one (the loop is one thread and the
# bytes are moved into the connection's BIO before anything else runs).
_RECEIVE = bytearray(256 * 1024)
_RECEIVE_VIEW = memoryview(_RECEIVE)
# Plaintext for applications that take bytes (the HTTP phase) is decrypted here first.
_PLAIN = bytearray(64 * 1024)
_PLAIN_VIEW = memoryview(_PLAIN)


class TlsServerProtocol(asyncio.BufferedProtocol):
    """Server side of one TLS connection; starts `app_factory()`'s protocol once the handshake is done."""

    def __init__(
        self,
        context: ssl.SSLContext,
        app_factory: Callable[[], asyncio.BaseProtocol],
        handshake_timeout: float,
        admit: Callable[[str | None], Slot | None] | None = None,
    ) -> None:
        self._context = context
        self._admit = admit
        self.slot: Slot | None = None
        self._app_factory = app_factory
        self._handshake_timeout = handshake_timeout
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw: asyncio.Transport | None = None
        self._app: asyncio.BaseProtocol | None = None
        self._transport = TlsTransport(self)
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    # --- from the TCP transport ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)  # TCP: reads and writes (uvloop's is not a subclass)
        if self._admit is not None:
            peer = transport.get_extra_info("peername")
            self.slot = self._admit(str(peer[0]) if peer else None)
            if self.slot is None:  # over budget: refused before a handshake is spent on it
                self._closing = True
                self._raw.abort()
                return
        self._timer = asyncio.get_running_loop().call_later(self._handshake_timeout, self._raw.abort)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECEIVE_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        if self._closing and self._app is None:
            return  # refused or failed before the handshake finished: nothing more to do
        self._incoming.write(_RECEIVE_VIEW[:nbytes])
        if self._app is None:
            self._handshake()
        else:
            self._read_plaintext()

    def eof_received(self) -> bool | None:
        if self._app is not None:
            self._app.eof_received()  # type: ignore[attr-defined]
        return False  # TLS without close_notify ends here: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.slot is not None:
            self.slot.release()
        if self._timer is not None:
            self._timer.cancel()
        self._closing = True
        if self._app is not None:
            app, self._app = self._app, None
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    # --- TLS -------------------------------------------------------------------------------

    def _handshake(self) -> None:
        assert self._raw is not None
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError):
            self._flush()  # the alert, if OpenSSL wrote one
            self._raw.close()
            return
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._app = self._app_factory()
        self._app.connection_made(self._transport)
        if self._incoming.pending:  # the client may have sent its first request with its Finished
            self._read_plaintext()

    def _read_plaintext(self) -> None:
        assert self._raw is not None
        eof = False
        read = cast(Callable[[int, memoryview], int], self._ssl.read)  # with a buffer it returns a count
        incoming = self._incoming
        while self._app is not None and not self._closing:
            app = self._app
            buf = memoryview(app.get_buffer(-1)) if isinstance(app, asyncio.BufferedProtocol) else _PLAIN_VIEW
            size = len(buf)
            got = 0
            try:
                while got < size:
                    n = read(size - got, buf[got:])
                    if not n:
                        eof = True
                        break
                    got += n
                    # OpenSSL takes a record from the BIO only whole (no read-ahead): an empty BIO
                    # means nothing more to decrypt, and one more read would only raise WantRead,
                    # which costs more than the read itself on an idle machine.
                    if not incoming.pending:
                        break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                eof = True
            except ssl.SSLError:
                self._raw.abort()
                return
            if got:
                if isinstance(app, asyncio.BufferedProtocol):
                    app.buffer_updated(got)
                else:
                    cast(asyncio.Protocol, app).data_received(bytes(buf[:got]))
            if eof or got < size or not incoming.pending:
                break
        if self._outgoing.pending:  # reading may have produced TLS messages (key updates)
            self._flush()
        if eof:
            self._transport.close()

    def _flush(self) -> None:
        assert self._raw is not None
        if self._outgoing.pending:
            self._raw.write(self._outgoing.read())

    # --- for TlsTransport ------------------------------------------------------------------

    def _write(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        if self._closing or self._raw is None:
            return
        write = self._ssl.write
        try:
            for chunk in chunks:
                write(chunk)  # one record each: a CSTP frame must not share or span records
        except ssl.SSLError:
            self._raw.abort()
            return
        self._raw.write(self._outgoing.read())

    def _close(self) -> None:
        if self._closing or self._raw is None:
            return
        self._closing = True
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self._ssl.unwrap()  # our close_notify; the peer's is not awaited
        self._flush()
        self._raw.close()


class TlsTransport(asyncio.Transport):
    """What the application protocol writes to: plaintext in, TLS records out."""

    def __init__(self, tls: TlsServerProtocol) -> None:
        super().__init__()
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls._write((data,))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._tls._write(list_of_data)

    def close(self) -> None:
        self._tls._close()

    def abort(self) -> None:
        self._tls._closing = True
        if self._tls._raw is not None:
            self._tls._raw.abort()

    def is_closing(self) -> bool:
        return self._tls._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._tls._context
        if name == "ssl_object":
            return self._tls._ssl
        if name == "admission_slot":
            return self._tls.slot
        if name == "cipher":
            return self._tls._ssl.cipher()
        if name == "peercert":
            return self._tls._ssl.getpeercert()
        raw = self._tls._raw
        return raw.get_extra_info(name, default) if raw is not None else default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._tls._app is not None
        return self._tls._app

    def is_reading(self) -> bool:
        raw = self._tls._raw
        return raw is not None and raw.is_reading()

    def pause_reading(self) -> None:
        if self._tls._raw is not None:
            self._tls._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._tls._raw is not None:
            self._tls._raw.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._tls._raw is not None:
            self._tls._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        raw = self._tls._raw
        return raw.get_write_buffer_size() if raw is not None else 0

    def can_write_eof(self) -> bool:
        return False
