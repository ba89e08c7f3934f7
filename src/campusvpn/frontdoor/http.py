"""HTTP/1.1 on the front door: the request a site sees, what it may answer, and the plain answers.

A *site* is what answers requests: a protocol package (AnyConnect's XML dialogue and CONNECT; later
Fortinet's `/remote/...`) or an ASGI application (the portal). The front door asks each site in
turn whether it claims a request; the default site takes the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import h11


@dataclass
class Peer:
    """One client connection as the sites see it; `state` keeps a site's per-connection state."""

    source: str | None
    address: tuple[str, int] | None
    local: tuple[str, int] | None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    raw: h11.Request

    @classmethod
    def of(cls, raw: h11.Request) -> Request:
        return cls(
            raw.method.decode("ascii", "replace"),
            raw.target.decode("ascii", "replace"),
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw.headers},
            raw,
        )

    @property
    def path(self) -> str:
        return self.target.split("?")[0]


class TunnelStart(Protocol):
    def __call__(self, transport: Any, leftover: bytes) -> Awaitable[None]: ...


@dataclass(frozen=True)
class Upgrade:
    """The answer switches the connection to a tunnel: write `response`, then hand the stream over."""

    response: bytes
    run: TunnelStart


@dataclass(frozen=True)
class Answer:
    data: bytes
    close: bool = False  # the site wants the connection closed after this answer


class Site(Protocol):
    too_large: str  # the answer to a body over the limit

    def claims(self, request: Request) -> bool: ...

    def body_limit(self, request: Request) -> int: ...

    async def holds_session(self, request: Request) -> bool:
        """Whether the request carries a live session of this site (it may use the reserved slots)."""
        ...

    async def respond(self, request: Request, body: bytes, conn: h11.Connection, peer: Peer) -> Answer | Upgrade: ...


def respond_with(conn: h11.Connection, status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A whole response framed by h11 (empty if h11 says the connection cannot send one now)."""
    try:
        return (
            (conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            + (conn.send(h11.Data(data=body)) or b"")
            + (conn.send(h11.EndOfMessage()) or b"")
        )
    except h11.LocalProtocolError:
        return b""


def plain(conn: h11.Connection, status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    if status >= 400:
        headers.append(("Connection", "close"))
    return respond_with(conn, status, headers, body)


def cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name and v:
            return v
    return None
