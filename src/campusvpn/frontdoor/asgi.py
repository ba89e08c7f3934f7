"""An ASGI application (the portal) as a site of the front door.

Browsers and VPN clients arrive on the same port; the requests no VPN protocol claims come here,
already parsed by h11. The portal's answers are small pages, so each response is gathered whole
and sent with a length."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote

import h11
from starlette.types import ASGIApp, Message

from campusvpn.frontdoor.http import Answer, Peer, Request

log = logging.getLogger("campusvpn.frontdoor")


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


class AsgiSite:
    """The default site: every request no protocol claims goes to the application."""

    too_large = "The upload is too large."

    def __init__(self, app: ASGIApp, max_upload: int) -> None:
        self.app = app
        self.max_upload = max_upload

    def claims(self, request: Request) -> bool:
        return True

    def body_limit(self, request: Request) -> int:
        return self.max_upload + 64 * 1024  # room for the multipart framing

    async def holds_session(self, request: Request) -> bool:
        return False  # browsers use the open share; the reserve is for VPN clients' tunnels

    async def respond(self, request: Request, body: bytes, conn: h11.Connection, peer: Peer) -> Answer:
        return Answer(await call(self.app, conn, request.raw, body, peer.address, peer.local))
