"""The external-browser hand-off of AnyConnect single sign-on: the one-time token sealed to the
client's key and carried by the browser to the client's own listener (openconnect >= 9).

The client sends an EC P-256 public key (`X-AnyConnect-STRAP-DH-Pubkey`, base64 DER) with its
sign-in; only it can open the token, so a browser that carries it, or a page that sees the URL,
learns nothing usable. ECDH with a fresh key, HKDF-SHA256 (no salt, info "AC_ECIES") to an
AES-256-GCM key, a 12-byte tag; laid out as typed, length-prefixed fields after `00 01`.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import struct
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:  # the library is imported at the first browser sign-in: a gateway worker starts without it
    from cryptography.hazmat.primitives.asymmetric import ec

LISTENER_ORIGIN = "http://localhost:29786"  # where openconnect 9 listens for the browser
LISTENER = LISTENER_ORIGIN + "/api/sso/"
FORTINET_LISTENER_ORIGIN = "http://127.0.0.1:8020"  # openfortivpn --saml-login's default listener
TAG_BYTES = 12
IV_BYTES = 12
_KEY, _TAG, _CIPHERTEXT, _IV = 1, 2, 3, 4


class BadClientKey(ValueError):
    """The client's key is not a P-256 public key in base64 DER."""


def new_token() -> str:
    """Letters and digits only: openconnect refuses anything else in a decrypted token."""
    return secrets.token_hex(24)


def client_key(header: str) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_der_public_key(base64.b64decode(header.strip(), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise BadClientKey("the client's key is not base64 DER") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadClientKey("the client's key is not an EC P-256 key")
    return key


def _aes_key(private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    shared = private.exchange(ec.ECDH(), public)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"AC_ECIES").derive(shared)


def _field(kind: int, value: bytes) -> bytes:
    return struct.pack(">HH", kind, len(value)) + value


def seal(client_key_header: str, token: str) -> str:
    """The token sealed to the client's key, base64 (as the listener URL carries it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    public = client_key(client_key_header)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    iv = os.urandom(IV_BYTES)
    enc = Cipher(algorithms.AES256(_aes_key(ephemeral, public)), modes.GCM(iv)).encryptor()
    ciphertext = enc.update(token.encode()) + enc.finalize()
    spki = ephemeral.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    blob = (
        b"\x00\x01"
        + _field(_KEY, spki)
        + _field(_TAG, enc.tag[:TAG_BYTES])
        + _field(_CIPHERTEXT, ciphertext)
        + _field(_IV, iv)
    )
    return base64.b64encode(blob).decode()


def open_sealed(private: ec.EllipticCurvePrivateKey, sealed: str) -> str:
    """What the client does (tests check `seal` against it; real clients are tested end to end)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    blob = base64.b64decode(sealed)
    if blob[:2] != b"\x00\x01":
        raise ValueError("unknown version")
    fields: dict[int, bytes] = {}
    at = 2
    while at + 4 <= len(blob):
        kind, size = struct.unpack(">HH", blob[at : at + 4])
        fields[kind] = blob[at + 4 : at + 4 + size]
        at += 4 + size
    peer = serialization.load_der_public_key(fields[_KEY])
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    # GCM checks a truncated tag when told its length.
    dec = Cipher(
        algorithms.AES256(_aes_key(private, peer)), modes.GCM(fields[_IV], fields[_TAG], min_tag_length=TAG_BYTES)
    ).decryptor()
    return (dec.update(fields[_CIPHERTEXT]) + dec.finalize()).decode()


def fortinet_listener_url(token: str) -> str:
    """openfortivpn --saml-login: the listener takes the id and fetches `/remote/saml/auth_id?id=` itself."""
    return f"{FORTINET_LISTENER_ORIGIN}/?id={token}"


def listener_url(sealed: str, final_url: str) -> str:
    """Where the browser goes next: the client's listener, which then sends it on to `final_url`."""
    return LISTENER + quote(sealed, safe="") + "?return=" + quote(final_url, safe="")
