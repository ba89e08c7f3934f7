"""One-time secrets: recovery codes, codes sent by SMS or voice, trusted-device tokens."""

from __future__ import annotations

import base64
import hashlib
import secrets

RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_recovery_code() -> str:
    """`ABCD-EFGH-2345-WXYZ`: 80 random bits, in groups people can read out and type."""
    raw = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def normalise_recovery_code(typed: str) -> str | None:
    """Accept lower case, spaces and dashes; 0/1/8 typed for O/I/B. None if it cannot be one."""
    text = typed.upper().replace("-", "").replace(" ", "").replace("0", "O").replace("1", "I").replace("8", "B")
    if len(text) != 16 or any(c not in _B32 for c in text):
        return None
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def looks_like_recovery_code(typed: str) -> bool:
    return normalise_recovery_code(typed) is not None


def new_phone_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def new_device_token() -> str:
    """256 random bits; only its SHA-256 is stored, which is enough for a secret this long."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def phone_code_digest(code: str, salt: str) -> str:
    # A 6-digit code lives 5 minutes and is rate-limited; a salted hash keeps it out of
    # database dumps without the cost of Argon2 on every send.
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()
