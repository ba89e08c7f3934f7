"""The gateway's hand-over of browser requests to the portal (one port for both)."""

from __future__ import annotations

import asyncio

import h11
from starlette.types import Message, Receive, Scope, Send

from campusvpn.anyconnect.site import is_vpn_request
from campusvpn.frontdoor.asgi import call


def test_vpn_clients_and_browsers_are_told_apart() -> None:
    assert is_vpn_request("CONNECT", "/CSCOSSLC/tunnel", {})
    assert is_vpn_request("POST", "/", {"x-aggregate-auth": "1"})
    assert is_vpn_request("GET", "/", {"user-agent": "Open AnyConnect VPN Agent v9.01"})
    assert is_vpn_request("POST", "/d/abc", {})
    assert not is_vpn_request("GET", "/", {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"})
    assert not is_vpn_request("POST", "/signin", {"user-agent": "Mozilla/5.0"})


def _request(method: bytes = b"GET", target: bytes = b"/x?a=1") -> tuple[h11.Connection, h11.Request]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(method + b" " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    ev = conn.next_event()
    assert isinstance(ev, h11.Request)
    conn.next_event()
    return conn, ev


def _parse(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "t")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    resp = client.next_event()
    assert isinstance(resp, h11.Response)
    body = b""
    while True:
        ev = client.next_event()
        if isinstance(ev, h11.Data):
            body += ev.data
        else:
            break
    return resp.status_code, dict(resp.headers), body


def test_streamed_answer_that_watches_for_disconnect_arrives_whole() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["path"] == "/x" and scope["query_string"] == b"a=1"
        await receive()  # the request body
        watcher = asyncio.ensure_future(receive())  # like Starlette's FileResponse does
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await asyncio.sleep(0)
            assert not watcher.done(), "the client must not seem gone while the answer is written"
            await send({"type": "http.response.body", "body": part, "more_body": part != b"three"})
        msg: Message = await watcher
        assert msg["type"] == "http.disconnect"

    conn, req = _request()
    out = asyncio.run(call(app, conn, req, b"", ("192.0.2.1", 5000), ("192.0.2.2", 443)))
    status, headers, body = _parse(out)
    assert status == 200 and body == b"one two three" and headers[b"content-length"] == b"13"


def test_a_failing_app_gives_a_plain_500_not_a_traceback() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    conn, req = _request()
    status, _, body = _parse(asyncio.run(call(app, conn, req, b"", None, None)))
    assert status == 500 and b"boom" not in body and b"Traceback" not in body
