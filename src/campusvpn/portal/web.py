"""The plumbing every portal page shares: session, CSRF, language, rendering.

Pages are plain functions `Req -> Response` run in a worker thread (the core is synchronous:
Argon2 and the database block). `page(...)` turns one into a Starlette route and does, once for
all pages: reading the form (with limits), loading or creating the portal session, refusing
POSTs without the session's CSRF token, sending signed-out users to the sign-in page and
non-admins away from the console."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from campusvpn.platform.config_schema import OidcSection, SamlSection, VerificationSection
from campusvpn.portal.i18n import LANGUAGES, Translator, pick_language
from campusvpn.service import portal_sessions
from campusvpn.service.context import Context

COOKIE = "campusvpn-portal"  # the portal session
LANG_COOKIE = "campusvpn-lang"
Auth = Literal["none", "user", "admin"]
log = logging.getLogger("campusvpn.portal")

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "xml"]),
    trim_blocks=True,
    lstrip_blocks=True,
    # {% trans %} blocks: their gettext comes with each page (shared_values), in the page's language.
    extensions=["jinja2.ext.i18n"],
)
_URL = re.compile(r"https?://[^\s<>\"'、。）)]+")


def linkify(text: object) -> Markup:
    """Plain text with its web addresses as links (policy reasons name the portal and training sites).
    Markup.join and Markup.format escape every piece that is not our own tag."""
    parts: list[str | Markup] = []
    last, raw = 0, str(text)
    for m in _URL.finditer(raw):
        url = m.group(0).rstrip(".,;:")
        parts += [raw[last : m.start()], Markup('<a href="{0}">{0}</a>').format(url)]
        last = m.start() + len(url)
    parts.append(raw[last:])
    return Markup("").join(parts)


_CODE = re.compile(r"`([^`]+)`")


def code_marks(text: object) -> Markup:
    """A catalogue text whose `backticked` parts are things to type, shown as <code> (the rest escaped)."""
    parts: list[str | Markup] = []
    last, raw = 0, str(text)
    for m in _CODE.finditer(raw):
        parts += [raw[last : m.start()], Markup("<code>{0}</code>").format(m.group(1))]
        last = m.end()
    parts.append(raw[last:])
    return Markup("").join(parts)


TEMPLATES.filters["linkify"] = linkify
TEMPLATES.filters["code_marks"] = code_marks


def label_in(section: OidcSection | SamlSection | VerificationSection, lang: str) -> str:
    """An identity provider's name as a page in `lang` shows it."""
    return section.label_ja if lang == "ja" and section.label_ja else section.label


def translator(ctx: Context, lang: str) -> Translator:
    return Translator(lang, ctx.policy.zone, (ctx.config.service.helpdesk, ctx.config.portal.helpdesk_ja))


def shared_values(ctx: Context, t: Translator) -> dict[str, Any]:
    """What base.html needs on every page, signed in or not, error pages included."""
    return {
        "t": t,
        "lang": t.lang,
        "service": ctx.config.service.name,
        "brand": ctx.config.portal,
        "helpdesk": t.helpdesk,
        "gettext": t.gettext,
        "_": t.gettext,
        "ngettext": t.ngettext,
        "pgettext": t.pgettext,
        "npgettext": t.npgettext,
    }


def brand_css(ctx: Context) -> str:
    """The university's colours as CSS variables (validated #rrggbb, so nothing else can get in)."""
    p = ctx.config.portal
    return f":root {{ --brand: {p.brand_colour}; --accent: {p.accent_colour}; }}\n"


@dataclass
class Req:
    request: Request
    ctx: Context
    session: portal_sessions.Current
    t: Translator
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    set_cookies: list[tuple[str, str, int | None]] = field(default_factory=list)

    @property
    def source(self) -> str | None:
        return self.request.client.host if self.request.client else None

    @property
    def user_agent(self) -> str:
        return self.request.headers.get("user-agent", "")[:200]

    @property
    def username(self) -> str:
        assert self.session.username is not None
        return self.session.username

    @property
    def is_admin(self) -> bool:
        # Listed in the configuration and the account active at this request (suspending an
        # administrator takes the console away at once, whatever session they hold).
        return self.session.username in self.ctx.config.portal.admins and self.session.account_active

    def field(self, name: str, limit: int = 500) -> str:
        return self.form.get(name, "")[:limit].strip()

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        html = TEMPLATES.get_template(template).render(
            **shared_values(self.ctx, self.t),
            csrf=self.session.csrf,
            me=self.session.username if self.session.signed_in else None,
            is_admin=self.is_admin and self.session.signed_in,
            path=self.request.url.path,
            other_language=self._other_language_link(),
            idp_label=label_in(self.ctx.config.oidc, self.t.lang) if self.ctx.oidc is not None else None,
            saml_label=label_in(self.ctx.config.saml, self.t.lang) if self.ctx.saml is not None else None,
            verify_offered=self.ctx.verification is not None,  # "Forgot your password or lost your phone?"
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def _other_language_link(self) -> str:
        """This page in the other language: the query (next=, q=, ...) is kept, only lang changes."""
        other = "en" if self.t.lang == "ja" else "ja"
        kept = [(k, v) for k, v in self.request.query_params.multi_items() if k != "lang"]
        return "?" + urlencode([*kept, ("lang", other)])

    def redirect(self, url: str) -> Response:
        return RedirectResponse(url, status_code=303)

    def error(self, message: str, status: int) -> Response:
        return self.render("error.html", status=status, message=message)


def page(
    path: str, methods: tuple[str, ...] = ("GET",), *, auth: Auth = "user", csrf: bool = True
) -> Callable[[Callable[[Req], Response]], Route]:
    """`csrf=False` only for a POST another site's page makes by design (the SAML answer), whose
    own check binds it to this browser's session."""

    def wrap(fn: Callable[[Req], Response]) -> Route:
        async def endpoint(request: Request) -> Response:
            ctx: Context = request.app.state.ctx
            form: dict[str, str] = {}
            files: dict[str, bytes] = {}
            if request.method == "POST" and request.headers.get("content-type", "").startswith("application/json"):
                raw = await request.body()
                files["json"] = raw[: 64 * 1024]
            elif request.method == "POST":
                try:
                    parsed = await request.form(max_files=2, max_fields=60, max_part_size=ctx.config.portal.max_upload)
                except MultiPartException as exc:
                    return HTMLResponse(f"Bad form: {exc}", status_code=400)
                for k, v in parsed.multi_items():
                    if isinstance(v, UploadFile):
                        files[k] = await v.read(ctx.config.portal.max_upload + 1)
                    elif k not in form:
                        form[k] = v
            return await run_in_threadpool(_run, fn, request, ctx, form, files, auth, csrf)

        return Route(path, endpoint, methods=list(methods), name=fn.__name__)

    return wrap


def _run(
    fn: Callable[[Req], Response],
    request: Request,
    ctx: Context,
    form: dict[str, str],
    files: dict[str, bytes],
    auth: Auth,
    csrf: bool = True,
) -> Response:
    cookie = request.cookies.get(COOKIE)
    source, agent = (request.client.host if request.client else None), request.headers.get("user-agent")
    cur = portal_sessions.load(ctx, cookie)
    ended = cur is None and cookie is not None  # the browser had a session that expired or was ended
    if cur is None:
        # No stored session: a pre-session, stored only when a form is submitted with its token.
        cur = portal_sessions.pre_session(ctx, cookie)
    lang = pick_language(
        request.query_params.get("lang") or request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
        ctx.config.portal.default_language,
    )
    req = Req(request, ctx, cur, translator(ctx, lang), form, files)
    if request.query_params.get("lang") in LANGUAGES:
        req.set_cookies.append((LANG_COOKIE, lang, 365 * 86400))
    sent_csrf = form.get("csrf") or request.headers.get("x-csrf-token")  # forms, or the passkey script
    if request.method != "POST" or not csrf:
        csrf_ok = True
    elif cur.id is not None:
        # Pages served before the session was stored (another tab, the passkey script) carry the
        # pre-session's token: still good, as it is bound to this cookie until the next rotation.
        csrf_ok = cur.csrf_ok(sent_csrf) or portal_sessions.pre_session_csrf_ok(ctx, cur, sent_csrf)
    else:
        csrf_ok = portal_sessions.pre_session_csrf_ok(ctx, cur, sent_csrf)
        if csrf_ok:  # the first form this browser submits: from now on its session is stored
            portal_sessions.store(ctx, cur, source, agent)
    if not csrf_ok and ended and sent_csrf and not portal_sessions.is_pre_session_token(ctx, sent_csrf):
        # A form from a page shown before the sign-in ended (idle timeout): say so, not "not from this site".
        response = req.error(req.t("err.session_expired"), 401)
    elif not csrf_ok:
        response = req.error(req.t("err.csrf"), 403)
    elif auth != "none" and not cur.signed_in:
        target = request.url.path if request.method == "GET" else "/"
        response = req.redirect("/signin?next=" + quote(target, safe="/"))
    elif auth == "admin" and not req.is_admin:
        response = req.error(req.t("err.not_admin"), 403)
    elif auth == "admin" and cur.second_factor_at is None:
        # Admins act only after a second factor in this sign-in (a trusted device is not enough).
        response = req.redirect("/stepup?next=" + quote(request.url.path, safe="/"))
    else:
        response = fn(req)
    if getattr(response, "session_untouched", False):
        return response  # answered before this browser's cookie could be read: nothing to save or set
    if not getattr(response, "session_ended", False):
        portal_sessions.save(ctx, cur, rotate=getattr(response, "rotate_session", False))
        if cur.token != cookie or cur.rotated:
            response.set_cookie(COOKIE, cur.token, path="/", secure=True, httponly=True, samesite="lax")
    else:
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    for name, value, max_age in req.set_cookies:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")
    return response


def take_info(req: Req) -> str | None:
    """The one-time notice left for the next page ("your changes were saved"), removed once read."""
    f = dict(req.session.flash or {})
    info = f.pop("info", None)
    req.session.flash = f or None
    return str(info) if info else None


def rotated(response: Response) -> Response:
    """Mark a response whose request raised the session's privilege: it gets a new token."""
    response.rotate_session = True  # type: ignore[attr-defined]
    return response


def ended(ctx: Context, req: Req, response: Response) -> Response:
    portal_sessions.end(ctx, req.session)
    response.session_ended = True  # type: ignore[attr-defined]
    return response
