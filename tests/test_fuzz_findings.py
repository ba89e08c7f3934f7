"""Regression tests for what the fuzzers (bench/fuzz) found; see bench/FUZZ.md."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from campusvpn.anyconnect import xmlauth
from campusvpn.fortinet import ppp
from campusvpn.fortinet.connection import PppConnection, ProtocolError, Terminated, Write
from campusvpn.platform.config import ConfigError, parse_config


def test_an_unknown_xml_encoding_is_an_xml_auth_error() -> None:
    with pytest.raises(xmlauth.XmlAuthError, match="not a well-formed"):
        xmlauth.parse(b'<?xml version="1.0" encoding="UTF-4"?><config-auth type="init"/>')


def test_frames_before_a_framing_error_in_the_same_read_still_count() -> None:
    conn = PppConnection(0.0, address="10.20.0.7", magic=0x12345678)
    conn.start(0.0)
    term = ppp.encode(ppp.PROTO_LCP, ppp.packet(5, 8, b"bye"))  # Terminate-Request
    garbage = struct.pack(">HHH", 10, 0x5051, 4) + b"abcd"
    events = conn.receive_data(term + garbage, 1.0)
    assert isinstance(events[0], Write) and events[1] == Terminated("bye", by_peer=True) and len(events) == 2
    conn = PppConnection(0.0, address="10.20.0.7", magic=0x12345678)
    conn.start(0.0)
    echo = ppp.encode(ppp.PROTO_LCP, ppp.packet(10, 1, b"\x00\x00\x00\x01"))  # an Echo-Reply, then garbage
    events = conn.receive_data(echo + garbage, 1.0)
    assert len(events) == 2 and isinstance(events[1], ProtocolError) and conn.closed


@pytest.mark.parametrize("text", ["a = " + "[" * 5000, "a = " + "{b = " * 5000])
def test_deeply_nested_toml_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "campusvpn.toml"
    with pytest.raises(ConfigError) as err:
        parse_config(text, path)
    assert err.value.problems == [f"{path}: not valid TOML: arrays or tables nested too deeply"]


@pytest.mark.parametrize("protocol", [ppp.PROTO_LCP, ppp.PROTO_IPCP, 0x8057])
def test_rejects_of_the_largest_frame_fit_a_frame(protocol: int) -> None:
    conn = PppConnection(0.0, address="10.20.0.7", magic=0x12345678)
    conn.start(0.0)
    mru = bytes((1, 4)) + (0xFFFF).to_bytes(2, "big")  # the client takes any size
    conn.receive_data(ppp.encode(ppp.PROTO_LCP, ppp.packet(1, 1, mru)), 0.0)
    conn.receive_data(ppp.encode(ppp.PROTO_LCP, ppp.packet(2, conn.lcp.ident, conn.lcp.sent or b"")), 0.0)
    assert conn.lcp.opened and conn.peer_mru == 0xFFFF
    biggest = ppp.encode(protocol, ppp.packet(99, 1, bytes(ppp.MAX_FRAME - ppp.HEADER - 2 - 4)))  # unknown code
    assert len(biggest) == ppp.MAX_FRAME
    writes = [e.data for e in conn.receive_data(biggest, 0.0) if isinstance(e, Write)]
    assert writes and all(int.from_bytes(w[:2], "big") <= ppp.MAX_FRAME for w in writes)


def test_a_duration_too_long_for_a_timedelta_is_a_config_error_with_its_place(tmp_path: Path) -> None:
    # Found by the config_loader target in CI: "99999999999999999999s" overflowed timedelta.
    from campusvpn.platform.config import ConfigError, parse_config

    path = tmp_path / "campusvpn.toml"
    with pytest.raises(ConfigError, match="longer than 100 years"):
        parse_config('[mfa]\nactivation_delay = "99999999999999999999s"\n', path)


def test_an_unknown_key_made_of_spaces_is_named_quoted_after_the_file(tmp_path: Path) -> None:
    # Found by the config_loader target in a CI rehearsal: the key `" ="` gave "FILE:  =: unknown setting",
    # its name lost among the separators.
    path = tmp_path / "campusvpn.toml"
    with pytest.raises(ConfigError) as caught:
        parse_config('" =".oo =3\n', path)
    assert caught.value.problems == [f'{path}: " =": unknown setting; ' + caught.value.problems[0].split("; ", 1)[1]]
