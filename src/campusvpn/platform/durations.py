"""Durations as operators write them: `40m`, `30d`, `1h30m`, `90s`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)\s*([wdhms])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[wdhms]\s*)+$")


MAX_SECONDS = 100 * 366 * 86400


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Parse `40m`, `30d`, `1h30m`; a bare number is not accepted, so units are never guessed."""
    if not _WHOLE.match(text.lower()):
        raise DurationError(f"{text!r} is not a duration; write a number with a unit, like 90s, 40m, 12h, 30d or 1h30m")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text.lower()))
    if seconds > MAX_SECONDS:  # timedelta itself overflows near 2.7 million years; no setting needs a century
        raise DurationError(f"{text.strip()!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest form parse_duration reads back to the same value."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
