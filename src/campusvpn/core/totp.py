"""RFC 6238 TOTP with replay protection and a bounded drift window.

pyotp computes the codes; what pyotp deliberately leaves to the caller lives here: every
time step is accepted at most once (RFC 6238 §5.2), so the caller stores the step this
returns and passes it back as `last_step`.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha1, sha256, sha512
from urllib.parse import quote, urlencode

import pyotp

_DIGESTS = {"SHA1": sha1, "SHA256": sha256, "SHA512": sha512}

SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation


@dataclass(frozen=True)
class TotpParams:
    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"
    drift_steps: int = 1


def new_secret() -> str:
    """A fresh base32 secret (no padding), as authenticator apps expect it."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def _totp(secret_b32: str, params: TotpParams) -> pyotp.TOTP:
    return pyotp.TOTP(secret_b32, digits=params.digits, interval=params.period, digest=_DIGESTS[params.algorithm])


def code_at(secret_b32: str, at: datetime, params: TotpParams) -> str:
    return str(_totp(secret_b32, params).at(at))


def step_of(at: datetime, params: TotpParams) -> int:
    return int(at.timestamp()) // params.period


@dataclass(frozen=True)
class TotpCheck:
    ok: bool
    step: int | None = None
    replayed: bool = False


def verify(secret_b32: str, code: str, at: datetime, params: TotpParams, last_step: int | None) -> TotpCheck:
    """Check `code` against steps now±drift; a step at or before `last_step` is a replay."""
    code = code.strip().replace(" ", "")
    if len(code) != params.digits or not code.isdigit():
        return TotpCheck(ok=False)
    totp = _totp(secret_b32, params)
    now_step = step_of(at, params)
    # Later steps first, so a code valid for two steps (never, with distinct codes) takes the newest.
    for step in range(now_step + params.drift_steps, now_step - params.drift_steps - 1, -1):
        if hmac.compare_digest(str(totp.generate_otp(step)), code):
            if last_step is not None and step <= last_step:
                return TotpCheck(ok=False, step=step, replayed=True)
            return TotpCheck(ok=True, step=step)
    return TotpCheck(ok=False)


def provisioning_uri(secret_b32: str, issuer: str, account: str, params: TotpParams) -> str:
    """`otpauth://totp/ISSUER:account?secret=…&issuer=…`, encoded per RFC 3986 (`%20`, never `+`)."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query: dict[str, str | int] = {"secret": secret_b32, "issuer": issuer}
    if params.algorithm != "SHA1":
        query["algorithm"] = params.algorithm
    if params.digits != 6:
        query["digits"] = params.digits
    if params.period != 30:
        query["period"] = params.period
    return f"otpauth://totp/{label}?{urlencode(query, quote_via=quote)}"
