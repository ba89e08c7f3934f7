"""DTLS's pure parts: the CONNECT offer and answer, the packet types, hello parsing, and the
resumption the gateway primes, checked with an in-memory OpenSSL client (the real openconnect
runs in tests/e2e/test_dtls.py)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from OpenSSL._util import ffi, lib

from campusvpn.anyconnect import dtls_crypto, dtls_offer, dtls_port, dtls_records
from campusvpn.anyconnect.connect_answer import Timers, connected_response
from campusvpn.anyconnect.connection import Data, Disconnect, DpdRequest, DpdResponse, Keepalive, ProtocolError
from campusvpn.platform.config_schema import VpnSettings

OPENCONNECT_HEADERS = {
    "x-dtls-master-secret": "ab" * 48,
    "x-dtls-ciphersuite": "PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC2-DTLS1_2-CHACHA20-POLY1305:OC-DTLS1_2-AES128-GCM:"
    "DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA",
    "x-dtls12-ciphersuite": "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:"
    "AES128-GCM-SHA256:DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA",
    "x-cstp-base-mtu": "1500",
}


# --- the offer ---------------------------------------------------------------------------------


def test_openconnects_offer_gets_the_strongest_dtls12_suite() -> None:
    offer = dtls_offer.read_offer(OPENCONNECT_HEADERS)
    assert offer is not None
    assert offer.master_secret == b"\xab" * 48
    assert offer.suite == dtls_offer.Suite("X-DTLS12-CipherSuite", "ECDHE-RSA-AES256-GCM-SHA384", b"\xc0\x30")


def test_only_legacy_list_picks_the_oc_suite() -> None:
    headers = {"x-dtls-master-secret": "00" * 48, "x-dtls-ciphersuite": "PSK-NEGOTIATE:OC-DTLS1_2-AES128-GCM"}
    offer = dtls_offer.read_offer(headers)
    assert offer is not None and offer.suite.name == "OC-DTLS1_2-AES128-GCM"
    assert offer.suite.header == "X-DTLS-CipherSuite"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no DTLS offered (openconnect --no-dtls)
        {**OPENCONNECT_HEADERS, "x-dtls-master-secret": "zz" * 48},
        {**OPENCONNECT_HEADERS, "x-dtls-master-secret": "ab" * 47},
        {"x-dtls-master-secret": "ab" * 48, "x-dtls-ciphersuite": "PSK-NEGOTIATE:AES256-SHA"},  # nothing we take
    ],
)
def test_no_usable_offer_means_tls_only(headers: dict[str, str]) -> None:
    assert dtls_offer.read_offer(headers) is None


@pytest.mark.parametrize(
    ("value", "base"), [("1500", 1500), ("9000", 1500), ("1000", 1280), ("junk", 1500), ("", 1500)]
)
def test_base_mtu_is_kept_within_reason(value: str, base: int) -> None:
    assert dtls_offer.base_mtu({"x-cstp-base-mtu": value} if value else {}) == base


def test_dtls_mtu_is_what_one_datagram_holds_on_a_1500_link() -> None:
    assert dtls_offer.dtls_mtu(1500, 1472) == 1434  # ocserv says the same for a 1500-byte link
    assert dtls_offer.dtls_mtu(1500, 1400) == 1400  # never more than configured
    assert dtls_offer.dtls_mtu(1400, 1472) == 1334


def test_connect_answer_carries_the_dtls_headers_and_the_dtls_mtu() -> None:
    offer = dtls_offer.read_offer(OPENCONNECT_HEADERS)
    assert offer is not None
    sid = bytes(range(32))
    dtls = dtls_offer.answer_headers(sid, offer.suite, port=443, mtu=1434, dpd=30, keepalive=20)
    raw = connected_response(VpnSettings(), "172.31.0.2", Timers(30, 20, 1800, 3600, 600), mtu=1434, dtls=dtls)
    lines = raw.decode().split("\r\n")
    assert f"X-DTLS-Session-ID: {sid.hex().upper()}" in lines  # exactly 64 hex characters
    assert "X-DTLS12-CipherSuite: ECDHE-RSA-AES256-GCM-SHA384" in lines
    assert "X-DTLS-Port: 443" in lines and "X-DTLS-MTU: 1434" in lines and "X-CSTP-MTU: 1434" in lines
    assert not [ln for ln in lines if ln.startswith("X-DTLS-CipherSuite")]  # one suite header only


# --- packets and hellos ------------------------------------------------------------------------


def test_packet_types() -> None:
    ev = dtls_records.read_packet(b"\x00" + b"\x45" * 20)
    assert isinstance(ev, Data) and bytes(ev.payload) == b"\x45" * 20
    assert dtls_records.read_packet(b"\x03probe") == DpdRequest(b"\x04probe")  # echoed, MTU probes check it
    assert dtls_records.read_packet(b"\x07") == Keepalive()
    assert dtls_records.read_packet(b"\x04") == DpdResponse()
    assert dtls_records.read_packet(b"\x05\xb0bye") == Disconnect(0xB0, "bye", signed_off=True)
    assert isinstance(dtls_records.read_packet(b"\x63"), ProtocolError)
    assert dtls_records.read_packet(b"") is None


def hello(
    session_id: bytes, *, msg_type: int = 1, epoch: bytes = b"\x00\x00", offset: bytes = b"\x00\x00\x00"
) -> bytes:
    body = b"\xfe\xfd" + os.urandom(32) + bytes([len(session_id)]) + session_id + b"\x00\x00\x02\xc0\x30\x01\x00"
    hs = bytes([msg_type]) + len(body).to_bytes(3, "big") + b"\x00\x00" + offset + len(body).to_bytes(3, "big") + body
    return b"\x16\xfe\xfd" + epoch + b"\x00" * 6 + len(hs).to_bytes(2, "big") + hs


def test_hello_session_id_reads_only_a_plain_first_hello() -> None:
    sid = os.urandom(32)
    assert dtls_records.hello_session_id(hello(sid)) == sid
    assert dtls_records.hello_session_id(hello(sid, msg_type=2), dtls_records.SERVER_HELLO) == sid
    assert dtls_records.hello_session_id(hello(sid, msg_type=2)) is None  # not a ClientHello
    assert dtls_records.hello_session_id(hello(sid, epoch=b"\x00\x01")) is None  # encrypted
    assert dtls_records.hello_session_id(hello(sid, offset=b"\x00\x00\x10")) is None  # a later fragment
    assert dtls_records.hello_session_id(hello(b"")) is None
    assert dtls_records.hello_session_id(hello(sid)[:70]) is None  # cut short
    assert dtls_records.hello_session_id(b"\x17\xfe\xfd" + os.urandom(100)) is None
    for n in range(0, 120):  # nothing short or random raises
        dtls_records.hello_session_id(os.urandom(n))


# --- the crypto --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dtls_crypto.Keys:
    d: Path = tmp_path_factory.mktemp("dtls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "vpn.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return dtls_crypto.Keys(str(d / "cert.pem"), str(d / "key.pem"))


def client_for(keys: dtls_crypto.Keys, session_id: bytes, secret: bytes, cipher_id: bytes) -> SSL.Connection:
    """An in-memory DTLS client holding a session made from (id, master secret, suite), as a VPN
    client builds it from CONNECT's headers: a real client session with those three swapped in
    through its DER form (OpenSSL has no public setter for a client session's id)."""
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU | 0x1)  # 0x1: no extended master secret
    ctx.set_cipher_list(b"ECDHE-ECDSA-AES256-GCM-SHA384")  # c02c: swapped for `cipher_id` below
    first = SSL.Connection(ctx, None)
    first.set_connect_state()
    first.set_ciphertext_mtu(1400)
    server = SSL.Connection(keys.ctx, None)
    server.set_accept_state()
    server.set_ciphertext_mtu(1400)
    their_id = None
    for _ in range(10):
        dtls_crypto._step(first)
        dtls_crypto._pump(first, server)
        dtls_crypto._step(server)
        flight = dtls_crypto._drain(server)
        their_id = their_id or (dtls_records.hello_session_id(flight, dtls_records.SERVER_HELLO) if flight else None)
        if flight:
            first.bio_write(flight)
    session = first.get_session()
    assert session is not None and their_id is not None
    master = ffi.new("unsigned char[48]")
    assert lib.SSL_SESSION_get_master_key(session._session, master, 48) == 48
    size = lib.i2d_SSL_SESSION(session._session, ffi.NULL)
    der_buf = ffi.new("unsigned char[]", size)
    out = ffi.new("unsigned char **", der_buf)
    lib.i2d_SSL_SESSION(session._session, out)
    der = bytes(ffi.buffer(der_buf, size))
    der = der.replace(their_id, session_id).replace(bytes(master), secret)
    der = der.replace(b"\x04\x02\xc0\x2c", b"\x04\x02" + cipher_id, 1)  # the first handshake's suite
    src = ffi.new("unsigned char[]", der)
    made = lib.d2i_SSL_SESSION(ffi.NULL, ffi.new("unsigned char **", src), len(der))
    assert made != ffi.NULL
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU | 0x1)
    ctx.set_cipher_list(b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-GCM-SHA256")
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    client.set_ciphertext_mtu(1400)
    assert lib.SSL_set_session(client._ssl, made) == 1
    lib.SSL_SESSION_free(made)
    return client


def handshake(client: SSL.Connection, peer: dtls_crypto.Peer) -> None:
    for _ in range(4):
        dtls_crypto._step(client)
        out = dtls_crypto._drain(client)
        if out:
            _, reply = peer.receive(out)
            if reply:
                client.bio_write(reply)
        if peer.established:
            dtls_crypto._step(client)
            return


@pytest.mark.parametrize("cipher", [b"\xc0\x30", b"\x00\x9d", b"\xc0\x2f", b"\x00\x9c"])
def test_the_client_resumes_the_primed_session_and_packets_flow(keys: dtls_crypto.Keys, cipher: bytes) -> None:
    secret = os.urandom(48)
    sid = keys.prime(secret, cipher)
    assert len(sid) == dtls_offer.SESSION_ID_LEN
    client = client_for(keys, sid, secret, cipher)
    peer = dtls_crypto.Peer(keys, 1434 + 38)
    handshake(client, peer)
    assert peer.established and peer.resumed
    client.send(b"\x00" + b"\x45" * 100)
    records, _ = peer.receive(dtls_crypto._drain(client))
    assert records == [b"\x00" + b"\x45" * 100]
    datagram = peer.seal(b"\x00" + b"\x45" * 1434)
    assert len(datagram) == 1434 + 1 + dtls_offer.DTLS_GCM_OVERHEAD  # the MTU arithmetic holds
    client.bio_write(datagram)
    assert client.recv(4096) == b"\x00" + b"\x45" * 1434
    # A forged or corrupted record is dropped; the connection goes on.
    client.send(b"\x07")
    good = dtls_crypto._drain(client)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    assert peer.receive(bad)[0] == []
    assert peer.receive(good)[0] == [b"\x07"]


def test_a_client_without_the_master_secret_cannot_finish(keys: dtls_crypto.Keys) -> None:
    sid = keys.prime(os.urandom(48), b"\xc0\x30")
    client = client_for(keys, sid, os.urandom(48), b"\xc0\x30")
    peer = dtls_crypto.Peer(keys, 1472)
    with contextlib.suppress(SSL.Error):  # DTLS may just drop the records it cannot authenticate
        handshake(client, peer)
    assert not peer.established  # its Finished cannot be right: the channel never comes up


# --- CONNECT through the site: DTLS on and off ---------------------------------------------------


@pytest.mark.parametrize("dtls_on", [True, False])
def test_connect_offers_dtls_only_when_on_and_tls_only_keeps_the_larger_mtu(tmp_path: Path, dtls_on: bool) -> None:
    import asyncio
    from datetime import timedelta

    import h11
    from tests.test_gateway_housekeeping import _staff_with_phone

    from campusvpn.anyconnect.dtls_port import DtlsPort
    from campusvpn.anyconnect.site import AnyConnectSite
    from campusvpn.cli.setup import write_self_signed
    from campusvpn.frontdoor.http import Peer, Request, Upgrade
    from campusvpn.service import sessions
    from campusvpn.tunnels.hub import Hub

    ctx, clock = _staff_with_phone(tmp_path, trained=True)
    clock.advance(timedelta(minutes=41))
    cert, key = ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem")
    write_self_signed(cert, key, "localhost")
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="192.0.2.1", client="t"
        )

    async def run() -> bytes:
        hub = Hub(ctx, tun_fd=None, node="gw1")
        port = DtlsPort(dtls_crypto.Keys(str(cert), str(key)), 443) if dtls_on else None
        site = AnyConnectSite(ctx, hub, claim_everything=False, dtls=port)
        headers = [("Host", "x"), ("Cookie", f"webvpn={opened.token}"), *OPENCONNECT_HEADERS.items()]
        raw = h11.Request(method="CONNECT", target="/CSCOSSLC/tunnel", headers=headers)
        answer = await site.respond(Request.of(raw), b"", h11.Connection(h11.SERVER), Peer("192.0.2.1", None, None))
        assert isinstance(answer, Upgrade)
        return answer.response

    lines = asyncio.run(run()).decode().split("\r\n")
    dtls_lines = [ln for ln in lines if ln.startswith(("X-DTLS-", "X-DTLS12-"))]
    if dtls_on:
        assert "X-DTLS-Port: 443" in lines and "X-DTLS-MTU: 1434" in lines and "X-CSTP-MTU: 1434" in lines
        assert any(ln.startswith("X-DTLS-Session-ID: ") and len(ln) == 19 + 64 for ln in lines)
    else:
        assert dtls_lines == [] and "X-CSTP-MTU: 1472" in lines  # as before DTLS, with ocserv's TLS-only MTU


# --- sending -----------------------------------------------------------------------------------


def test_a_batch_leaves_in_bounded_runs_that_one_gso_send_can_carry() -> None:
    batch = [bytes([i % 251]) * 1472 for i in range(256)]  # a TUN batch of full-size packets
    runs = dtls_port.bursts(batch)
    assert [len(r) for r in runs] == [dtls_port.BURST] * (256 // dtls_port.BURST)
    assert [x for r in runs for x in r] == batch  # all of them, in order
    # Every record of a run has the first one's size but the last, which may be shorter.
    mixed = [b"a" * 100] * 3 + [b"b" * 50] + [b"c" * 100, b"d" * 40, b"e" * 200]
    assert [[len(x) for x in r] for r in dtls_port.bursts(mixed)] == [[100, 100, 100, 50], [100, 40], [200]]
    assert all(sum(map(len, r)) <= 65000 for r in dtls_port.bursts([b"x" * 9000] * 20, 16))


def test_records_sent_in_bursts_arrive_whole_and_in_order(keys: dtls_crypto.Keys) -> None:
    """Through the kernel (GSO where it has it): each record is a datagram of its own."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    records = [os.urandom(1200) for _ in range(40)] + [os.urandom(300)] + [os.urandom(1200) for _ in range(9)]

    async def send() -> None:
        port = dtls_port.DtlsPort(keys, 0)
        sock = dtls_port.udp_socket("127.0.0.1", 0)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: port, sock=sock)
        port.send_records(records, rx.getsockname())
        assert port._gso  # the kernel took the runs as they were cut
        await asyncio.sleep(0)
        port.close()

    asyncio.run(send())
    got = [rx.recv(65536) for _ in records]
    rx.close()
    assert got == records
