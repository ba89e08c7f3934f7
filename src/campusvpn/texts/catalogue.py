"""The message catalogue: one gettext .po file (Babel reads it; translators' tools edit it).

Each entry's msgctxt is the stable key the code names (`nav.vpn`, audit events as
`audit-event:mfa.reset`), its msgid the English text and its msgstr the Japanese. English needs no
catalogue of its own. Placeholders are `{name}` (python-brace-format) for `t("key", name=...)`,
and `%(name)s` for `{% trans %}` blocks in templates (Jinja's i18n extension)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

PO_FILE = Path(__file__).parent / "locale" / "ja" / "LC_MESSAGES" / "campusvpn.po"
EVENT = "audit-event:"  # the context prefix of audit events' names


@cache
def entries(path: Path = PO_FILE) -> dict[str, tuple[str, str]]:
    """Every entry with a context: key -> (English, Japanese). An untranslated entry has "" as its
    Japanese (a test fails on it)."""
    with path.open("rb") as f:
        catalog = read_po(f, locale="ja")
    out: dict[str, tuple[str, str]] = {}
    for m in catalog:
        if m.id and m.context:
            out[m.context] = (str(m.id), str(m.string or ""))
    return out


@cache
def by_english(path: Path = PO_FILE) -> dict[str, str]:
    """English -> Japanese, for `{% trans %}` blocks (gettext looks up by the English text)."""
    return {en: ja for en, ja in entries(path).values() if ja}


def messages() -> dict[str, tuple[str, str]]:
    return {k: v for k, v in entries().items() if not k.startswith(EVENT)}


def events() -> dict[str, tuple[str, str]]:
    return {k.removeprefix(EVENT): v for k, v in entries().items() if k.startswith(EVENT)}
