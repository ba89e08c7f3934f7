"""The front door's request reading without sockets (`frontdoor.server.RequestReading`)."""

from __future__ import annotations

import h11

from campusvpn.frontdoor.server import MAX_HEAD, RequestReading, Step


def reading(limit: int = 10) -> RequestReading:
    return RequestReading(h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD), lambda _r: limit)


def test_head_then_body_byte_by_byte() -> None:
    r = reading()
    assert r.advance() is Step.NEED_DATA
    data = b"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
    steps = []
    for i in range(len(data)):
        r.conn.receive_data(data[i : i + 1])
        while (step := r.advance()) is not Step.NEED_DATA:
            steps.append(step)
            if step is Step.DONE:
                break
    assert steps == [Step.HEAD, Step.DONE] and r.expected == 4
    request, body = r.result()
    assert request is not None and request.path == "/x" and request.headers["host"] == "a" and body == b"body"


def test_an_announced_body_over_the_limit_is_refused_unread() -> None:
    r = reading(limit=3)
    r.conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
    assert r.advance() is Step.DONE
    request, body = r.result()
    assert request is not None and body is None and r.body == bytearray()


def test_a_chunked_body_over_the_limit_is_dropped() -> None:
    r = reading(limit=3)
    r.conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n")
    assert r.advance() is Step.HEAD and r.expected == 0  # no Content-Length: counts as 0
    assert r.advance() is Step.DONE
    request, body = r.result()
    assert request is not None and body is None


def test_broken_http_and_a_closed_connection_give_nothing() -> None:
    r = reading()
    r.conn.receive_data(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert r.advance() is Step.DONE and r.error and r.result() == (None, None)
    r = reading()
    r.conn.receive_data(b"")
    assert r.advance() is Step.DONE and r.error is None and r.result() == (None, None)
