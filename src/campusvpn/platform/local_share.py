"""Small, short-lived values the gateway workers of one host share: a sign-in between two of its
requests (the second may arrive on a new connection, accepted by another worker) and the notice
shown at a session's first connect.

With one process they live in a dictionary. With several, each value is a JSON file in a folder the
parent made for this run (under /tmp, the service user's, removed when the gateway stops); writes are
atomic (write, then rename). Keys come from clients, so only short URL-safe tokens are accepted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
SWEEP_EVERY = 60.0  # seconds between removals of values older than their kind's lifetime


class LocalShare:
    def __init__(self, folder: Path | None, max_age: float) -> None:
        self.folder = folder
        self.max_age = max_age  # seconds a value lives at most
        self._memory: dict[tuple[str, str], tuple[float, Any]] = {}
        self._swept = time.monotonic()

    @staticmethod
    def valid_key(key: str) -> bool:
        return _KEY.fullmatch(key) is not None

    def put(self, kind: str, key: str, value: Any) -> None:
        if not self.valid_key(key):
            raise ValueError(f"not a shareable key: {key!r}")
        self._sweep()
        if self.folder is None:
            self._memory[kind, key] = (time.time(), value)
            return
        path = self.folder / f"{kind}-{key}"
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(value, default=str))
        tmp.replace(path)

    def get(self, kind: str, key: str) -> Any | None:
        if not self.valid_key(key):
            return None
        if self.folder is None:
            item = self._memory.get((kind, key))
            return item[1] if item and time.time() - item[0] <= self.max_age else None
        path = self.folder / f"{kind}-{key}"
        try:
            if time.time() - path.stat().st_mtime > self.max_age:
                return None
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def pop(self, kind: str, key: str) -> Any | None:
        value = self.get(kind, key)
        if self.valid_key(key):
            if self.folder is None:
                self._memory.pop((kind, key), None)
            else:
                with contextlib.suppress(OSError):
                    (self.folder / f"{kind}-{key}").unlink()
        return value

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept < SWEEP_EVERY:
            return
        self._swept = now
        cutoff = time.time() - self.max_age
        if self.folder is None:
            for k in [k for k, (at, _) in self._memory.items() if at < cutoff]:
                del self._memory[k]
            return
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
