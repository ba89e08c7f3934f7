"""The XML "aggregate auth" documents of the AnyConnect protocol, parsed and built (sans-IO)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

MAX_BODY = 64 * 1024
MAX_FIELD = 1024


class XmlAuthError(Exception):
    """The request is not an aggregate-auth document we can use."""


@dataclass(frozen=True)
class AuthRequest:
    kind: str  # init | auth-reply | logout
    fields: dict[str, str] = field(default_factory=dict)  # children of <auth>
    group_select: str | None = None
    group_access: str | None = None
    handle: str | None = None  # our <opaque><auth-handle>, echoed by the client
    session_token: str | None = None  # logout
    device_id: str | None = None
    version: str | None = None
    # What the client can do, from <capabilities><auth-method>: single-sign-on-v2, ...-external-browser.
    capabilities: tuple[str, ...] = ()


def parse_form(body: bytes) -> AuthRequest:
    """A form posted as `application/x-www-form-urlencoded` (openconnect --no-xmlpost, older clients):
    the fields of the form we sent, the auth handle in the `webvpncontext` cookie."""
    if len(body) > MAX_BODY:
        raise XmlAuthError(f"request body over {MAX_BODY} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise XmlAuthError(f"not a readable form: {exc}") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if len(value) > MAX_FIELD or len(name) > 64:
            raise XmlAuthError(f"form field {name[:64]!r} too long")
        fields.setdefault(name, value.strip())
    return AuthRequest(kind="auth-reply", fields=fields, group_select=fields.get("group_list") or None)


def parse(body: bytes) -> AuthRequest:
    if len(body) > MAX_BODY:
        raise XmlAuthError(f"request body over {MAX_BODY} bytes")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError) as exc:  # LookupError: an unknown encoding
        raise XmlAuthError(f"not a well-formed XML document: {exc}") from exc
    if root.tag != "config-auth":
        raise XmlAuthError(f"expected <config-auth>, got <{root.tag}>")
    kind = root.get("type") or ""
    if kind not in ("init", "auth-reply", "logout"):
        raise XmlAuthError(f"unsupported config-auth type {kind!r}")

    def text(el: ET.Element | None) -> str | None:
        if el is None or el.text is None:
            return None
        value = el.text.strip()
        if len(value) > MAX_FIELD:
            raise XmlAuthError(f"<{el.tag}> longer than {MAX_FIELD} characters")
        return value

    fields: dict[str, str] = {}
    auth = root.find("auth")
    if auth is not None:
        for child in auth:
            value = text(child)
            if value is not None and len(fields) < 32:
                fields[child.tag] = value
    return AuthRequest(
        kind=kind,
        fields=fields,
        group_select=text(root.find("group-select")),
        group_access=text(root.find("group-access")),
        handle=text(root.find("opaque/auth-handle")),
        session_token=text(root.find("session-token")),
        device_id=text(root.find("device-id")),
        version=text(root.find("version")),
        capabilities=tuple(t for el in root.findall("capabilities/auth-method") if (t := text(el))),
    )


@dataclass(frozen=True)
class Input:
    type: str  # text | password | hidden
    name: str
    label: str = ""
    value: str | None = None


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    selected: bool = False


def _doc(kind: str) -> ET.Element:
    root = ET.Element("config-auth", {"client": "vpn", "type": kind, "aggregate-auth-version": "2"})
    ET.SubElement(root, "version", {"who": "sg"}).text = "campusvpn"
    return root


def _bytes(root: ET.Element) -> bytes:
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def auth_form(
    *,
    handle: str,
    title: str,
    message: str,
    inputs: list[Input],
    error: str | None = None,
    banner: str | None = None,
    groups: list[Choice] | None = None,
    group_label: str = "",
    form_id: str = "main",
) -> bytes:
    """An `auth-request`: a form to fill, optionally with the error of the previous attempt.
    With no inputs it ends the login: openconnect prints the error and stops."""
    root = _doc("auth-request")
    opaque = ET.SubElement(root, "opaque", {"is-for": "sg"})
    ET.SubElement(opaque, "auth-handle").text = handle
    auth = ET.SubElement(root, "auth", {"id": form_id})
    ET.SubElement(auth, "title").text = title
    if banner:
        ET.SubElement(auth, "banner").text = banner
    ET.SubElement(auth, "message").text = message
    if error:
        # openconnect prints "Login failed: <param1>"; other clients show the text.
        ET.SubElement(auth, "error", {"id": "88", "param1": error, "param2": ""}).text = "Login failed: %s"
    if inputs or groups:
        form = ET.SubElement(auth, "form", {"method": "post", "action": "/"})
        for i in inputs:
            attrs = {"type": i.type, "name": i.name, "label": i.label}
            if i.value is not None:
                attrs["value"] = i.value
            ET.SubElement(form, "input", attrs)
        if groups:
            select = ET.SubElement(form, "select", {"name": "group_list", "label": group_label})
            for g in groups:
                opt = ET.SubElement(
                    select, "option", {"value": g.value, **({"selected": "true"} if g.selected else {})}
                )
                opt.text = g.label
    return _bytes(root)


@dataclass(frozen=True)
class SsoLinks:
    login: str  # the page the client opens in a browser
    final: str  # where the browser ends up when done
    token_cookie: str
    error_cookie: str
    external: bool  # the client's own listener receives the token (it advertised the capability)


def sso_form(*, handle: str, title: str, message: str, links: SsoLinks, error: str | None = None) -> bytes:
    """An `auth-request` that sends the client to the browser (aggregate-auth single sign-on v2)."""
    root = _doc("auth-request")
    opaque = ET.SubElement(root, "opaque", {"is-for": "sg"})
    ET.SubElement(opaque, "auth-handle").text = handle
    auth = ET.SubElement(root, "auth", {"id": "main"})
    ET.SubElement(auth, "title").text = title
    ET.SubElement(auth, "message").text = message
    if error:
        ET.SubElement(auth, "error", {"id": "88", "param1": error, "param2": ""}).text = "Login failed: %s"
    ET.SubElement(auth, "sso-v2-login").text = links.login
    ET.SubElement(auth, "sso-v2-login-final").text = links.final
    ET.SubElement(auth, "sso-v2-token-cookie-name").text = links.token_cookie
    ET.SubElement(auth, "sso-v2-error-cookie-name").text = links.error_cookie
    if links.external:
        ET.SubElement(auth, "sso-v2-browser-mode").text = "external"
    form = ET.SubElement(auth, "form", {"method": "post", "action": "/"})
    ET.SubElement(form, "input", {"type": "sso", "name": "sso-token"})
    return _bytes(root)


def complete(*, token: str, session_id: str, banner: str, message: str, cert_sha1_hex: str) -> bytes:
    root = _doc("complete")
    ET.SubElement(root, "session-id").text = session_id
    ET.SubElement(root, "session-token").text = token
    auth = ET.SubElement(root, "auth", {"id": "success"})
    if banner:
        ET.SubElement(auth, "banner").text = banner
    ET.SubElement(auth, "message", {"id": "0", "param1": "", "param2": ""}).text = message
    config = ET.SubElement(root, "config", {"client": "vpn", "type": "private"})
    base = ET.SubElement(config, "vpn-base-config")
    ET.SubElement(base, "server-cert-hash").text = cert_sha1_hex.upper()
    ET.SubElement(config, "opaque", {"is-for": "vpn-client"})
    return _bytes(root)


def logout_ok(message: str) -> bytes:
    root = _doc("complete")
    ET.SubElement(ET.SubElement(root, "auth", {"id": "success"}), "message").text = message
    return _bytes(root)
