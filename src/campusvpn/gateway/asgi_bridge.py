"""Hand one HTTP request, already parsed by h11, to an ASGI application and frame its answer.

The gateway owns the TLS port; browsers and VPN clients arrive on the same connections. VPN
requests stay on the gateway's own path; everything else (the portal) goes through here. The
portal's answers are small pages, so the response is gathered whole and sent with a length."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from urllib.parse import unquote

import h11
from starlette.types import ASGIApp, Message

VPN_USER_AGENTS = ("anyconnect", "openconnect", "cisco", "secure client")
log = logging.getLogger("campusvpn.gateway")


def is_vpn_request(method: str, target: str, headers: Mapping[str, str]) -> bool:
    """AnyConnect-protocol clients say so in their headers; browsers never send these."""
    if method == "CONNECT" or "x-aggregate-auth" in headers or "x-transcend-version" in headers:
        return True
    if target.startswith("/d/"):
        return True  # the trusted-device URL given to VPN clients
    ua = headers.get("user-agent", "").lower()
    return any(word in ua for word in VPN_USER_AGENTS)


async def call(
    app: ASGIApp,
    conn: h11.Connection,
    request: h11.Request,
    body: bytes,
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
) -> bytes:
    """Run `app` for one request and return the bytes h11 frames for its response."""
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": request.http_version.decode("ascii", "replace"),
        "method": request.method.decode("ascii", "replace"),
        "scheme": "https",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers],
        "client": client,
        "server": server,
        "state": {},
    }
    delivered = False
    finished = asyncio.Event()
    start: Message | None = None
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Apps that watch for the client leaving must not see it go while they answer.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("portal application failed on %s %s", scope["method"], path)
        start = None
    finally:
        finished.set()
    if start is None:
        start = {"status": 500, "headers": [(b"content-type", b"text/plain; charset=utf-8")]}
        chunks = [b"The portal had a problem; nothing was changed. Try again later.\n"]
    payload = b"".join(chunks)
    headers = [
        (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"transfer-encoding")
    ]
    headers.append((b"content-length", str(len(payload)).encode()))
    out = conn.send(h11.Response(status_code=int(start["status"]), headers=headers)) or b""
    if payload and request.method != b"HEAD":
        out += conn.send(h11.Data(data=payload)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    return out
