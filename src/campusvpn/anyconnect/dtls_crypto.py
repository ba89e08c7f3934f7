"""DTLS 1.2 for AnyConnect with pyOpenSSL over memory BIOs: bytes in, bytes out, no socket.

The resumption scheme (see `dtls_offer`) needs the client's master secret in the server's session
cache under an id we tell the client. OpenSSL's public way to put a made-up session there
(SSL_CTX_add_session) is not in the bindings pyOpenSSL ships, so `Keys.prime` lets OpenSSL make a
real one: a throw-away full handshake between two in-memory endpoints on our own context caches a
session, whose master secret and cipher are then replaced in place (SSL_SESSION_set1_master_key,
SSL_SESSION_set_cipher: the cache holds the same object). The client's resumption then finds it.
The throw-away server is marked shut down, or OpenSSL would uncache its session when it is
freed. The throw-away client turns extended master secret off: openconnect resumes with no extensions,
and OpenSSL refuses to resume an EMS session without it.
"""

from __future__ import annotations

import contextlib

from OpenSSL import SSL
from OpenSSL._util import ffi, lib

from campusvpn.anyconnect.dtls_records import SERVER_HELLO, hello_session_id

_OP_NO_EXTENDED_MASTER_SECRET = 0x1  # SSL_OP_NO_EXTENDED_MASTER_SECRET (OpenSSL ≥ 3.0), not in the bindings
_SUITES = ":".join(
    [
        "ECDHE-ECDSA-AES256-GCM-SHA384",  # the priming handshakes' (either key type of certificate)
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
    ]
)
_READ = 16384
_PRIMING_MTU = 16000  # in memory: no datagram limit


class DtlsError(Exception):
    """The DTLS state could not be set up (a bug or an OpenSSL without what we need)."""


class Keys:
    """The server context whose session cache holds every offered tunnel's session."""

    def __init__(self, cert_file: str, key_file: str, *, session_lifetime: int = 86400) -> None:
        ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
        ctx.use_certificate_chain_file(cert_file)  # used only by the throw-away priming handshakes
        ctx.use_privatekey_file(key_file)
        ctx.set_cipher_list(_SUITES.encode())
        ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
        ctx.set_session_id(b"campusvpn-dtls")
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        ctx.set_timeout(session_lifetime)
        self.ctx = ctx
        client = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        client.set_cipher_list(_SUITES.encode())
        client.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU | _OP_NO_EXTENDED_MASTER_SECRET)
        self._client_ctx = client

    def prime(self, master_secret: bytes, cipher_id: bytes) -> bytes:
        """Cache a session the client can resume with `master_secret`; returns its session id."""
        server = SSL.Connection(self.ctx, None)
        server.set_accept_state()
        client = SSL.Connection(self._client_ctx, None)
        client.set_connect_state()
        for end in (server, client):
            end.set_ciphertext_mtu(_PRIMING_MTU)  # memory BIOs know no MTU
        session_id: bytes | None = None
        for _ in range(10):  # a full DTLS 1.2 handshake is four flights
            _step(client)
            _pump(client, server)
            _step(server)
            flight = _drain(server)
            if session_id is None and flight:
                session_id = hello_session_id(flight, SERVER_HELLO)
            if flight:
                client.bio_write(flight)
            if _done(client) and _done(server):
                break
        if not (_done(client) and _done(server)) or session_id is None:
            raise DtlsError("the priming handshake did not finish")
        _step(server)  # the server caches the session as it finishes
        # OpenSSL takes a session out of the cache when an SSL that did not shut down is freed.
        server.set_shutdown(SSL.SENT_SHUTDOWN)
        session = server.get_session()
        if session is None:
            raise DtlsError("no session after the priming handshake")
        raw = session._session
        cipher = lib.SSL_CIPHER_find(server._ssl, cipher_id)
        if cipher == ffi.NULL:
            raise DtlsError(f"cipher {cipher_id.hex()} unknown to this OpenSSL")
        if not lib.SSL_SESSION_set1_master_key(raw, master_secret, len(master_secret)):
            raise DtlsError("could not set the master secret")
        lib.SSL_SESSION_set_cipher(raw, cipher)
        return session_id


def _step(conn: SSL.Connection) -> None:
    with contextlib.suppress(SSL.WantReadError):
        conn.do_handshake()


def _drain(conn: SSL.Connection) -> bytes:
    out = b""
    while True:
        try:
            out += conn.bio_read(_READ)
        except SSL.WantReadError:
            return out


def _pump(src: SSL.Connection, dst: SSL.Connection) -> None:
    data = _drain(src)
    if data:
        dst.bio_write(data)


def _done(conn: SSL.Connection) -> bool:
    return conn.get_state_string() == b"SSL negotiation finished successfully"


class Peer:
    """One client's DTLS connection: datagrams in, plaintext records and datagrams out.

    The handshake goes through pyOpenSSL's API; once established, records go through the OpenSSL
    calls directly into buffers kept for the connection: pyOpenSSL's per-call buffers and the
    exception that ends each read cost more than the crypto (bench/dtls_cost.py).
    """

    def __init__(self, keys: Keys, mtu: int) -> None:
        self.conn = SSL.Connection(keys.ctx, None)
        self.conn.set_accept_state()
        self.conn.set_ciphertext_mtu(mtu)
        self.established = False
        self._ssl = self.conn._ssl  # the hot path calls OpenSSL itself
        self._rbio = self.conn._into_ssl
        self._wbio = self.conn._from_ssl
        self._in = ffi.new("char[]", _READ)
        self._out = ffi.new("char[]", _READ)

    def receive(self, datagram: bytes) -> tuple[list[bytes], bytes]:
        """The records `datagram` held, decrypted, and what to send back (handshake flights).

        Records that fail authentication are dropped by OpenSSL (DTLS never closes for them).
        Raises SSL.Error when the handshake fails.
        """
        if not self.established:
            conn = self.conn
            conn.bio_write(datagram)
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                return [], _drain(conn)
            self.established = True
        else:
            lib.BIO_write(self._rbio, datagram, len(datagram))
        records: list[bytes] = []
        ssl, buf, buffer = self._ssl, self._in, ffi.buffer
        while True:
            n = lib.SSL_read(ssl, buf, _READ)
            if n <= 0:
                if lib.SSL_get_error(ssl, n) != lib.SSL_ERROR_WANT_READ:
                    lib.ERR_clear_error()  # a close_notify or an alert: nothing to keep of it
                break
            records.append(buffer(buf, n)[:])
        n = lib.BIO_read(self._wbio, self._out, _READ)  # a flight the client asked again for
        return records, buffer(self._out, n)[:] if n > 0 else b""

    @property
    def resumed(self) -> bool:
        return bool(lib.SSL_session_reused(self._ssl))

    def release(self, *, keep_session: bool) -> None:
        """Before the connection is let go: `keep_session` leaves the session resumable (the
        client may start DTLS again with it); otherwise OpenSSL drops it from the cache on free."""
        if keep_session:
            self.conn.set_shutdown(SSL.SENT_SHUTDOWN)

    def seal(self, plaintext: bytes) -> bytes:
        """One record (one datagram) carrying `plaintext`."""
        if lib.SSL_write(self._ssl, plaintext, len(plaintext)) <= 0:
            self.conn.send(plaintext)  # not expected once established: let pyOpenSSL raise its error
        n = lib.BIO_read(self._wbio, self._out, _READ)
        return ffi.buffer(self._out, n)[:] if n > 0 else b""

    def retransmit(self) -> bytes:
        """A lost handshake flight, again, once its timer ran out."""
        try:
            self.conn.DTLSv1_handle_timeout()
        except SSL.Error:
            return b""
        return _drain(self.conn)
