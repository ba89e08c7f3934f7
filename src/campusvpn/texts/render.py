"""The one renderer: a message (or several) in English or Japanese, from the catalogue.

Parameters are filled in by name; datetimes are formatted in the configured zone (or their own),
dates as ISO days. The help desk is named in the reader's language when the front end gives its
two names. A plural entry (msgid_plural) chooses its English form by the parameter `n`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from campusvpn.texts import catalogue
from campusvpn.texts.message import Message, Param, Phrases
from campusvpn.texts.times import format_local

LANGUAGES = ("ja", "en")


def template(message: Message, lang: str) -> str:
    key = message.code.value
    plural = catalogue.plurals().get(key)
    if plural is not None:
        one, many, ja = plural
        if lang == "ja":
            return ja
        return one if message.params.get("n") == 1 else many
    en, ja = catalogue.entries()[key]
    return ja if lang == "ja" and ja else en


def _value(v: Param, lang: str, tz: ZoneInfo | None, helpdesk: tuple[str, str] | None) -> str:
    if isinstance(v, Message):
        return render(v, lang, tz=tz, helpdesk=helpdesk)
    if isinstance(v, Phrases):  # Japanese phrases are sentences of their own
        return ("。" if lang == "ja" else "; ").join(render(m, lang, tz=tz, helpdesk=helpdesk) for m in v.items)
    if isinstance(v, tuple):
        return v[1] if lang == "ja" else v[0]
    if isinstance(v, datetime):
        return format_local(v, tz)
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def render(
    said: Message | Iterable[Message],
    lang: str,
    *,
    tz: ZoneInfo | None = None,
    helpdesk: tuple[str, str] | None = None,
) -> str:
    """`helpdesk`: (English, Japanese) names of the help desk, used for `{helpdesk}` in place of the
    name the lower layer put in (the configured English one)."""
    lang = lang if lang in LANGUAGES else "en"
    parts = []
    for m in (said,) if isinstance(said, Message) else said:
        params = {k: _value(v, lang, tz, helpdesk) for k, v in m.params.items()}
        if helpdesk is not None:
            params["helpdesk"] = helpdesk[1] if lang == "ja" else helpdesk[0]
        parts.append(template(m, lang).format(**params))
    return ("" if lang == "ja" else " ").join(parts)


def render_both(
    said: Message | Iterable[Message],
    first: str,
    *,
    tz: ZoneInfo | None = None,
    helpdesk: tuple[str, str] | None = None,
) -> str:
    """Both languages, `first` first: for a reader whose language is not known (a VPN client's box)."""
    said = tuple((said,) if isinstance(said, Message) else said)
    order = (first, *(lang for lang in LANGUAGES if lang != first))
    return " / ".join(render(said, lang, tz=tz, helpdesk=helpdesk) for lang in order)


class MessageError(Exception):
    """An error whose text is a catalogue message: `str()` is its English (logs, the CLI, the API),
    `said` what a front end renders in its reader's language."""

    def __init__(self, said: Message) -> None:
        super().__init__(render(said, "en"))
        self.said = said
