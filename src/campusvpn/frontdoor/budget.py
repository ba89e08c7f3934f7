"""How many connections the front door holds for clients that have not reached a tunnel yet.

Every TCP connection takes a slot from the moment it is accepted until it becomes a tunnel or
closes: during the TLS handshake and every HTTP exchange. Two limits keep a flood from starving
everyone else:

- per source address: one address (or one attacker behind it) holds at most `per_address` slots;
- in all: `open_share` slots for anyone, and `reserved` more that only requests carrying a live
  session (a VPN client resuming or connecting its tunnel) may use, so established users get back
  in while strangers hold every open slot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Budget:
    open_share: int
    reserved: int
    per_address: int
    pending: int = 0
    by_address: Counter[str] = field(default_factory=Counter)
    # Told the new count on every change (the metrics gauge: a callback read at scrape time would
    # not reach the worker that serves the metrics when there are several).
    on_change: Callable[[int], None] = lambda _n: None

    def admit(self, address: str | None) -> Slot | None:
        """A slot for a new connection, or None: refuse it before anything else is spent on it."""
        key = address or "?"
        if self.by_address[key] >= self.per_address or self.pending >= self.open_share + self.reserved:
            return None
        self.pending += 1
        self.by_address[key] += 1
        self.on_change(self.pending)
        return Slot(self, key)

    @property
    def in_reserve(self) -> bool:
        """More connections are pending than the open share: only live sessions are served now."""
        return self.pending > self.open_share

    def _release(self, key: str) -> None:
        self.pending -= 1
        self.by_address[key] -= 1
        if self.by_address[key] <= 0:
            del self.by_address[key]
        self.on_change(self.pending)


class Slot:
    """One connection's place in the budget; released once, when it closes or becomes a tunnel."""

    __slots__ = ("_budget", "_key")

    def __init__(self, budget: Budget, key: str) -> None:
        self._budget: Budget | None = budget
        self._key = key

    def release(self) -> None:
        if self._budget is not None:
            self._budget._release(self._key)
            self._budget = None

    @property
    def held(self) -> bool:
        return self._budget is not None
