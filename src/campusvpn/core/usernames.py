"""What people type as their user name, and the one name it means."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from campusvpn.texts.codes import Code
from campusvpn.texts.message import say
from campusvpn.texts.render import MessageError


class InvalidUsername(MessageError, ValueError):
    """`said`: why, for the person who typed it (str(): in English)."""


@dataclass(frozen=True)
class UsernameRule:
    pattern: str
    realms: tuple[str, ...]
    hint: str
    hint_ja: str = ""  # the hint in Japanese ("": the English one is used)

    @property
    def _hint(self) -> tuple[str, str]:
        return (self.hint, self.hint_ja or self.hint)

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
                raise InvalidUsername(say(Code.USERNAME_BAD_REALM, allowed=allowed, hint=self._hint))
            name = local
        name = name.lower()
        if not re.fullmatch(self.pattern, name):
            raise InvalidUsername(say(Code.USERNAME_INVALID, typed=typed.strip(), hint=self._hint))
        return name
