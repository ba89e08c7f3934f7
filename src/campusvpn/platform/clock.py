"""Time comes from a Clock so every rule can be tested at any instant."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to: for tests and for "what if at TIME" questions."""

    def __init__(self, at: datetime) -> None:
        self._at = ensure_aware(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = ensure_aware(at)

    def advance(self, delta: timedelta) -> None:
        self._at += delta


class FileClock:
    """For browser tests and demos of a running server: the time written in a file (ISO 8601),
    running on from the moment the file was last changed. Rewrite the file to jump."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._mtime = -1.0
        self._base = datetime.now(UTC)
        self._since = time.monotonic()

    def now(self) -> datetime:
        try:
            mtime = os.stat(self._path).st_mtime
            if mtime != self._mtime:
                with open(self._path, encoding="utf-8") as f:
                    self._base = ensure_aware(datetime.fromisoformat(f.read().strip()))
                self._mtime, self._since = mtime, time.monotonic()
        except (OSError, ValueError):
            pass  # keep the last good time: a half-written file must not stop the clock
        return self._base + timedelta(seconds=time.monotonic() - self._since)


def ensure_aware(at: datetime) -> datetime:
    """Naive datetimes are taken as UTC; stored times are always UTC."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)
