"""Texts that leave the service: SMS, voice calls and e-mails, rendered from the catalogue in the
recipient's language (the caller picks it: the user's own, else the configured default).

An SMS must fit one segment, or phones show it in pieces (and providers bill each): 160 characters
in the GSM alphabet, but only 70 once any character needs UCS-2, which every Japanese text does."""

from __future__ import annotations

from collections.abc import Sequence

from campusvpn.texts.catalogue import entries

SMS_GSM_SEGMENT = 160
SMS_UCS2_SEGMENT = 70


def render(key: str, lang: str, **values: object) -> str:
    """The catalogue text `key` in `lang` (English for any language but Japanese), filled in."""
    en, ja = entries()[key]
    return (ja if lang == "ja" else en).format(**values)


def senders(university: str, service: str) -> list[str]:
    """Who a message says it is from, longest first: "<university> <service>", then the service alone."""
    return [f"{university} {service}", service] if university else [service]


def sms_segment(text: str) -> int:
    """Characters one SMS segment holds for this text (ASCII stands in for the GSM alphabet)."""
    return SMS_GSM_SEGMENT if text.isascii() else SMS_UCS2_SEGMENT


def sms(key: str, lang: str, names: Sequence[str], **values: object) -> str:
    """The SMS `key` signed with the longest of `names` that still fits one segment (the shortest
    one when none does: a long university name must not push the code into a second part)."""
    for name in names:
        text = render(key, lang, sender=name, **values)
        if len(text) <= sms_segment(text):
            return text
    return render(key, lang, sender=names[-1], **values)
