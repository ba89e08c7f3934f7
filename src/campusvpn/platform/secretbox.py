"""Encryption of secrets at rest (TOTP seeds) with keys kept outside the database.

AES-256-GCM; every ciphertext names the key that made it, so keys can be rotated: new
secrets use the first key in the key file, old ones still open with the key they name.
The associated data binds a ciphertext to its owner, so a seed copied into another
user's row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

_VERSION = b"\x01"
_NONCE = 12


class SecretBoxError(Exception):
    pass


class SecretBox:
    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise SecretBoxError(f"current key {current!r} is not in the key set")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise SecretBoxError(f"key {key_id!r} must be 32 bytes, not {len(key)}")
            if not key_id.isalnum() or len(key_id) > 16:
                raise SecretBoxError(f"key id {key_id!r} must be 1-16 letters or digits")
        self._keys = dict(keys)
        self._current = current

    @property
    def current_key_id(self) -> str:
        return self._current

    # cryptography (7 MB) is imported at the first seal or open: an idle gateway worker has none to do.
    def seal(self, plaintext: bytes, context: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key_id = self._current.encode()
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._keys[self._current]).encrypt(nonce, plaintext, _aad(key_id, context))
        return _VERSION + bytes([len(key_id)]) + key_id + nonce + sealed

    def open(self, blob: bytes, context: str) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(blob) < 2 or blob[:1] != _VERSION:
            raise SecretBoxError("unknown ciphertext format")
        n = blob[1]
        key_id = blob[2 : 2 + n]
        key = self._keys.get(key_id.decode(errors="replace"))
        if key is None:
            raise SecretBoxError(f"ciphertext uses key {key_id.decode(errors='replace')!r}, not in key file")
        nonce = blob[2 + n : 2 + n + _NONCE]
        try:
            return AESGCM(key).decrypt(nonce, blob[2 + n + _NONCE :], _aad(key_id, context))
        except InvalidTag as exc:
            raise SecretBoxError("ciphertext does not open: wrong key or wrong owner") from exc

    def key_id_of(self, blob: bytes) -> str:
        return blob[2 : 2 + blob[1]].decode(errors="replace")


def _aad(key_id: bytes, context: str) -> bytes:
    return b"campusvpn|" + key_id + b"|" + context.encode()


def generate_key_file(path: Path) -> None:
    """A new key file, readable by the owner only: one `id:base64key` line per key, current first."""
    key_id = "k" + secrets.token_hex(4)
    line = f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# campusvpn secret keys: keep this file out of backups of the database.\n")
        f.write("# The first key encrypts new secrets; keep old keys until `campusvpn keys rewrap` ran.\n")
        f.write(line)


def add_key(path: Path) -> str:
    """Prepend a new current key (rotation); older keys stay for decryption."""
    key_id = "k" + secrets.token_hex(4)
    lines = path.read_text().splitlines(keepends=True)
    comments = [x for x in lines if x.startswith("#")]
    keys = [x for x in lines if x.strip() and not x.startswith("#")]
    new = f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}\n"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines([*comments, new, *keys])
    tmp.replace(path)
    return key_id


def load_key_file(path: Path) -> SecretBox:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SecretBoxError(f"{path}: cannot read key file: {exc.strerror}") from exc
    keys: dict[str, bytes] = {}
    current = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, b64 = line.partition(":")
        try:
            key = base64.b64decode(b64, validate=True) if sep else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            raise SecretBoxError(f"{path}:{lineno}: expected `id:base64` of a 32-byte key")
        keys[key_id] = key
        current = current or key_id
    if not keys:
        raise SecretBoxError(f"{path}: no key in key file")
    return SecretBox(keys, current)
