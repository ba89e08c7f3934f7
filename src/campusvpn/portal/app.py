"""The portal as one ASGI application: member pages, admin console, JSON API, static files."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campusvpn.core.sso_handoff import FORTINET_LISTENER_ORIGIN, LISTENER_ORIGIN
from campusvpn.platform.logo import Logo, read_logo
from campusvpn.portal import (
    account_pages,
    admin,
    mfa_pages,
    oidc_pages,
    passkeys,
    recovery_codes_page,
    saml_pages,
    security_pages,
    signin_pages,
    sso_pages,
    verify_pages,
    vpn_pages,
)
from campusvpn.portal.api import create_api
from campusvpn.portal.i18n import pick_language
from campusvpn.portal.sso_pages import SSO_COOKIE
from campusvpn.portal.web import LANG_COOKIE, TEMPLATES, brand_css, shared_values, translator
from campusvpn.service.context import Context
from campusvpn.service.errors import Unavailable

log = logging.getLogger("campusvpn.portal")

CSP = b"content-security-policy"
SECURITY_HEADERS = [
    # Scripts and styles only from us; no framing (clickjacking); no referrer leaks of paths.
    (
        CSP,
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


SSO_SECURITY_HEADERS = [
    (
        k,
        v.replace(b"form-action 'self'", f"form-action 'self' {LISTENER_ORIGIN} {FORTINET_LISTENER_ORIGIN}".encode())
        if k == CSP
        else v,
    )
    for k, v in SECURITY_HEADERS
]


class SecurityHeaders:
    """Adds the headers to every response, pages, API and errors alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        cookies = b"".join(v for k, v in scope.get("headers", []) if k == b"cookie")
        # A browser signing in for a VPN client posts forms whose answer sends it on to the client's
        # own listener (external-browser single sign-on): the policy must let that redirect through.
        headers = SSO_SECURITY_HEADERS if SSO_COOKIE.encode() + b"=" in cookies else SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in headers if k not in names]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


# An SVG is a document that could carry script: served as an image, it may run nothing and load nothing.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def logo_response(logo: Logo, if_none_match: str | None) -> Response:
    """The logo at its stable URL (/logo), cached by browsers for a day and checked by its digest."""
    etag = '"' + hashlib.sha256(logo.data).hexdigest()[:32] + '"'
    headers = {"cache-control": "public, max-age=86400", "etag": etag}
    if logo.media_type == "image/svg+xml":
        headers["content-security-policy"] = SVG_CSP
    if if_none_match == etag:
        return Response(status_code=304, headers=headers)
    return Response(logo.data, media_type=logo.media_type, headers=headers)


def _error_page(request: Request, status: int, key: str) -> Response:
    ctx: Context = request.app.state.ctx
    lang = pick_language(
        request.query_params.get("lang") or request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
        ctx.config.portal.default_language,
    )
    t = translator(ctx, lang)
    html = TEMPLATES.get_template("error.html").render(
        **shared_values(ctx, t),
        csrf="",
        me=None,
        is_admin=False,
        path="",
        other_language="?lang=" + ("en" if t.lang == "ja" else "ja"),
        message=t(key, helpdesk=t.helpdesk) if key == "err.server" else t(key),
    )
    return HTMLResponse(html, status_code=status)


def create_app(ctx: Context) -> ASGIApp:
    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if status == 405:
            return HTMLResponse("Method not allowed", status_code=405)
        return _error_page(request, 404, "err.not_found")

    async def unavailable(request: Request, exc: Exception) -> Response:
        # The cause is already logged where storage failed (service.context).
        response = _error_page(request, 503, "err.unavailable")
        response.headers["retry-after"] = "120"
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        # Logged with its traceback for the operators; the user sees a plain sentence.
        log.error("portal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_page(request, 500, "err.server")

    async def brand(request: Request) -> Response:
        return Response(brand_css(ctx), media_type="text/css")

    logo = read_logo(ctx.config.path(ctx.config.portal.logo)) if ctx.config.portal.logo else None

    async def logo_file(request: Request) -> Response:
        if logo is None:
            return await not_found(request, HTTPException(404))
        return logo_response(logo, request.headers.get("if-none-match"))

    app = Starlette(
        routes=[
            Route("/brand.css", brand),
            Route("/logo", logo_file),
            *signin_pages.ROUTES,
            *oidc_pages.ROUTES,
            *verify_pages.ROUTES,
            *saml_pages.ROUTES,
            *mfa_pages.ROUTES,
            *vpn_pages.ROUTES,
            *security_pages.ROUTES,
            *recovery_codes_page.ROUTES,
            *account_pages.ROUTES,
            *admin.ROUTES,
            *passkeys.ROUTES,
            *sso_pages.ROUTES,
            Mount("/api", app=create_api(ctx)),
            Mount("/static", app=StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
        ],
        exception_handlers={HTTPException: not_found, Unavailable: unavailable, 500: server_error},
    )
    app.state.ctx = ctx
    return SecurityHeaders(app)
