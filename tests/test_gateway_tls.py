"""The gateway's own TLS layer and the tunnel's data-path protocol, over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from campusvpn.anyconnect import cstp
from campusvpn.anyconnect.channel import CstpChannel
from campusvpn.anyconnect.cstp import FrameType
from campusvpn.cli.setup import write_self_signed
from campusvpn.frontdoor.server import ssl_context
from campusvpn.frontdoor.tls import TlsServerProtocol
from campusvpn.tunnels.tunnel import Ending, SessionInfo, Tunnel

ADDR = bytes([172, 31, 0, 9])


def _packet(size: int = 84, src: bytes = ADDR) -> bytes:
    return bytes([0x45]) + b"\0" * 11 + src + bytes([10, 98, 0, 2]) + b"p" * (size - 20)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.closed = True


def _channel(transport: Any, on_packet: Any) -> CstpChannel:
    channel = CstpChannel(transport)
    channel.bind(
        Tunnel(SessionInfo("s1", "1234567890", 1, "172.31.0.9", datetime(2030, 1, 1), "anyconnect"), channel), on_packet
    )
    return channel


# --- the tunnel protocol, fed directly -------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 5, 8, 9, 100, 1500, 100_000])
def test_tunnel_protocol_reassembles_frames_however_they_arrive(chunk: int) -> None:
    async def run() -> None:
        rec = Recorder()
        got: list[bytes] = []
        proto = _channel(rec, lambda _t, p: got.append(bytes(p)))
        packets = [_packet(60 + i * 37) for i in range(30)]
        stream = b"".join(cstp.encode(FrameType.DATA, p) for p in packets[:15])
        stream += cstp.encode(FrameType.DPD_REQ, b"probe-1") + cstp.encode(FrameType.KEEPALIVE)
        stream += b"".join(cstp.encode(FrameType.DATA, p) for p in packets[15:])
        for i in range(0, len(stream), chunk):
            proto.feed(stream[i : i + chunk])
        assert got == packets
        assert rec.sent == [cstp.encode(FrameType.DPD_RESP, b"probe-1")]  # the probe's own payload back
        assert not proto.ended.done() and not rec.closed

    asyncio.run(run())


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (cstp.disconnect("bye", cstp.BYE_USER), Ending("client signed off: bye", signed_off=True)),
        (cstp.disconnect("reconnecting", cstp.BYE_RECONNECT), Ending("client detached: reconnecting")),
        (b"GET / HTTP/1.1\r\n\r\n", None),
        (cstp.encode(0x42, b"?"), Ending("protocol error: unexpected frame type 66", protocol_error=True)),
    ],
)
def test_tunnel_protocol_endings(stream: bytes, expected: Ending | None) -> None:
    async def run() -> None:
        rec = Recorder()
        got: list[bytes] = []
        proto = _channel(rec, lambda _t, p: got.append(bytes(p)))
        # Anything after the ending is not looked at.
        proto.feed(stream + cstp.encode(FrameType.DATA, _packet()))
        ending = proto.ended.result()
        if expected is None:
            assert ending.protocol_error and "bad frame magic" in ending.reason
        else:
            assert ending == expected
        assert rec.closed and got == []

    asyncio.run(run())


def test_a_full_queue_takes_the_channel_out_of_use_until_it_drains() -> None:
    async def run() -> None:
        proto = _channel(Recorder(), lambda _t, p: None)
        assert proto.tunnel is not None and proto.tunnel.best_channel() is proto
        proto.pause_writing()
        assert not proto.ready and proto.tunnel.best_channel() is None  # the hub drops, as a router does
        proto.resume_writing()
        assert proto.ready

    asyncio.run(run())


# --- the TLS layer over loopback ------------------------------------------------------------


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, "localhost")
    return ssl_context(str(cert), str(key))


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Collect(asyncio.BufferedProtocol):
    """A tunnel-like application protocol: records what it was given and how often."""

    def __init__(self) -> None:
        self.buf = bytearray(1 << 16)
        self.data = bytearray()
        self.calls = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.calls += 1
        self.data += self.buf[:nbytes]


def test_tls_layer_serves_a_stream_then_switches_protocol_and_writes_one_record_per_frame(
    tls_context: ssl.SSLContext,
) -> None:
    async def run() -> None:
        switched: asyncio.Future[Collect] = asyncio.get_running_loop().create_future()

        async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            assert writer.get_extra_info("ssl_object") is not None
            assert writer.get_extra_info("peername")[0] == "127.0.0.1"
            writer.write(b"echo " + line)
            await writer.drain()
            collect = Collect()
            writer.transport.set_protocol(collect)
            # What the stream reader got before the switch is read from it, as the gateway does.
            reader.feed_eof()
            collect.data += await reader.read()
            writer.transport.writelines([b"frame-%d" % i for i in range(5)])
            switched.set_result(collect)

        def http_phase() -> asyncio.BaseProtocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), app)

        server = await asyncio.get_running_loop().create_server(
            lambda: TlsServerProtocol(tls_context, http_phase, 5.0), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        # A client on a raw socket with its own memory BIOs, so the records can be counted.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = _client_context().wrap_bio(incoming, outgoing)
        loop = asyncio.get_running_loop()
        raw = bytearray()

        async def pump_until(done: Any) -> None:
            for _ in range(200):
                if outgoing.pending:
                    await loop.sock_sendall(sock, outgoing.read())
                if done():
                    return
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.05)
                except TimeoutError:
                    continue
                raw.extend(data)
                incoming.write(data)
            raise AssertionError("no progress")

        def handshake_done() -> bool:
            try:
                client.do_handshake()
                return True
            except ssl.SSLWantReadError:
                return False

        await pump_until(handshake_done)
        client.write(b"hello\n" + b"tunnel bytes right after")
        got = bytearray()

        def read_all(until: bytes) -> Any:
            def check() -> bool:
                try:
                    while True:
                        got.extend(client.read(65536))
                except ssl.SSLWantReadError:
                    pass
                return until in got

            return check

        raw.clear()
        await pump_until(read_all(b"frame-4"))
        assert got == b"echo hello\n" + b"".join(b"frame-%d" % i for i in range(5))
        collect = await asyncio.wait_for(switched, 5)
        client.write(b" and more")
        await pump_until(lambda: b"and more" in collect.data)
        assert bytes(collect.data) == b"tunnel bytes right after and more"
        # One TLS 1.3 record per frame: 7 bytes of frame + content type + 16-byte tag = 24 each.
        lengths, pos = [], 0
        while pos + 5 <= len(raw):
            length = struct.unpack_from(">H", raw, pos + 3)[0]
            lengths.append(length)
            pos += 5 + length
        assert lengths[-5:] == [24] * 5 and 24 * 6 not in lengths
        sock.close()
        server.close()
        await server.wait_closed()

    asyncio.run(run())


def test_tls_layer_drops_a_silent_or_garbage_client_without_a_traceback(
    tls_context: ssl.SSLContext, capsys: pytest.CaptureFixture[str]
) -> None:
    async def run() -> None:
        errors: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        started: list[str] = []

        def http_phase() -> asyncio.BaseProtocol:
            started.append("app")
            return asyncio.Protocol()

        server = await loop.create_server(lambda: TlsServerProtocol(tls_context, http_phase, 0.3), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        garbage_r, garbage_w = await asyncio.open_connection("127.0.0.1", port)
        garbage_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # The garbage gets a TLS alert and the connection closes; the silent one closes at the limit.
        assert await asyncio.wait_for(garbage_r.read(), 2) != b"HTTP"
        assert await asyncio.wait_for(silent_r.read(), 2) == b""
        assert started == [] and errors == []
        for w in (silent_w, garbage_w):
            w.close()
        server.close()
        await server.wait_closed()

    asyncio.run(run())
    assert "Traceback" not in capsys.readouterr().err
