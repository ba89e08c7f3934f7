"""The portal's gettext catalogue (texts/locale/ja/LC_MESSAGES/campusvpn.po): every entry translated,
placeholders kept, and `{% trans %}` blocks rendered in the page's language."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.messages.pofile import read_po

from campusvpn.portal import i18n
from campusvpn.portal.web import TEMPLATES, shared_values
from campusvpn.texts import catalogue


def catalogue_problems(path: Path) -> list[str]:
    """What a translator must fix: an entry without a translation or marked fuzzy, a key used twice,
    a placeholder lost or added in the translation."""
    with path.open("rb") as f:
        cat = read_po(f, locale="ja")
    problems, seen = [], set()
    for m in cat:
        if not m.id:
            continue
        where = f"{m.context or m.id!r}"
        if not m.context:
            problems.append(f"{where}: no msgctxt (the stable key)")
        if m.context in seen:
            problems.append(f"{where}: the key is used twice")
        seen.add(m.context)
        if not m.string:
            problems.append(f"{where}: not translated")
        if m.fuzzy:
            problems.append(f"{where}: marked fuzzy")
        names = {
            "{}": (set(re.findall(r"\{(\w+)\}", str(m.id))), set(re.findall(r"\{(\w+)\}", str(m.string)))),
            "%()s": (set(re.findall(r"%\((\w+)\)s", str(m.id))), set(re.findall(r"%\((\w+)\)s", str(m.string)))),
        }
        for kind, (en, ja) in names.items():
            if m.string and en != ja:
                problems.append(f"{where}: placeholders {kind} {sorted(en)} in English, {sorted(ja)} in Japanese")
    return problems


def test_every_entry_is_translated_with_its_placeholders() -> None:
    assert not catalogue_problems(catalogue.PO_FILE)


def test_a_missing_translation_is_found(tmp_path: Path) -> None:
    po = tmp_path / "portal.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgctxt "a.key"\nmsgid "Hello, {name}"\nmsgstr ""\n\n'
        'msgctxt "b.key"\nmsgid "Bye, {name}"\nmsgstr "さようなら"\n\n'
        '#, fuzzy\nmsgctxt "c.key"\nmsgid "Yes"\nmsgstr "はい"\n',
        encoding="utf-8",
    )
    found = catalogue_problems(po)
    assert any("'a.key'" in p and "not translated" in p for p in found), found
    assert any("'b.key'" in p and "placeholders" in p for p in found), found
    assert any("'c.key'" in p and "fuzzy" in p for p in found), found


def test_the_code_reads_its_texts_from_the_catalogue() -> None:
    assert i18n.MESSAGES["nav.home"] == ("Home", "ホーム")
    assert i18n.EVENTS["mfa.reset"] == ("MFA reset", "MFA のリセット")
    assert set(i18n.MESSAGES) | {catalogue.EVENT + k for k in i18n.EVENTS} == set(catalogue.entries())


def test_trans_blocks_follow_the_page_language_and_escape_values() -> None:
    class _Ctx:  # only what shared_values reads
        class config:
            class service:
                name, helpdesk = "Campus VPN", "the IT help desk"

            class portal:
                helpdesk_ja = "IT ヘルプデスク"

    page = TEMPLATES.from_string(
        "{% trans %}Home{% endtrans %}|{% trans 'nav.vpn' %}VPN status{% endtrans %}|"
        "{% trans who=name %}Hello, %(who)s{% endtrans %}"
    )
    for lang, expected in (("ja", "ホーム|VPN の状態|"), ("en", "Home|VPN status|")):
        t = i18n.Translator(lang, ZoneInfo("Asia/Tokyo"))
        out = page.render(**shared_values(_Ctx, t), name="<b>x</b>")  # type: ignore[arg-type]
        assert out.startswith(expected), out
        assert out.endswith("Hello, &lt;b&gt;x&lt;/b&gt;"), out
