"""PPP on the Fortinet tunnel, sans-IO: the 0x5050 framer, LCP and IPCP, driven byte by byte and fuzzed."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campusvpn.fortinet import ppp
from campusvpn.fortinet.connection import (
    CONF_ACK,
    CONF_NAK,
    CONF_REJ,
    CONF_REQ,
    ECHO_REP,
    ECHO_REQ,
    MAX_CONFIGURE,
    PROTO_REJ,
    TERM_ACK,
    TERM_REQ,
    Data,
    EchoReply,
    Event,
    LinkUp,
    Phase,
    PppConnection,
    ProtocolError,
    Terminated,
    Write,
)

ADDRESS = "172.31.0.7"
DNS = ["10.201.0.53", "10.201.0.63"]
WINS = ["10.201.0.54", "10.201.0.55"]
CLIENT_MAGIC = b"\xaa\xbb\xcc\xdd"


def ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def frame(protocol: int, info: bytes, *, hdlc: bool = True) -> bytes:
    """A frame as openconnect sends it (with FF 03) or as openfortivpn does (without)."""
    body = (b"\xff\x03" if hdlc else b"") + protocol.to_bytes(2, "big") + info
    return struct.pack(">HHH", 6 + len(body), 0x5050, len(body)) + body


def control(protocol: int, code: int, ident: int, data: bytes = b"", *, hdlc: bool = True) -> bytes:
    return frame(protocol, ppp.packet(code, ident, data), hdlc=hdlc)


def opt(kind: int, value: bytes) -> bytes:
    return bytes((kind, 2 + len(value))) + value


def parse_written(data: bytes) -> list[tuple[int, ppp.Packet | None, bytes]]:
    """What the gateway wrote, as (protocol, control packet, raw info); checks the framing exactly."""
    frames, used = ppp.split_frames(memoryview(data), len(data))
    assert used == len(data)
    out = []
    for f in frames:
        raw = bytes(f.info)
        out.append((f.protocol, ppp.parse_packet(raw) if f.protocol in (ppp.PROTO_LCP, ppp.PROTO_IPCP) else None, raw))
    return out


def writes(events: list[Event]) -> list[tuple[int, ppp.Packet | None, bytes]]:
    return [x for e in events if isinstance(e, Write) for x in parse_written(e.data)]


def new_conn(**kw: object) -> PppConnection:
    return PppConnection(0.0, address=ADDRESS, dns=DNS, wins=WINS, magic=0x12345678, **kw)  # type: ignore[arg-type]


def bring_up(conn: PppConnection, *, hdlc: bool = True) -> list[Event]:
    """The loopback trace of the reference notes, as openconnect 9.01 ran it against a gateway."""
    first = parse_written(conn.start(0.0))
    assert first[0][0] == ppp.PROTO_LCP
    req = first[0][1]
    assert req is not None and req.code == CONF_REQ
    assert req.data == opt(1, (1354).to_bytes(2, "big")) + opt(5, b"\x12\x34\x56\x78")
    events: list[Event] = []
    # The client's own request, then it Naks our MRU offering its larger one.
    events += conn.receive_data(
        control(ppp.PROTO_LCP, CONF_REQ, 1, opt(1, b"\xff\xbc") + opt(5, CLIENT_MAGIC), hdlc=hdlc), 1.0
    )
    events += conn.receive_data(control(ppp.PROTO_LCP, CONF_NAK, req.ident, opt(1, b"\xff\xbc"), hdlc=hdlc), 1.0)
    again = [w for w in writes(events) if w[1] is not None and w[1].code == CONF_REQ]
    assert len(again) == 1 and again[0][1] is not None
    assert again[0][1].ident != req.ident and again[0][1].data == req.data  # new identifier, our MRU kept
    events += conn.receive_data(control(ppp.PROTO_LCP, CONF_ACK, again[0][1].ident, req.data, hdlc=hdlc), 1.0)
    assert conn.lcp.opened
    ipcp_req = [w for w in writes(events) if w[0] == ppp.PROTO_IPCP]
    assert ipcp_req and ipcp_req[0][1] is not None and ipcp_req[0][1].code == CONF_REQ
    assert ipcp_req[0][1].data == b""  # empty: openfortivpn calls that "negotiation complete"
    asked = opt(3, ip(ADDRESS))
    events += conn.receive_data(control(ppp.PROTO_IPCP, CONF_REQ, 1, asked, hdlc=hdlc), 1.0)
    events += conn.receive_data(control(ppp.PROTO_IPCP, CONF_ACK, ipcp_req[0][1].ident, b"", hdlc=hdlc), 1.0)
    return events


def test_framing_round_trip_and_hdlc_tolerance() -> None:
    packet = bytes(range(40))
    data = ppp.encode_ipv4(packet)
    assert data[:6] == struct.pack(">HHH", 48, 0x5050, 42) and data[6:8] == b"\x00\x21"
    assert ppp.encode(ppp.PROTO_IPV4, packet) == data
    for raw in (data, frame(ppp.PROTO_IPV4, packet), frame(ppp.PROTO_IPV4, packet, hdlc=False)):
        [f], used = ppp.split_frames(memoryview(raw), len(raw))
        assert used == len(raw) and f.protocol == 0x21 and bytes(f.info) == packet
    one_byte_proto = struct.pack(">HHH", 6 + 3, 0x5050, 3) + b"\x21ab"  # a compressed protocol field
    [f], _ = ppp.split_frames(memoryview(one_byte_proto), len(one_byte_proto))
    assert f.protocol == 0x21 and bytes(f.info) == b"ab"


def test_reference_example_bytes() -> None:
    conn = PppConnection(0.0, address=ADDRESS, magic=0x12345678)
    assert conn.start(0.0).hex(" ") == "00 16 50 50 00 10 c0 21 01 01 00 0e 01 04 05 4a 05 06 12 34 56 78"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (struct.pack(">HHH", 10, 0x5051, 4) + b"abcd", "magic"),
        (struct.pack(">HHH", 11, 0x5050, 4) + b"abcd", "disagree"),
        (struct.pack(">HHH", 6, 0x5050, 0), "range"),
        (struct.pack(">HHH", 40006, 0x5050, 40000), "range"),
    ],
)
def test_bad_framing_is_a_protocol_error(raw: bytes, why: str) -> None:
    with pytest.raises(ppp.FramingError, match=why):
        ppp.split_frames(memoryview(raw), len(raw))
    conn = new_conn()
    conn.start(0.0)
    [ev] = conn.receive_data(raw, 1.0)
    assert isinstance(ev, ProtocolError) and conn.phase is Phase.CLOSED
    assert conn.receive_data(b"more", 2.0) == []


@pytest.mark.parametrize("hdlc", [True, False])
def test_negotiation_like_openconnect_then_ipv4(hdlc: bool) -> None:
    conn = new_conn()
    events = bring_up(conn, hdlc=hdlc)
    acks = [w for w in writes(events) if w[1] is not None and w[1].code == CONF_ACK]
    # LCP Ack echoes the client's request byte for byte; so does IPCP's.
    assert [a[0] for a in acks] == [ppp.PROTO_LCP, ppp.PROTO_IPCP]
    assert acks[1][1] is not None and acks[1][1].data == opt(3, ip(ADDRESS))
    assert [e for e in events if isinstance(e, LinkUp)] == [LinkUp(0xFFBC)]
    assert conn.phase is Phase.NETWORK
    packet = b"\x45" + bytes(27)
    assert conn.receive_data(frame(ppp.PROTO_IPV4, packet, hdlc=hdlc), 2.0) == [Data(packet)]
    assert conn.last_data == 2.0
    # Never FF 03 from us.
    assert not any(w[2].startswith(b"\xff\x03") for w in writes(events))


def test_ipcp_naks_address_dns_and_wins_and_rejects_vj() -> None:
    conn = new_conn()
    conn.start(0.0)
    conn.receive_data(control(ppp.PROTO_LCP, CONF_REQ, 1, opt(5, CLIENT_MAGIC)), 0.1)
    conn.receive_data(control(ppp.PROTO_LCP, CONF_ACK, conn.lcp.ident, conn.lcp.sent or b""), 0.1)
    zero = bytes(4)
    vj = opt(2, b"\x00\x2d\x0f\x01")
    asked = opt(3, zero) + opt(129, zero) + opt(130, zero) + opt(131, zero) + opt(132, zero)
    [(proto, rej, _)] = writes(conn.receive_data(control(ppp.PROTO_IPCP, CONF_REQ, 7, vj + asked), 0.2))
    assert proto == ppp.PROTO_IPCP and rej is not None and (rej.code, rej.ident, rej.data) == (CONF_REJ, 7, vj)
    [(_, nak, _)] = writes(conn.receive_data(control(ppp.PROTO_IPCP, CONF_REQ, 8, asked), 0.2))
    expected = (
        opt(3, ip(ADDRESS))
        + opt(129, ip(DNS[0]))
        + opt(130, ip(WINS[0]))
        + opt(131, ip(DNS[1]))
        + opt(132, ip(WINS[1]))
    )
    assert nak is not None and (nak.code, nak.ident, nak.data) == (CONF_NAK, 8, expected)
    [(_, ack, _)] = writes(conn.receive_data(control(ppp.PROTO_IPCP, CONF_REQ, 9, expected), 0.3))
    assert ack is not None and (ack.code, ack.data) == (CONF_ACK, expected)
    # No WINS configured: asking for NBNS is rejected.
    bare = PppConnection(0.0, address=ADDRESS, dns=DNS, magic=1)
    assert bare._judge_ipcp([ppp.Option(130, zero)])[0] == CONF_REJ


def test_lcp_rejects_accm_pfc_acfc_and_authentication() -> None:
    conn = new_conn()
    conn.start(0.0)
    bad = opt(2, bytes(4)) + opt(7, b"") + opt(8, b"") + opt(3, b"\xc0\x23")
    [(_, rej, _)] = writes(conn.receive_data(control(ppp.PROTO_LCP, CONF_REQ, 3, opt(1, b"\x05\x4a") + bad), 0.1))
    assert rej is not None and (rej.code, rej.data) == (CONF_REJ, bad)
    assert not conn.lcp.their_acked


def test_our_request_drops_what_the_client_rejects() -> None:
    conn = new_conn()
    conn.start(0.0)
    [(_, req, _)] = writes(
        conn.receive_data(control(ppp.PROTO_LCP, CONF_REJ, conn.lcp.ident, opt(5, b"\x12\x34\x56\x78")), 0.1)
    )
    assert req is not None and req.code == CONF_REQ and req.data == opt(1, b"\x05\x4a")


def test_echo_terminate_and_unknown_protocols() -> None:
    conn = new_conn()
    bring_up(conn)
    [(_, rep, _)] = writes(conn.receive_data(control(ppp.PROTO_LCP, ECHO_REQ, 9, CLIENT_MAGIC + b"hi"), 3.0))
    assert rep is not None and (rep.code, rep.ident, rep.data) == (ECHO_REP, 9, b"\x12\x34\x56\x78hi")
    assert conn.receive_data(control(ppp.PROTO_LCP, ECHO_REP, 1, CLIENT_MAGIC), 3.0) == [EchoReply()]
    ipv6cp = ppp.packet(CONF_REQ, 1, opt(1, bytes(8)))
    [(proto, prej, _)] = writes(conn.receive_data(frame(0x8057, ipv6cp), 3.0))
    assert proto == ppp.PROTO_LCP and prej is not None and prej.code == PROTO_REJ
    assert prej.data == b"\x80\x57" + ipv6cp
    [(_, crej, _raw)] = writes(conn.receive_data(control(ppp.PROTO_LCP, 42, 5, b"x"), 3.0))
    assert crej is not None and crej.code == 7 and crej.data == ppp.packet(42, 5, b"x")
    events = conn.receive_data(control(ppp.PROTO_LCP, TERM_REQ, 4, b"User request"), 4.0)
    [(_, tack, _)] = writes(events)
    assert tack is not None and (tack.code, tack.ident) == (TERM_ACK, 4)
    assert events[-1] == Terminated("User request", by_peer=True) and conn.phase is Phase.CLOSED


def test_gateway_terminates_with_a_reason() -> None:
    conn = new_conn()
    bring_up(conn)
    [(_, req, _)] = parse_written(conn.send_terminate("Administrative reset"))
    assert req is not None and (req.code, req.data) == (TERM_REQ, b"Administrative reset")
    assert conn.send_terminate("again") == b""
    packet = b"\x45" + bytes(27)
    assert conn.receive_data(frame(ppp.PROTO_IPV4, packet), 1.0) == []  # no more data while ending
    assert conn.receive_data(control(ppp.PROTO_LCP, TERM_ACK, req.ident), 1.0) == [Terminated("", by_peer=False)]


def test_retransmits_then_gives_up_and_echoes_as_keepalive() -> None:
    conn = new_conn(echo_interval=10.0)
    first = conn.start(0.0)
    assert conn.due(1.0) == (b"", None)
    assert conn.due(3.0) == (first, None)  # same request, same identifier
    t = 3.0
    for _ in range(MAX_CONFIGURE - 2):
        t += 3.0
        assert conn.due(t)[0] == first
    data, err = conn.due(t + 3.0)
    assert data == b"" and isinstance(err, ProtocolError) and conn.phase is Phase.CLOSED

    up = new_conn(echo_interval=10.0)
    bring_up(up)
    assert up.due(5.0) == (b"", None)
    data, err = up.due(11.0)
    [(_, echo, _)] = parse_written(data)
    assert err is None and echo is not None and echo.code == ECHO_REQ and echo.data == b"\x12\x34\x56\x78"


def test_byte_by_byte_equals_all_at_once() -> None:
    stream = control(ppp.PROTO_LCP, CONF_REQ, 1, opt(1, b"\x05\x4a") + opt(5, CLIENT_MAGIC)) + control(
        ppp.PROTO_LCP, ECHO_REQ, 2, CLIENT_MAGIC
    )
    whole, split = new_conn(), new_conn()
    whole.start(0.0)
    split.start(0.0)
    a = whole.receive_data(stream, 1.0)
    b: list[Event] = []
    for i in range(len(stream)):
        b += split.receive_data(stream[i : i + 1], 1.0)
    assert a == b and a


# --- fuzzing ---------------------------------------------------------------------------------


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """Well-framed PPP frames with arbitrary control packets, options and protocols."""
    protocol = draw(st.sampled_from([ppp.PROTO_LCP, ppp.PROTO_IPCP, ppp.PROTO_IPV4, 0x8057, 0x80FD, 0x0057, 0x0001]))
    if draw(st.booleans()):
        options = draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=8)), max_size=5))
        data = b"".join(opt(k, v) for k, v in options)
        info = ppp.packet(draw(st.integers(0, 12)), draw(st.integers(0, 255)), data)
    else:
        info = draw(st.binary(max_size=64))
    if not info and not draw(st.booleans()):
        info = b"\x00"
    return frame(protocol, info, hdlc=draw(st.booleans()))


def _check(conn: PppConnection, events: list[Event]) -> None:
    for e in events:
        assert isinstance(e, Data | Write | LinkUp | EchoReply | Terminated | ProtocolError)
        if isinstance(e, Write):
            parse_written(e.data)  # everything we write is well framed


@settings(max_examples=300, deadline=None)
@given(st.lists(frames(), max_size=30), st.lists(st.integers(1, 64), min_size=1, max_size=10), st.booleans())
def test_fuzz_state_machines_with_well_framed_garbage(chunks: list[bytes], cuts: list[int], up: bool) -> None:
    conn = new_conn(echo_interval=5.0)
    if up:
        bring_up(conn)
    else:
        conn.start(0.0)
    stream = b"".join(chunks)
    pos, t, i = 0, 1.0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        _check(conn, conn.receive_data(stream[pos : pos + n], t))
        data, _err = conn.due(t)
        if data:
            parse_written(data)
        pos, t, i = pos + n, t + 0.7, i + 1
    assert conn.phase in Phase


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_fuzz_framer_with_random_bytes(data: bytes, cut: int) -> None:
    conn = new_conn()
    conn.start(0.0)
    for pos in range(0, len(data), cut):
        events = conn.receive_data(data[pos : pos + cut], 1.0)
        _check(conn, events)
        if any(isinstance(e, ProtocolError) for e in events):
            assert conn.phase is Phase.CLOSED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=1500), max_size=8), st.lists(st.integers(1, 3000), min_size=1))
def test_fuzz_packets_survive_any_split(packets: list[bytes], cuts: list[int]) -> None:
    conn = new_conn()
    bring_up(conn)
    stream = b"".join(frame(ppp.PROTO_IPV4, p, hdlc=i % 2 == 0) for i, p in enumerate(packets))
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        got += [e.payload for e in conn.receive_data(stream[pos : pos + n], 2.0) if isinstance(e, Data)]
        pos, i = pos + n, i + 1
    assert got == packets


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"", b"\xff\x03", b"\xff\x03\xff\x03"]),
            st.sampled_from([b"\x00\x21", b"\x21", b"\x00\x57", b"\xc0\x21", b"\x00", b"\xff", b"\xff\x03"]),
            st.binary(max_size=40),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_data_path_agrees_with_the_frame_parser(bodies: list[tuple[bytes, bytes, bytes]]) -> None:
    """The in-place data path's inline checks take exactly the IPv4 frames `ppp.parse_frame` finds."""
    stream = b""
    for hdlc, proto, payload in bodies:
        body = hdlc + proto + payload
        stream += struct.pack(">HHH", 6 + len(body), 0x5050, len(body)) + body
    frames, used = ppp.split_frames(memoryview(stream), len(stream))
    assert used == len(stream)
    expected = [bytes(f.info) for f in frames if f.protocol == ppp.PROTO_IPV4]
    conn = new_conn()
    bring_up(conn)
    buf = bytearray(stream)
    events, used = conn.receive_buffer(buf, len(buf), 2.0)
    if conn.phase is Phase.NETWORK:  # the garbage may have taken the link down: then nothing more flows
        assert used == len(buf)
    got = [bytes(e.payload) for e in events if isinstance(e, Data)]
    assert got == expected[: len(got)]
    data = [e for e in events if isinstance(e, Data)]
    assert all(isinstance(e.payload, memoryview) for e in data)  # read in place, not copied
