"""Japanese and English for the portal. The texts the portal owns live in the gettext catalogue
(texts/locale/ja/LC_MESSAGES/campusvpn.po, see texts/catalogue.py), keyed by short stable names; each entry has both
languages, so a page can never show up in one language only (tests check every entry is translated).
Here: choosing the language, and the page's renderings: what other layers say (policy reasons, the
sign-in engine, service errors) comes as catalogue codes with parameters, rendered by texts.render."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from campusvpn.core.calendar import format_from, format_local
from campusvpn.core.policy import Reason
from campusvpn.texts import catalogue
from campusvpn.texts.message import Message
from campusvpn.texts.render import MessageError, render

LANGUAGES = ("ja", "en")

# key: (English, Japanese). `{name}` placeholders are filled by `t`.
MESSAGES: dict[str, tuple[str, str]] = catalogue.messages()

# Audit events in words (the code stays in the page as data-event, and in the filter).
EVENTS: dict[str, tuple[str, str]] = catalogue.events()


def pick_language(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The user's choice (cookie) first, then the browser's order of preference."""
    if cookie in LANGUAGES:
        return str(cookie)
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        lang = tag.split("-")[0].strip().lower()
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if lang in LANGUAGES and (best is None or weight > best[0]):
            best = (weight, lang)
    return best[1] if best else default


class Translator:
    def __init__(
        self, lang: str, zone: ZoneInfo, helpdesk: tuple[str, str] = ("the IT help desk", "IT ヘルプデスク")
    ) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self.zone = zone
        self._helpdesk = helpdesk  # (English, Japanese): the configured name, said in the page's language

    @property
    def helpdesk(self) -> str:
        return self._helpdesk[1] if self.lang == "ja" else self._helpdesk[0]

    def __call__(self, key: str, **kw: object) -> str:
        en, ja = MESSAGES[key]
        text = ja if self.lang == "ja" else en
        return text.format(**kw) if kw else text

    # gettext for `{% trans %}` blocks (Jinja's i18n extension finds these in the page's context): the
    # English text is the msgid; Japanese has one form for every number.
    def gettext(self, text: str) -> str:
        return catalogue.by_english().get(text, text) if self.lang == "ja" else text

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(singular) if self.lang == "ja" or n == 1 else plural

    def pgettext(self, context: str, text: str) -> str:
        if self.lang != "ja":
            return text
        return catalogue.entries().get(context, (text, ""))[1] or text

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return self.pgettext(context, singular) if self.lang == "ja" or n == 1 else plural

    def time(self, at: datetime | None) -> str:
        return format_local(at, self.zone) if at else ""

    def when(self, at: datetime | str | None) -> str:
        """A stored time (a datetime or its ISO text, UTC) as local time in the configured zone."""
        if not at:
            return ""
        if isinstance(at, str):
            try:
                parsed = datetime.fromisoformat(at)
            except ValueError:
                return at
        else:
            parsed = at
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return format_local(parsed, self.zone)

    def day(self, at: datetime | str | None) -> str:
        """Only the local date of a stored time."""
        return self.when(at)[:10]

    def from_time(self, at: datetime | None) -> str:
        """When something becomes possible: the first whole minute at or after `at`."""
        return format_from(at, self.zone) if at else ""

    def said(self, said: Message | Iterable[Message] | None) -> str:
        """What another layer said (codes and parameters), in the page's language and time zone."""
        if said is None:
            return ""
        return render(said, self.lang, tz=self.zone, helpdesk=self._helpdesk)

    def reason(self, r: Reason) -> str:
        """A policy reason in the user's language."""
        return self.said(r.said)

    def method(self, m: Any) -> str:
        """A verification method's name in the page's language: a method summary (its `said`, kept
        JSON-safe) or a sign-in choice (its `label`)."""
        if isinstance(m, dict):
            return self.said(Message.from_json(m["said"]))
        return self.said(m.label)

    def device(self, label: str) -> str:
        """A trusted device's name ("Chrome on Windows", made at sign-in) in the page's language."""
        if self.lang != "ja":
            return label
        browser, _, system = label.partition(" on ")
        browser = {"Browser": "ブラウザー"}.get(browser, browser)
        system = {"unknown system": "不明なシステム"}.get(system, system)
        return f"{browser}（{system}）" if system else browser

    def event(self, code: str) -> str:
        """An audit event in words; an event not named here (a new one) shows its code."""
        names = EVENTS.get(code)
        return (names[1] if self.lang == "ja" else names[0]) if names else code

    def outcome(self, outcome: str) -> str:
        return self(f"outcome.{outcome}") if f"outcome.{outcome}" in MESSAGES else outcome

    def actor(self, actor: str) -> str:
        return self("actor.system") if actor == "system" else actor

    def service_error(self, exc: MessageError | Message) -> str:
        """A service error (or a message the service reported, as an import's rejected line)."""
        return self.said(exc if isinstance(exc, Message) else exc.said)
