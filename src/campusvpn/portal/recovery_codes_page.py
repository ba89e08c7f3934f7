"""New recovery codes, shown once through POST/Redirect/GET.

The form that makes them (confirming the first method, or "new set") answers with a 303 to
`/recovery-codes`; the codes wait in the portal session's one-time notes, sealed with the secret
box (never in clear in the database, never in a URL) and good for a few minutes. The GET shows
them and forgets them: a reload or Back says they were already shown and offers a new set
through the security page's confirmation. So the browser never offers to resend the form."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

from starlette.responses import Response

from campusvpn.platform.secretbox import SecretBoxError
from campusvpn.portal.web import Req, page, take_info

_KEY = "recovery_codes"
_SEAL = "portal-recovery-codes"
LIFETIME = timedelta(minutes=10)  # long enough to follow the redirect, short enough to not linger


def show_once(req: Req, codes: list[str]) -> Response:
    """Keep `codes` for the next GET of the codes page and send the browser there."""
    now = req.ctx.clock.now()
    sealed = req.ctx.box.seal(json.dumps({"codes": codes, "at": now.timestamp()}).encode(), _SEAL)
    req.session.flash = {**(req.session.flash or {}), _KEY: base64.urlsafe_b64encode(sealed).decode()}
    return req.redirect("/recovery-codes")


def _take(req: Req) -> list[str] | None:
    notes = dict(req.session.flash or {})
    kept = notes.pop(_KEY, None)
    req.session.flash = notes or None
    if not isinstance(kept, str):
        return None
    try:
        data = json.loads(req.ctx.box.open(base64.urlsafe_b64decode(kept), _SEAL))
    except (SecretBoxError, ValueError):
        return None
    if req.ctx.clock.now().timestamp() - float(data["at"]) > LIFETIME.total_seconds():
        return None
    return [str(c) for c in data["codes"]]


@page("/recovery-codes")
def recovery_codes(req: Req) -> Response:
    codes = _take(req)
    info = take_info(req)
    if codes is None:
        return req.render("codes.html", codes=None, info=info)
    return req.render("codes.html", codes=codes, left=len(codes), total=len(codes), info=info)


ROUTES = [recovery_codes]
