"""The message catalogue: one gettext .po file (Babel reads it; translators' tools edit it).

Each entry's msgctxt is the stable key the code names (`nav.vpn`, audit events as
`audit-event:mfa.reset`), its msgid the English text and its msgstr the Japanese. English needs no
catalogue of its own. Placeholders are `{name}` (python-brace-format) for `t("key", name=...)`,
and `%(name)s` for `{% trans %}` blocks in templates (Jinja's i18n extension)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

PO_FILE = Path(__file__).parent / "locale" / "ja" / "LC_MESSAGES" / "campusvpn.po"
EVENT = "audit-event:"  # the context prefix of audit events' names


@cache
def entries(path: Path = PO_FILE) -> dict[str, tuple[str, str]]:
    """Every entry with a context: key -> (English, Japanese). An untranslated entry has "" as its
    Japanese (a test fails on it)."""
    catalog = _read(path)
    out: dict[str, tuple[str, str]] = {}
    for m in catalog:
        if m.id and m.context:
            out[m.context] = (_forms(m.id)[0], _forms(m.string)[0])  # a plural's singular stands for it
    return out


def _read(path: Path) -> Catalog:
    from babel.messages.pofile import read_po  # only when a text is first rendered: Babel is slow to import

    with path.open("rb") as f:
        return read_po(f, locale="ja")


def _forms(value: str | tuple[str, ...] | list[str] | None) -> list[str]:
    """An entry's text as a list of its forms (one, or singular and plural)."""
    if isinstance(value, tuple | list):
        return [str(v or "") for v in value]
    return [str(value or "")]


@cache
def plurals(path: Path = PO_FILE) -> dict[str, tuple[str, str, str]]:
    """Entries with a plural (msgid_plural): key -> (English one, English many, Japanese: one form)."""
    catalog = _read(path)
    return {
        m.context: (_forms(m.id)[0], _forms(m.id)[1], _forms(m.string)[0])
        for m in catalog
        if m.id and m.context and m.pluralizable
    }


@cache
def by_english(path: Path = PO_FILE) -> dict[str, str]:
    """English -> Japanese, for `{% trans %}` blocks (gettext looks up by the English text)."""
    return {en: ja for en, ja in entries(path).values() if ja}


def messages() -> dict[str, tuple[str, str]]:
    return {k: v for k, v in entries().items() if not k.startswith(EVENT)}


def events() -> dict[str, tuple[str, str]]:
    return {k.removeprefix(EVENT): v for k, v in entries().items() if k.startswith(EVENT)}
