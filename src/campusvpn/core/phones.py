"""Phone methods: which kinds exist, which channels each may use, E.164 numbers."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from campusvpn.texts.codes import Code
from campusvpn.texts.message import say
from campusvpn.texts.render import MessageError


class PhoneKind(enum.StrEnum):
    MOBILE = "mobile"
    ALTERNATE = "alternate"
    OFFICE = "office"


class Channel(enum.StrEnum):
    SMS = "sms"
    VOICE = "voice"


CHANNELS: dict[PhoneKind, tuple[Channel, ...]] = {
    PhoneKind.MOBILE: (Channel.SMS, Channel.VOICE),
    PhoneKind.ALTERNATE: (Channel.VOICE,),
    PhoneKind.OFFICE: (Channel.VOICE,),
}


class InvalidPhone(MessageError, ValueError):
    """`said`: what is wrong with the number (str(): in English)."""


@dataclass(frozen=True)
class PhoneNumber:
    e164: str
    extension: str | None = None


def masked(e164: str, extension: str | None = None) -> str:
    """What we show in prompts: enough to recognise, not enough to harvest (`+81*******78`)."""
    ext = f" ext. {extension}" if extension else ""
    return f"{e164[:3]}{'*' * max(0, len(e164) - 5)}{e164[-2:]}{ext}"


def parse_phone(kind: PhoneKind, number: str, extension: str | None, default_region: str) -> PhoneNumber:
    # Imported here: its metadata (~1 MB) is needed only when someone types a number, not in every
    # gateway worker that masks a stored one (start-up memory).
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(say(Code.ERROR_NOT_A_PHONE_NUMBER, number=number)) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone(say(Code.ERROR_INVALID_PHONE_NUMBER, number=number))
    if extension is not None:
        extension = extension.strip()
        if kind is not PhoneKind.OFFICE:
            raise InvalidPhone(say(Code.ERROR_EXTENSION_NOT_OFFICE))
        if not extension.isdigit() or len(extension) > 10:
            raise InvalidPhone(say(Code.ERROR_BAD_EXTENSION, extension=extension))
    if kind is PhoneKind.MOBILE:
        ntype = phonenumbers.number_type(parsed)
        if ntype not in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        ):
            raise InvalidPhone(say(Code.ERROR_NOT_MOBILE, number=number))
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return PhoneNumber(e164=e164, extension=extension or None)
