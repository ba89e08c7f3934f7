"""Regression tests of issue 14: admin power follows the account, lock-outs by strangers, anonymous
page loads, uninitialised or unreadable databases, storage failure, bad path parameters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.conftest import add_user, make_config
from tests.test_portal import ADMIN, USER, client, csrf, register_totp, sign_in, totp_now

from campusvpn.core.policy import AccountStatus
from campusvpn.platform.clock import FixedClock
from campusvpn.service import accounts, api_tokens, mfa
from campusvpn.service.context import Context, open_context


@pytest.fixture
def sctx(tmp_path: Path, clock: FixedClock) -> Iterator[Context]:
    c = open_context(make_config(tmp_path, f'[portal]\nadmins = ["{ADMIN}"]\ndefault_language = "en"\n'), clock)
    add_user(c, USER)
    yield c
    c.engine.dispose()


def _admin_in_console(ctx: Context, clock: FixedClock) -> tuple[TestClient, str]:
    add_user(ctx, ADMIN)
    mfa.apply(ctx, ADMIN, actor="test")
    a = client(ctx)
    sign_in(a, ADMIN)
    clock.advance(timedelta(minutes=1))
    secret, _ = register_totp(a, ctx, clock)
    assert a.get("/admin").status_code == 200
    return a, secret


# --- 1. admin authority follows the account ---------------------------------------------------


def test_suspended_admin_loses_the_console_and_the_api_at_once(sctx: Context, clock: FixedClock) -> None:
    a, secret = _admin_in_console(sctx, clock)
    token = api_tokens.create(sctx, ADMIN, "sync")
    h = {"Authorization": f"Bearer {token}"}
    assert a.get("/api/users", headers=h).status_code == 200
    accounts.set_status(sctx, ADMIN, AccountStatus.SUSPENDED, actor="9000000002", reason="under review")
    assert a.get("/admin", follow_redirects=False).status_code in (303, 403)
    assert a.get("/api/users", headers=h).status_code == 401
    assert api_tokens.listing(sctx) == []  # revoked, not merely refused
    # Signing in again to the portal is allowed (to read why), the console is not.
    page = sign_in(a, ADMIN)
    clock.advance(timedelta(seconds=31))
    r = a.post("/signin/code", data={"csrf": csrf(page), "code": totp_now(sctx, secret, clock)})
    assert "suspended" in r.text.lower(), r.text
    assert a.get("/admin", follow_redirects=False).status_code == 403
    # Restoring the account restores the console but not the revoked token.
    accounts.set_status(sctx, ADMIN, AccountStatus.ACTIVE, actor="9000000002")
    assert a.get("/api/users", headers=h).status_code == 401


def test_admin_status_is_checked_on_every_request_even_if_the_session_survives(
    sctx: Context,
    clock: FixedClock,
) -> None:
    a, _ = _admin_in_console(sctx, clock)
    token = api_tokens.create(sctx, ADMIN, "sync")
    # A status written by another path (a roster import on another node) ends nothing: the check
    # at each request must still refuse.
    with sctx.tx() as s:
        sctx.user(s, ADMIN).status = AccountStatus.REVOKED.value
    assert a.get("/admin", follow_redirects=False).status_code in (303, 403)
    assert a.get("/api/users", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# --- 8. bad path parameters -----------------------------------------------------------------


BAD = ["abc", "0", "-1", "%00", "x" * 300, "%E3%81%82", "..%2F..", "1234567890%20", "%FF"]


def test_every_path_parameter_refuses_bad_values_without_500(sctx: Context, clock: FixedClock) -> None:
    a, _ = _admin_in_console(sctx, clock)
    token = api_tokens.create(sctx, ADMIN, "sync")
    h = {"Authorization": f"Bearer {token}"}
    from starlette.routing import Route

    from campusvpn.portal.app import create_app

    app = create_app(sctx).app  # type: ignore[attr-defined]
    templates = [r.path for r in app.routes if isinstance(r, Route) and "{" in r.path]
    api = a.get("/api/openapi.json").json()["paths"]
    templates += ["/api" + p for p in api if "{" in p]
    assert len(templates) >= 6, templates
    seen: set[int] = set()
    import re

    for template in templates:
        for bad in BAD:
            url = re.sub(r"\{[^}]+\}", bad, template)
            for method in ("GET", "POST", "DELETE"):
                if url.startswith("/api/"):  # a valid body, so that the path parameter is what is tried
                    r = a.request(method, url, headers=h, json={"status": "suspended", "reason": "test"})
                else:
                    page = a.get("/admin").text
                    r = a.request(method, url, data={"csrf": csrf(page), "action": "kill", "session": bad})
                assert r.status_code in (200, 400, 404, 405, 422), (method, url, r.status_code, r.text[:300])
                seen.add(r.status_code)
    assert {400, 404} <= seen
