"""What a user types into a VPN client's single code field, as a sign-in event.

Clients that show one field for the second factor (AnyConnect's `secondary_password`, Fortinet's
`tokeninfo` challenge) get the same conventions: `sms` or `call` asks for a code to be sent, and
` trust` (or ` remember`) after a code also skips codes on this device from now on.
"""

from __future__ import annotations

from campusvpn.signin.engine import Code, SendCode
from campusvpn.texts.codes import Code as Text
from campusvpn.texts.message import Message, say

SEND_WORDS = {"sms": "sms", "text": "sms", "call": "voice", "voice": "voice"}
TRUST_WORDS = ("trust", "remember")


def typed_answer(typed: str, *, device_label: str) -> SendCode | Code | None:
    """The event for `typed`, or None when no code was typed (ask again)."""
    typed = typed.strip()
    words = typed.lower().split()
    if len(words) == 1 and words[0] in SEND_WORDS:
        return SendCode(channel=SEND_WORDS[words[0]])
    trust = len(words) >= 2 and words[-1] in TRUST_WORDS
    code = " ".join(typed.split()[:-1]) if trust else typed
    if not code:
        return None
    return Code(code, trust_device=trust, device_label=device_label[:200])


def hints(*, phone: bool, trust_days: int) -> list[Message]:
    """What the code field's prompt adds about these conventions; the front end renders them."""
    out = [say(Text.VPN_CODE_SEND_WORDS)] if phone else []
    return [*out, say(Text.VPN_CODE_TRUST_WORD, days=trust_days)]
