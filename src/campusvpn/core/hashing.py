"""Argon2id hashing of passwords and recovery codes (never stored or logged in clear)."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 1


class Hasher:
    def __init__(self, params: Argon2Params) -> None:
        self.params = params
        self._ph = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        self._decoy_hash: str | None = None

    @property
    def _decoy(self) -> str:
        """A real hash to compare against when the user does not exist, so "no such user" costs the
        same time as "wrong password" (no user enumeration by timing). Made at the first need: a
        process that never checks a password never allocates Argon2id's memory."""
        if self._decoy_hash is None:
            self._decoy_hash = self.hash("campusvpn decoy password")
        return self._decoy_hash

    def warm(self) -> None:
        """Make the decoy now (start-up), so the first unknown user costs what the others cost."""
        self._decoy  # noqa: B018 - computing it is the point

    def hash(self, secret: str) -> str:
        return self._ph.hash(secret)

    def verify(self, stored: str | None, secret: str) -> bool:
        try:
            return self._ph.verify(stored or self._decoy, secret) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._ph.check_needs_rehash(stored)
