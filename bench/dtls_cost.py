"""What one packet costs the gateway over DTLS (pyOpenSSL) and over TLS (the stdlib ssl), in process.

Both sides use AES-256-GCM and memory BIOs, as the gateway does; a 1400-byte IP packet each time.
    dtls_seal      framing + SSL_write + BIO_read: one datagram ready for sendto (gateway → client)
    dtls_open      BIO_write + SSL_read + the packet-type dispatch (client → gateway)
    dtls_sendto    dtls_seal plus the sendto on a UDP socket (the whole gateway → client path)
    tls_frame      CSTP framing + SSLObject.write + BIO read (what the CSTP channel pays per frame)
    tls_open       BIO write + SSLObject.read of one CSTP frame
    prime          the throw-away handshake that caches a session, once per CONNECT
Prints `name value unit` lines (medians of 7 runs).

    PYTHONPATH=src python bench/dtls_cost.py
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from OpenSSL import SSL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from campusvpn.anyconnect import cstp, dtls_crypto, dtls_records

PACKET = b"\x45" + os.urandom(1399)
N = 20000


def certificate() -> tuple[str, str]:
    tmp = Path(tempfile.mkdtemp())
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(tmp / "k.pem"), "-out", str(tmp / "c.pem"), "-days", "1", "-subj", "/CN=bench"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(tmp / "c.pem"), str(tmp / "k.pem")


def dtls_pair(keys: dtls_crypto.Keys) -> tuple[SSL.Connection, dtls_crypto.Peer]:
    """A client and the gateway's Peer after a full handshake (same AES-256-GCM records as a resumed one)."""
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_options(SSL.OP_NO_QUERY_MTU)
    ctx.set_cipher_list(b"ECDHE-ECDSA-AES256-GCM-SHA384")
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    client.set_ciphertext_mtu(1472)
    peer = dtls_crypto.Peer(keys, 1472)
    for _ in range(10):
        dtls_crypto._step(client)
        out = dtls_crypto._drain(client)
        if out:
            _, reply = peer.receive(out)
            if reply:
                client.bio_write(reply)
        if peer.established:
            dtls_crypto._step(client)
            break
    assert peer.established
    return client, peer


def tls_pair(cert: str, key: str) -> tuple[ssl.SSLObject, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO, ssl.MemoryBIO]:
    """Server, client, and the server's outgoing, server's incoming and client's outgoing BIOs."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    client = cctx.wrap_bio(c_in, c_out)
    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    client.write(b"x")
    s_in.write(c_out.read())
    server.read(10)
    return server, client, s_out, s_in, c_out


def per_packet(fn: Callable[[], object], n: int = N) -> float:
    runs = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    cert, key = certificate()
    keys = dtls_crypto.Keys(cert, key)
    client, peer = dtls_pair(keys)
    payload = b"\x00" + PACKET
    print(f"dtls_seal {per_packet(lambda: peer.seal(payload)):.2f} us/packet")

    # The same record again would be a replay (dropped unread): seal a fresh one per packet, timed apart.
    records = []
    for _ in range(N * 7):
        client.send(payload)
        records.append(client.bio_read(4096))
    it = iter(records)

    def open_one() -> None:
        for r in peer.receive(next(it))[0]:
            dtls_records.read_packet(r)

    print(f"dtls_open {per_packet(open_one):.2f} us/packet")

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = rx.getsockname()

    def seal_send() -> None:
        tx.sendto(peer.seal(payload), addr)
        with contextlib.suppress(BlockingIOError):
            rx.recv(4096)

    print(f"dtls_sendto {per_packet(seal_send, N // 4):.2f} us/packet (with the receiver's recv)")

    server, tclient, s_out, s_in, c_out = tls_pair(cert, key)

    def tls_frame() -> None:
        server.write(cstp.encode(cstp.FrameType.DATA, PACKET))
        s_out.read()

    print(f"tls_frame {per_packet(tls_frame):.2f} us/packet")

    frame = cstp.encode(cstp.FrameType.DATA, PACKET)
    tls_records = []
    for _ in range(N * 7):
        tclient.write(frame)
        tls_records.append(c_out.read())
    it2 = iter(tls_records)

    def tls_open() -> None:
        s_in.write(next(it2))
        server.read(16384)

    print(f"tls_open {per_packet(tls_open):.2f} us/packet")
    suite = bytes.fromhex("c030")
    print(f"prime {per_packet(lambda: keys.prime(os.urandom(48), suite), 200):.2f} us/connect")


if __name__ == "__main__":
    main()
