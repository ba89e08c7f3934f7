"""AnyConnect's aggregate-auth XML (`anyconnect.xmlauth.parse`): only XmlAuthError, bounded fields."""

from __future__ import annotations

import atheris
from fuzzlib import main, require

with atheris.instrument_imports(include=["campusvpn", "defusedxml"]):
    from campusvpn.anyconnect import xmlauth


def check(data: bytes) -> None:
    try:
        req = xmlauth.parse(data)
    except xmlauth.XmlAuthError as exc:
        require(str(exc), "an XmlAuthError says what is wrong")
        return
    require(len(data) <= xmlauth.MAX_BODY, "a body over the limit was parsed")
    require(req.kind in ("init", "auth-reply", "logout"), f"unexpected kind {req.kind!r}")
    require(len(req.fields) <= 32, "more than 32 fields kept")
    values = [*req.fields.values(), req.group_select, req.group_access, req.handle, req.session_token]
    values += [req.device_id, req.version]
    for v in values:
        require(v is None or (isinstance(v, str) and len(v) <= xmlauth.MAX_FIELD), f"field too long: {v!r:.80}")
        require(v is None or v == v.strip(), "a field keeps surrounding white space")
    require(all(isinstance(k, str) for k in req.fields), "a field name is not text")


if __name__ == "__main__":
    main(check)
