"""The key of the identity links' keyed hash (HMAC-SHA256 of issuer and subject).

Its own file, apart from the secret-box keys: those rotate, and a rotated link key would orphan
every stored link (a hash cannot be rewrapped). Created by `campusvpn init`, or at first use
when missing; readable by the owner only. Its bytes are never logged."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from pathlib import Path

_SIZE = 32


class LinkKeyError(Exception):
    pass


def generate(path: Path) -> None:
    """A new key file (0600); an existing one is left as it is (two processes may race at first use)."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# campusvpn identity-link key: never rotate or lose it (linked identities are hashed with it).\n")
            f.write(base64.b64encode(os.urandom(_SIZE)).decode() + "\n")


def load(path: Path) -> bytes:
    """The key, the file created first when missing."""
    if not path.exists():
        try:
            generate(path)
        except OSError as exc:
            raise LinkKeyError(f"{path}: cannot create the identity-link key file: {exc.strerror}") from exc
    try:
        lines = [x.strip() for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]
    except OSError as exc:
        raise LinkKeyError(f"{path}: cannot read the identity-link key file: {exc.strerror}") from exc
    try:
        key = base64.b64decode(lines[0], validate=True) if len(lines) == 1 else b""
    except ValueError:
        key = b""
    if len(key) != _SIZE:
        raise LinkKeyError(f"{path}: expected one line with the base64 of a {_SIZE}-byte key")
    return key


def digest(key: bytes, issuer: str, subject: str) -> str:
    """The stored form of a verified identity: HMAC-SHA256(key, issuer + "\\n" + subject), hex."""
    return hmac.new(key, f"{issuer}\n{subject}".encode(), hashlib.sha256).hexdigest()
