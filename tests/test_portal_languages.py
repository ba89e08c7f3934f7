"""Every portal page in Japanese and in English: no catalogue key missing (a page that names one
fails to render), no English sentence on a Japanese page, no Japanese on an English one.

How English is told apart on a Japanese page: the visible text (and alt, title, aria-label,
placeholder) outside <code>/<pre> and outside elements marked with another lang, with web
addresses, e-mail addresses, times and the allowed names (products, protocols, the service's own
name, what users type literally) taken out; whatever Latin word is left is English the page should
not show. A word list instead of a sentence guess: a one-word button ("Delete") is caught too."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tests.conftest import add_user, make_config
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, running_provider
from tests.portal_pages import every_identity_page, every_page
from tests.saml_idp import running_idp
from tests.test_portal import USER, pctx

from campusvpn.platform.clock import FixedClock
from campusvpn.portal import i18n
from campusvpn.service.context import Context, open_context

__all__ = ["pctx"]

# Names said as they are in Japanese IT pages, and what people type or see literally.
ALLOWED_PHRASES = [
    "Cisco Secure Client",
    "Microsoft Authenticator",
    "Google Authenticator",
    "FortiClient VPN",
    "Remote Gateway",
    "Customize port",
    "Authorization: Bearer",
    "username,name,role,email,from,until",
    "username,completed_on",
    "SSL-VPN",
    "SHA-256",
    "Campus VPN",
    "sudo apt install openconnect",
    "App Store",
    "Google Play",
]
ALLOWED_WORDS = {
    "vpn",
    "mfa",
    "anyconnect",
    "forticlient",
    "fortigate",
    "openconnect",
    "linux",
    "macos",
    "windows",
    "ios",
    "android",
    "totp",
    "sms",
    "qr",
    "pin",
    "api",
    "openapi",
    "csv",
    "jst",
    "utc",
    "id",
    "it",
    "kib",
    "call",
    "chrome",
    "firefox",
    "edge",
    "safari",
    "iphone",
    "fy",
    "ip",
    "url",
    "e",
    "mail",
    "ipad",
    "homebrew",
    "finder",
    "debian",
    "ubuntu",
    "fedora",
}
_SKIP = {"script", "style", "code", "pre", "kbd", "textarea", "datalist", "option"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e]")


class _Text(HTMLParser):
    """Visible text of a page in its own language: (text, where) pairs."""

    def __init__(self, page_lang: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []  # (tag, hidden-from-this-check)
        self.page_lang = page_lang
        self.out: list[str] = []

    def _hidden(self) -> bool:
        return any(h for _, h in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        other_lang = a.get("lang") not in (None, self.page_lang) and tag != "html"
        hidden = tag in _SKIP or other_lang or ("hidden" in a and tag != "button") or a.get("type") == "hidden"
        if not hidden and not self._hidden():
            for k in ("alt", "title", "aria-label", "placeholder", "data-done"):
                if a.get(k):
                    self.out.append(str(a[k]))
        if tag not in _VOID:
            self.stack.append((tag, hidden))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._hidden() and data.strip():
            self.out.append(data.strip())


def visible_text(html: str, lang: str) -> list[str]:
    p = _Text(lang)
    p.feed(html)
    return p.out


def english_left(text: str, data_words: set[str]) -> list[str]:
    for phrase in ALLOWED_PHRASES:
        text = text.replace(phrase, " ")
    # Addresses, host names, dates and times, and identifiers (hex with digits) are data, not language.
    text = re.sub(
        r"https?://\S+|otpauth://\S+|[\w.+-]+@[\w.-]+|[\w-]+(\.[\w-]+)*\.(jp|com|org|net|edu|test)\b"
        r"|\d{4}-\d\d-\d\d( \d\d:\d\d)?|\b(?=[0-9a-f]*\d)[0-9a-f]{6,}\b",
        " ",
        text,
    )
    words = re.findall(r"[A-Za-z][A-Za-z'’]*", text)
    return [w for w in words if w.lower() not in ALLOWED_WORDS and w not in data_words]


def _data_words(ctx: Context) -> set[str]:
    """Values from the data, not the catalogue: roles, names, labels the test gave."""
    return {*ctx.config.service.roles, "test", "nightly", "sync", "ID", "checked", "A", "testclient", "bad"}


@pytest.fixture
def pages(pctx: Context, clock: FixedClock, tmp_path: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, fetch in every_page(pctx, clock):
        out[name] = {lang: fetch(lang) for lang in ("ja", "en")}
    # The pages shown only with an identity provider, with the real test providers (node
    # oidc-provider for [verification], the pysaml2 IdP's metadata for [saml]).
    with (
        running_provider(tmp_path / "oidc", "https://testserver/identity/callback") as oidc,
        running_idp(tmp_path / "saml") as saml,
    ):
        (tmp_path / "idp").mkdir()
        ctx = open_context(make_config(tmp_path / "idp", IDP_CONFIG.format(oidc=oidc, saml=saml)), clock)
        add_user(ctx, USER)
        for name, fetch in every_identity_page(ctx, clock, oidc):
            out[name] = {lang: fetch(lang) for lang in ("ja", "en")}
        ctx.engine.dispose()
    return out


IDP_CONFIG = """
[portal]
default_language = "en"
[verification]
enabled = true
label = "My Number Card"
label_ja = "マイナンバーカード"
issuer = "{oidc.issuer}"
client_id = "{client_id}"
client_secret = "{client_secret}"
ca_file = "{oidc.ca_file}"
[saml]
enabled = true
label = "Example University"
idp_metadata_file = "{saml.metadata_file}"
""".replace("{client_id}", CLIENT_ID).replace("{client_secret}", CLIENT_SECRET)


def test_every_page_in_both_languages_has_no_words_of_the_other(
    pctx: Context, pages: dict[str, dict[str, str]]
) -> None:
    data_words = _data_words(pctx)
    problems: list[str] = []
    for name, by_lang in pages.items():
        for lang, html in by_lang.items():
            assert f'<html lang="{lang}">' in html, f"{name} ({lang}) is not a page in {lang}"
            if "Something went wrong on our side" in html or "サーバー側で問題が発生" in html:
                problems.append(f"{name} ({lang}): server error (a missing catalogue key?)")
                continue
            for text in visible_text(html, lang):
                if lang == "ja":
                    left = english_left(text, data_words)
                    if left:
                        problems.append(f"{name} (ja): English {left!r} in {text!r}")
                elif _CJK.search(text):
                    problems.append(f"{name} (en): Japanese in {text!r}")
    assert not problems, "\n".join(problems)


def test_the_walk_reaches_every_template() -> None:
    from pathlib import Path

    import campusvpn.portal

    templates = Path(campusvpn.portal.__file__).parent / "templates"
    names = {p.relative_to(templates).as_posix() for p in templates.rglob("*.html")}
    # base, the macros and the includes are in every page; the rest each have a visit above.
    walked = {
        "signin.html",
        "code.html",
        "other_ways.html",
        "error.html",
        "home.html",
        "apply.html",
        "applied.html",
        "register.html",
        "totp.html",
        "phone.html",
        "security.html",
        "confirm.html",
        "codes.html",
        "devices.html",
        "vpn.html",
        "connect.html",
        "pass.html",
        "admin/search.html",
        "admin/user.html",
        "admin/audit.html",
        "admin/import.html",
        "admin/tokens.html",
        "admin/lifecycle.html",
        "password.html",
        "email.html",
        "email_confirm.html",
        "sso_done.html",
    }
    # Shown only with an identity provider configured: every_identity_page walks them.
    walked |= {"idp_go.html", "saml_post.html", "identity.html", "forgot.html", "reset.html"}
    assert names - walked - {"base.html", "_ui.html", "_decision.html", "admin/_audit_table.html"} <= set(), (
        names - walked
    )


def test_every_catalogue_key_a_template_names_exists() -> None:
    from pathlib import Path

    import campusvpn.portal

    templates = Path(campusvpn.portal.__file__).parent / "templates"
    missing = []
    for path in templates.rglob("*.html"):
        for key in re.findall(r"""\bt\(\s*["']([a-z_.]*[a-z_])["']\s*[,)]""", path.read_text()):
            if key not in i18n.MESSAGES:
                missing.append(f"{path.name}: {key}")
    assert not missing, missing


def test_japanese_entries_are_not_english_copies() -> None:
    """A Japanese entry with English words and no Japanese at all was copied, not translated (the
    language switch, which names English in English, is the one exception)."""
    copies = [
        k
        for k, (_en, ja) in i18n.MESSAGES.items()
        if english_left(ja, set()) and not _CJK.search(ja) and k != "lang.other"
    ]
    assert not copies, copies
