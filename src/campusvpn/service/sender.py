"""Delivery of codes by SMS and voice. Real providers plug in behind the same interface."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Message:
    to: str
    channel: str  # sms | voice | email
    text: str
    at: datetime
    username: str
    extension: str | None = None
    language: str = "en"  # en | ja: the voice a call speaks in


class Sender(Protocol):
    def send(self, message: Message) -> None: ...


class OutboxSender:
    """Development sender: appends each message as one JSON line; tests and operators read it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Message) -> None:
        line = (
            json.dumps(
                {
                    "at": message.at.isoformat(),
                    "to": message.to,
                    "channel": message.channel,
                    "username": message.username,
                    "extension": message.extension,
                    "text": message.text,
                },
                ensure_ascii=False,
            )
            + "\n"
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # several gateway workers may append at once
            f.write(line)


def read_outbox(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
