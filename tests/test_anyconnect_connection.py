"""The sans-IO CSTP connection, driven byte by byte without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campusvpn.anyconnect import cstp
from campusvpn.anyconnect.connection import (
    ConnectionClosed,
    CstpConnection,
    Data,
    Disconnect,
    DpdRequest,
    DpdResponse,
    Event,
    Keepalive,
    ProtocolError,
    State,
)
from campusvpn.anyconnect.cstp import FrameType

STREAM = [
    cstp.encode(FrameType.DATA, b"x" * 1400),
    cstp.encode(FrameType.DPD_REQ, b"probe"),
    cstp.encode(FrameType.KEEPALIVE),
    cstp.encode(FrameType.DPD_RESP),
    cstp.encode(FrameType.DATA, b"y" * 60),
    cstp.disconnect("bye", cstp.BYE_USER),
]


def _feed(conn: CstpConnection, data: bytes, size: int, now: float = 1.0) -> list[Event]:
    events: list[Event] = []
    for i in range(0, len(data), size):
        events += conn.receive_data(data[i : i + size], now)
    return events


@pytest.mark.parametrize("size", [1, 3, 7, 8, 9, 100, 100_000])
def test_every_frame_kind_comes_out_as_its_event_however_the_bytes_are_split(size: int) -> None:
    conn = CstpConnection(now=0.0)
    events = _feed(conn, b"".join(STREAM), size)
    assert events == [
        Data(b"x" * 1400),
        DpdRequest(cstp.encode(FrameType.DPD_RESP, b"probe")),  # the probe's own payload goes back
        Keepalive(),
        DpdResponse(),
        Data(b"y" * 60),
        Disconnect(cstp.BYE_USER, "bye", signed_off=True),
    ]
    assert conn.state is State.CLOSED


def test_a_cisco_reconnect_bye_keeps_the_session() -> None:
    conn = CstpConnection(now=0.0)
    [event] = conn.receive_data(cstp.disconnect("reconnecting", cstp.BYE_RECONNECT), 1.0)
    assert event == Disconnect(cstp.BYE_RECONNECT, "reconnecting", signed_off=False)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "magic"),
        (b"STF\x01\x00\x00\x00\x01", "byte 7"),
        (b"STF\x01\xea\x60\x00\x00", "limit"),
        (cstp.encode(0x42, b"?"), "unexpected frame type 66"),
    ],
)
def test_broken_framing_is_a_protocol_error_that_closes_the_connection(bad: bytes, why: str) -> None:
    conn = CstpConnection(now=0.0)
    [event] = conn.receive_data(bad + cstp.encode(FrameType.DATA, b"after"), 1.0)
    assert isinstance(event, ProtocolError) and why in event.reason
    assert conn.state is State.CLOSED
    with pytest.raises(ConnectionClosed):
        conn.receive_data(b"more", 2.0)


def test_the_clock_is_the_callers_and_only_data_counts_as_activity() -> None:
    conn = CstpConnection(now=10.0)
    conn.receive_data(cstp.encode(FrameType.KEEPALIVE), 20.0)
    assert (conn.last_received, conn.last_data) == (20.0, 10.0)
    assert conn.silent_for(50.0) == 30.0
    conn.receive_data(cstp.encode(FrameType.DATA, b"p"), 30.0)
    assert conn.last_data == 30.0


def test_sends_are_single_frames_and_nothing_goes_after_the_disconnect() -> None:
    conn = CstpConnection(now=0.0)
    assert conn.send_packet(b"pkt") == cstp.encode(FrameType.DATA, b"pkt")
    assert conn.send_keepalive() == cstp.encode(FrameType.KEEPALIVE)
    assert conn.send_dpd_request() == cstp.encode(FrameType.DPD_REQ)
    assert conn.send_disconnect("Idle Timeout") == cstp.disconnect("Idle Timeout")
    assert conn.state is State.CLOSED
    with pytest.raises(ConnectionClosed):
        conn.send_packet(b"late")


def test_the_data_path_finds_frames_in_place_and_leaves_the_unfinished_one() -> None:
    conn = CstpConnection(now=0.0)
    buf = bytearray(cstp.encode(FrameType.DATA, b"abc") + cstp.encode(FrameType.DATA, b"defgh")[:5])
    events, used = conn.receive_buffer(buf, len(buf), 1.0)
    assert used == 11 and len(events) == 1
    payload = events[0].payload  # type: ignore[union-attr]
    assert isinstance(payload, memoryview) and bytes(payload) == b"abc"


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=600))
def test_any_bytes_give_events_or_a_clean_protocol_error(data: bytes, size: int) -> None:
    conn = CstpConnection(now=0.0)
    for i in range(0, len(data), size):
        if conn.state is State.CLOSED:
            break
        for ev in conn.receive_data(data[i : i + size], 1.0):
            if isinstance(ev, Data):
                assert len(ev.payload) <= cstp.MAX_PAYLOAD
            if isinstance(ev, (Disconnect, ProtocolError)):
                assert conn.state is State.CLOSED


@given(st.lists(st.tuples(st.sampled_from([0, 3, 4, 7]), st.binary(max_size=200)), max_size=30), st.integers(1, 50))
def test_valid_streams_round_trip_under_any_chunking(frames: list[tuple[int, bytes]], size: int) -> None:
    stream = b"".join(cstp.encode(t, p if t in (0, 3) else b"") for t, p in frames)
    got = _feed(CstpConnection(now=0.0), stream, size)
    assert [bytes(e.payload) for e in got if isinstance(e, Data)] == [p for t, p in frames if t == 0]
    assert len(got) == len(frames)
