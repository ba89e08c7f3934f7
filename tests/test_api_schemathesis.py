"""Property-based API testing: schemathesis generates requests from /api/openapi.json (valid and
invalid ones) and every answer must be a 4xx or 2xx, never a server error."""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (pip install -e .[dev])")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from tests.conftest import START, add_user, make_config  # noqa: E402

from campusvpn.platform.clock import FixedClock  # noqa: E402
from campusvpn.portal.api import create_api  # noqa: E402
from campusvpn.service import api_tokens  # noqa: E402
from campusvpn.service.context import open_context  # noqa: E402

ADMIN = "9000000001"


def _setup(tmp: Path) -> tuple[object, str]:
    ctx = open_context(make_config(tmp, f'[portal]\nadmins = ["{ADMIN}"]\n'), FixedClock(START))
    add_user(ctx, ADMIN)
    add_user(ctx, "1234567890")
    return create_api(ctx), api_tokens.create(ctx, ADMIN, "schemathesis")


def test_api_never_answers_with_a_server_error(tmp_path: Path) -> None:
    app, token = _setup(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: object) -> None:
            for headers in ({"Authorization": f"Bearer {token}"}, {}):
                response = case.call(headers=headers)  # type: ignore[attr-defined]
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                    )  # type: ignore[attr-defined]

        check()
    assert not failures, "\n".join(failures[:10])
    # The run really reached the endpoints: refusals without a token and answers with one.
    assert len(statuses) >= 100 and 401 in statuses and any(s < 300 for s in statuses), sorted(set(statuses))
