"""RFC 6238 vectors, drift window, replay rejection and provisioning URIs."""

import base64
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from campusvpn.core import totp
from campusvpn.core.totp import TotpParams

SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890" * 6 + b"1234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("t", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_appendix_b_vectors(t: int, sha1: str, sha256: str, sha512: str) -> None:
    at = datetime.fromtimestamp(t, UTC)
    for alg, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        secret = base64.b32encode(SEEDS[alg]).decode()
        params = TotpParams(digits=8, algorithm=alg)
        assert totp.code_at(secret, at, params) == expected
        assert totp.verify(secret, expected, at, params, last_step=None).ok


P = TotpParams()
SECRET = totp.new_secret()
NOW = datetime(2026, 10, 1, 12, 0, 0, tzinfo=UTC)


def test_secret_is_160_bits_base32_without_padding() -> None:
    s = totp.new_secret()
    assert len(base64.b32decode(s + "=" * (-len(s) % 8))) == 20
    assert "=" not in s


@pytest.mark.parametrize("offset", [-30, 0, 30])
def test_one_step_of_drift_either_way_is_accepted(offset: int) -> None:
    code = totp.code_at(SECRET, datetime.fromtimestamp(NOW.timestamp() + offset, UTC), P)
    assert totp.verify(SECRET, code, NOW, P, None).ok


@pytest.mark.parametrize("offset", [-90, 90])
def test_two_steps_of_drift_are_refused(offset: int) -> None:
    code = totp.code_at(SECRET, datetime.fromtimestamp(NOW.timestamp() + offset, UTC), P)
    assert not totp.verify(SECRET, code, NOW, P, None).ok


def test_a_code_is_accepted_once_then_reported_as_replay() -> None:
    code = totp.code_at(SECRET, NOW, P)
    first = totp.verify(SECRET, code, NOW, P, None)
    assert first.ok
    again = totp.verify(SECRET, code, NOW, P, first.step)
    assert not again.ok
    assert again.replayed


def test_an_older_code_after_a_newer_one_is_a_replay() -> None:
    newer = totp.verify(SECRET, totp.code_at(SECRET, NOW, P), NOW, P, None)
    older = totp.code_at(SECRET, datetime.fromtimestamp(NOW.timestamp() - 30, UTC), P)
    assert totp.verify(SECRET, older, NOW, P, newer.step).replayed


@pytest.mark.parametrize("junk", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes_are_refused(junk: str) -> None:
    assert not totp.verify(SECRET, junk, NOW, P, None).ok


def test_spaces_inside_a_code_are_ignored() -> None:
    code = totp.code_at(SECRET, NOW, P)
    assert totp.verify(SECRET, f"{code[:3]} {code[3:]}", NOW, P, None).ok


def test_provisioning_uri_has_issuer_label_and_rfc3986_encoding() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "Campus VPN", "1234567890", P)
    assert uri.startswith("otpauth://totp/Campus%20VPN:1234567890?")
    assert "+" not in uri
    q = parse_qs(urlparse(uri).query)
    assert q == {"secret": ["JBSWY3DPEHPK3PXP"], "issuer": ["Campus VPN"]}
    assert unquote(urlparse(uri).path) == "/Campus VPN:1234567890"
