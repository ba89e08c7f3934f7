"""Times as users read them: one format in every language and front end."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def format_local(at: datetime, zone: ZoneInfo | None = None) -> str:
    """`2026-10-01 09:40 JST`: in `zone`, or in the time's own zone when none is given."""
    local = at.astimezone(zone) if zone is not None else at
    name = local.tzname() or (zone.key if zone is not None else "")
    return local.strftime("%Y-%m-%d %H:%M ") + name
