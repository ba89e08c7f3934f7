"""The front door's request reading (`frontdoor.server.RequestReading` over h11, `Request.of`, `FrontDoor.site_for`).

The sites are the real ones, built by `app.serve.build` on a throw-away configuration with two VPN
profiles and the portal on. The input is a client's byte stream, fed in chunks; requests are
answered (a small 200) and read again while the connection allows, as the front door does.

Contract: h11's RemoteProtocolError is the only complaint and ends the reading; every request
goes to exactly one site (Fortinet for `/remote/...`, AnyConnect for CONNECT and VPN clients'
headers, else the portal); a body is never over the site's limit and is exactly the announced
length; a body announced over the limit is refused before it is read.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import atheris
from fuzzlib import Broken, chunks, main, require

INSTRUMENT = ["campusvpn.frontdoor", "campusvpn.anyconnect.site", "campusvpn.fortinet.site", "h11"]
with atheris.instrument_imports(include=INSTRUMENT):
    import h11

    from campusvpn.anyconnect.site import AnyConnectSite, is_vpn_request
    from campusvpn.app.serve import build
    from campusvpn.cli.setup import write_self_signed
    from campusvpn.fortinet.site import FortinetSite
    from campusvpn.frontdoor.http import Request, cookie, plain
    from campusvpn.frontdoor.server import MAX_HEAD, FrontDoor, RequestReading, Step
    from campusvpn.platform.clock import FixedClock
    from campusvpn.platform.config import parse_config
    from campusvpn.platform.secretbox import generate_key_file
    from campusvpn.service.context import open_context

MAX_REQUESTS = 16

_front: FrontDoor | None = None


def front() -> FrontDoor:
    global _front
    if _front is None:
        home = Path(tempfile.mkdtemp(prefix="campusvpn-fuzz-"))
        generate_key_file(home / "secret.keys")
        text = (
            "[passwords]\nargon2_time_cost = 1\nargon2_memory_kib = 8192\n"
            '[[vpn.profiles]]\nname = "staff"\n\n[[vpn.profiles]]\nname = "students"\n'
        )
        ctx = open_context(parse_config(text, home / "campusvpn.toml"), FixedClock(datetime(2026, 10, 1, tzinfo=UTC)))
        write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
        _front = build(ctx, tun_fd=None, node="fuzz").front
    return _front


def expected_site(door: FrontDoor, r: Request) -> Any:
    fortinet, anyconnect = (next(s for s in door.sites if isinstance(s, t)) for t in (FortinetSite, AnyConnectSite))
    if r.path.startswith("/remote/"):
        return fortinet
    if fortinet.claims(r):
        return fortinet
    if is_vpn_request(r.method, r.target, r.headers):
        return anyconnect
    return door.default


def check(data: bytes) -> None:
    door = front()
    _size, parts = chunks(data)
    pieces = iter(parts)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    for _ in range(MAX_REQUESTS):
        reading = RequestReading(conn, lambda r: door.site_for(r).body_limit(r))
        for _step in range(len(data) + 64):  # each step consumes input or ends: a bound, not a guess
            step = reading.advance()
            if step is Step.NEED_DATA:
                conn.receive_data(next(pieces, b""))  # b"": the client closed its side
            elif step is Step.HEAD:
                require(reading.request is not None and reading.expected >= 0, "a head without a request")
            else:
                break
        else:
            raise Broken("request reading did not finish")
        request, body = reading.result()
        require(reading.done, "result before the end")
        if request is None:
            require(body is None, "a body without a request")
            return
        site = door.site_for(request)
        require(site is expected_site(door, request), f"{request.method} {request.target!r} went to {site!r}")
        require(request.path == request.target.split("?")[0], "path")
        require(all(k == k.lower() for k in request.headers), "a header name not in lower case")
        limit = site.body_limit(request)
        length = request.headers.get("content-length")
        if body is None:
            require(reading.too_big, "a body dropped though not too big")
        else:
            require(len(body) <= limit, f"a body of {len(body)} bytes over the limit {limit}")
            if length is not None and "transfer-encoding" not in request.headers:
                require(len(body) == int(length), f"a body of {len(body)} bytes, announced {length}")
        if length is not None and length.isdigit() and int(length) > limit:
            require(body is None and len(reading.body) == 0, "a body over the announced limit was read")
        token = cookie(request.headers.get("cookie", ""), "webvpn")
        require(token is None or (token and ";" not in token), "a cookie value with its separator")
        # Answer as the front door does, then read the next request on the same connection.
        data_out = plain(conn, 200, "ok")
        require(data_out or conn.our_state is h11.ERROR or conn.our_state is h11.MUST_CLOSE, "no answer")
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE or not data_out:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


if __name__ == "__main__":
    main(check)
