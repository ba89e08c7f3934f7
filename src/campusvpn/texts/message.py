"""What a lower layer says to a person: a stable code (the catalogue's key) and its facts.

The sign-in engine, the policy and the service return these instead of sentences; each front end
renders them (texts.render) in the reader's language. Times are kept as datetimes (in the
configured zone, so their English rendering needs no zone) and formatted only when rendered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeAlias

from campusvpn.texts.codes import Code

# A parameter may be another message (a phrase said in the same language), several of them (a list
# inside a sentence), or a configured text in both languages: (English, Japanese).
Param: TypeAlias = "str | int | datetime | date | tuple[str, str] | Message | Phrases"


@dataclass(frozen=True)
class Phrases:
    """Several phrases said as one list inside a sentence (each password rule a new one breaks)."""

    items: tuple[Message, ...]


@dataclass(frozen=True)
class Message:
    code: Code
    params: Mapping[str, Param] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """For state kept outside the process (a browser sign-in handed back to the VPN client)."""
        out: dict[str, Any] = {}
        for k, v in self.params.items():
            if isinstance(v, Message):
                out[k] = {"message": v.to_json()}
            elif isinstance(v, Phrases):
                out[k] = {"phrases": [m.to_json() for m in v.items]}
            elif isinstance(v, tuple):
                out[k] = {"both": list(v)}
            elif isinstance(v, datetime):
                out[k] = {"datetime": v.isoformat()}
            elif isinstance(v, date):
                out[k] = {"date": v.isoformat()}
            else:
                out[k] = v
        return {"code": self.code.value, "params": out}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        params: dict[str, Param] = {}
        for k, v in dict(data.get("params") or {}).items():
            if isinstance(v, dict) and "message" in v:
                params[k] = Message.from_json(v["message"])
            elif isinstance(v, dict) and "phrases" in v:
                params[k] = Phrases(tuple(Message.from_json(m) for m in v["phrases"]))
            elif isinstance(v, dict) and "both" in v:
                params[k] = (str(v["both"][0]), str(v["both"][1]))
            elif isinstance(v, dict) and "datetime" in v:
                params[k] = datetime.fromisoformat(v["datetime"])
            elif isinstance(v, dict) and "date" in v:
                params[k] = date.fromisoformat(v["date"])
            else:
                params[k] = v
        return cls(Code(data["code"]), params)


def say(code: Code, **params: Param) -> Message:
    return Message(code, params)


# Several sentences said together (a refusal with every reason, a welcome with a note).
Said = tuple[Message, ...]
