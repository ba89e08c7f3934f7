"""The gateway's sans-IO protocol pieces, without a network."""

from __future__ import annotations

import pytest

from campusvpn.anyconnect import cstp, xmlauth
from campusvpn.anyconnect.connect_answer import Timers, connected_response, refused_response
from campusvpn.anyconnect.cstp import FrameType
from campusvpn.platform.config_schema import VpnSettings

# --- CSTP ---------------------------------------------------------------------------------


def test_a_frame_never_exceeds_one_tls_record() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        cstp.encode(FrameType.DATA, b"x" * (cstp.MAX_PAYLOAD + 1))
    assert len(cstp.encode(FrameType.DATA, b"x" * cstp.MAX_PAYLOAD)) == 16384


# --- XML ----------------------------------------------------------------------------------

INIT = b"""<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="init" aggregate-auth-version="2">
<version who="vpn">v9.01-3</version><device-id>linux-64</device-id>
<group-access>https://vpn.example/d/tok123</group-access><group-select>staff</group-select></config-auth>"""

REPLY = b"""<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2">
<opaque is-for="sg"><auth-handle>H1</auth-handle></opaque>
<auth><username>1234567890</username><password>pw &amp; more</password></auth></config-auth>"""


def test_init_and_reply_are_parsed() -> None:
    init = xmlauth.parse(INIT)
    assert (init.kind, init.group_select, init.device_id) == ("init", "staff", "linux-64")
    assert init.group_access == "https://vpn.example/d/tok123"
    reply = xmlauth.parse(REPLY)
    assert reply.handle == "H1"
    assert reply.fields == {"username": "1234567890", "password": "pw & more"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<config-auth type='init'",
        b"<other/>",
        b"<config-auth type='evil'/>",
        b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY b 'c'>]><config-auth type='init'>&b;</config-auth>",
        b"<config-auth type='init'>" + b"x" * (70 * 1024) + b"</config-auth>",
        b"<config-auth type='auth-reply'><auth><password>" + b"p" * 2000 + b"</password></auth></config-auth>",
    ],
)
def test_bad_xml_is_a_clean_error(body: bytes) -> None:
    with pytest.raises(xmlauth.XmlAuthError):
        xmlauth.parse(body)


def test_code_form_uses_the_field_openconnect_fills_with_totp() -> None:
    body = xmlauth.auth_form(
        handle="H",
        title="T",
        message="m",
        inputs=[xmlauth.Input("password", "secondary_password", "Verification code:")],
        error="That code is not right",
    )
    doc = xmlauth.SafeET.fromstring(body)
    assert doc.get("type") == "auth-request" and doc.find("opaque/auth-handle").text == "H"
    assert doc.find("auth").get("id") == "main"
    assert doc.find("auth/form/input").get("name") == "secondary_password"
    assert doc.find("auth/error").get("param1") == "That code is not right"


def test_a_form_without_inputs_ends_the_login_with_the_error() -> None:
    doc = xmlauth.SafeET.fromstring(xmlauth.auth_form(handle="H", title="T", message="m", inputs=[], error="No."))
    assert doc.find("auth/form") is None and doc.find("auth/error").get("param1") == "No."


def test_complete_carries_the_token_and_certificate_hash() -> None:
    doc = xmlauth.SafeET.fromstring(
        xmlauth.complete(token="TOK", session_id="S", banner="B", message="M", cert_sha1_hex="ab")
    )
    assert doc.get("type") == "complete" and doc.find("session-token").text == "TOK"
    assert doc.find("auth").get("id") == "success"
    assert doc.find("config/vpn-base-config/server-cert-hash").text == "AB"


# --- CONNECT response ---------------------------------------------------------------------

TIMERS = Timers(dpd=30, keepalive=20, idle_timeout=1800, session_remaining=3600, disconnected_timeout=300)


def _headers(raw: bytes) -> list[tuple[str, str]]:
    head = raw.decode().split("\r\n\r\n")[0].split("\r\n")
    assert head[0] == "HTTP/1.1 200 CONNECTED"
    return [tuple(x.split(": ", 1)) for x in head[1:]]  # type: ignore[misc]


def test_connect_response_spells_headers_exactly_and_pushes_every_setting() -> None:
    settings = VpnSettings(
        dns=["10.0.0.53"],
        wins=["10.0.0.54"],
        domain="campus.test",
        split_include=["10.0.0.0/8"],
        split_exclude=["10.9.0.0/16"],
        proxy_pac="http://p/x.pac",
        banner="Hello\nworld ä",
    )
    h = _headers(connected_response(settings, "172.31.0.2", TIMERS))
    d = dict(h)
    assert d["X-CSTP-Address"] == "172.31.0.2" and d["X-CSTP-Netmask"] == "255.255.255.255"
    assert d["X-CSTP-MSIE-Proxy-PAC-URL"] == "http://p/x.pac"  # this exact case, or openconnect ignores it
    assert ("X-CSTP-Split-Include", "10.0.0.0/255.0.0.0") in h
    assert [v for k, v in h if k == "X-CSTP-Split-Exclude"] == ["0.0.0.0/255.255.255.255", "10.9.0.0/255.255.0.0"]
    assert d["X-CSTP-Banner"] == "Hello%0Aworld %C3%A4"
    assert d["X-CSTP-MTU"] == "1472" and d["X-CSTP-DPD"] == "30"  # TLS only: the larger MTU
    assert not [k for k, _ in h if k.startswith("X-DTLS")]


def test_full_tunnel_has_no_split_include_and_local_lan_can_be_off() -> None:
    settings = VpnSettings(full_tunnel=True, allow_local_lan=False, split_include=["10.0.0.0/8"])
    h = _headers(connected_response(settings, "172.31.0.2", TIMERS))
    assert not [k for k, _ in h if k.startswith("X-CSTP-Split-")]
    assert dict(h)["X-CSTP-Tunnel-All-DNS"] == "true"


def test_header_injection_is_impossible() -> None:
    raw = refused_response(503, "Service Unavailable", "line one\r\nX-Evil: 1")
    assert b"\r\nX-Evil" not in raw
    assert b"X-Reason: line one  X-Evil: 1\r\n" in raw
