"""A message kept in a text column (a session's end reason): JSON of its codes and facts, rendered
when read, in the reader's language. Rows written before codes hold plain English: read as is."""

from __future__ import annotations

import json
from collections.abc import Iterable

from campusvpn.texts.message import Message, Said
from campusvpn.texts.render import render, render_both


def dump(said: Message | Iterable[Message]) -> str:
    messages = (said,) if isinstance(said, Message) else tuple(said)
    return json.dumps([m.to_json() for m in messages], ensure_ascii=False, separators=(",", ":"))


def load(text: str) -> Said | str:
    """The messages `text` holds, or `text` itself when it is not a stored message (an old row)."""
    if not text.startswith("[{"):
        return text
    try:
        return tuple(Message.from_json(m) for m in json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError):  # not ours after all (ValueError: unknown code)
        return text


def render_stored(text: str, lang: str) -> str:
    said = load(text)
    return said if isinstance(said, str) else render(said, lang)


def render_stored_both(text: str, first: str) -> str:
    said = load(text)
    return said if isinstance(said, str) else render_both(said, first)
