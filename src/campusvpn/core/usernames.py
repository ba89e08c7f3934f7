"""What people type as their user name, and the one name it means."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


class InvalidUsername(ValueError):
    pass


@dataclass(frozen=True)
class UsernameRule:
    pattern: str
    realms: tuple[str, ...]
    hint: str

    def normalise(self, typed: str) -> str:
        """`"１２３４５６７８９０@Example.ac.jp "` → `"1234567890"`.

        NFKC folds full-width digits and letters; spaces anywhere are dropped (people type
        `123 456 7890`); a trailing `@realm` is dropped only for our own realms, so a typo
        in the domain is reported instead of silently accepted.
        """
        name = unicodedata.normalize("NFKC", typed)
        name = "".join(ch for ch in name if not ch.isspace() and unicodedata.category(ch) != "Cf")
        if "@" in name:
            local, _, realm = name.rpartition("@")
            if realm.lower() not in {r.lower() for r in self.realms}:
                allowed = " or ".join(f"@{r}" for r in self.realms) or "no domain"
                raise InvalidUsername(f"the part after @ must be {allowed}; your user name is {self.hint}")
            name = local
        name = name.lower()
        if not re.fullmatch(self.pattern, name):
            raise InvalidUsername(f"{typed.strip()!r} is not a user name; a user name is {self.hint}")
        return name
