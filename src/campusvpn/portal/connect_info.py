"""What a user needs to connect: server address, certificate pin, client profile, command line."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from campusvpn.service import account_views
from campusvpn.service.context import Context


@lru_cache(maxsize=4)
def certificate_pin(cert_path: str) -> str:
    """`pin-sha256:…` of the certificate's public key, as openconnect's --servercert takes it."""
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return ""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


@lru_cache(maxsize=4)
def self_signed(cert_path: str) -> bool:
    """Whether the certificate signed itself (`campusvpn init`'s default), so no client trusts it
    until someone checks its pin or fingerprint by hand."""
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        cert.verify_directly_issued_by(cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


@lru_cache(maxsize=4)
def certificate_fingerprint(cert_path: str) -> str:
    """The certificate's SHA-256 fingerprint as certificate viewers show it (FortiClient's warning
    offers one), colon-separated hex."""
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return ""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def server_port(ctx: Context) -> str:
    return ctx.config.gateway.listen.rpartition(":")[2]


def server_url(ctx: Context) -> str:
    port = server_port(ctx)
    host = ctx.config.gateway.hostname
    return f"https://{host}/" if port == "443" else f"https://{host}:{port}/"


def profiles_for(ctx: Context, username: str) -> list[tuple[str, str]]:
    """(name, label) of the connection profiles this user's role may use."""
    role = account_views.role_of(ctx, username)
    return [(p.name, p.label or p.name) for p in ctx.config.vpn.profiles if not p.roles or role in p.roles]


def for_user(ctx: Context, username: str) -> dict[str, object]:
    cert = str(ctx.config.path(ctx.config.tls.certificate))
    pin = certificate_pin(cert)
    url = server_url(ctx)
    profiles = profiles_for(ctx, username)
    cmd = ["sudo openconnect", f"--user={username}"]
    if pin:
        cmd.append(f"--servercert={pin}")
    if profiles:
        cmd.append(f"--authgroup={profiles[0][0]}")
    cmd.append(url)
    # The FortiGate protocol names the profile (its "realm") in the URL's path, not with --authgroup.
    realm = profiles[0][0] if profiles else ""
    forti = ["sudo openconnect", "--protocol=fortinet", f"--user={username}"]
    if pin:
        forti.append(f"--servercert={pin}")
    forti.append(url + realm)
    return {
        "url": url,
        "host": ctx.config.gateway.hostname,
        "port": server_port(ctx),
        "pin": pin,
        "fingerprint": certificate_fingerprint(cert),
        "self_signed": self_signed(cert),
        "software_url": ctx.config.portal.software_url,
        "trust_days": ctx.config.trusted_devices.lifetime.days,
        "command": " ".join(cmd),
        "fortinet_command": " ".join(forti),
        "realm": realm,
        "profiles": profiles,
    }


SELF_SIGNED_NOTE = (
    " The server's certificate is self-signed: Cisco Secure Client refuses it with this profile"
    " (StrictCertificateTrust). Connect with openconnect and the certificate pin shown on the portal's"
    " Get connected page, or ask the IT staff for a certificate from a certificate authority. "
)


def anyconnect_profile(ctx: Context, username: str) -> bytes:
    """An AnyConnect / Cisco Secure Client XML profile with one entry per usable profile."""
    ns = "http://schemas.xmlsoap.org/encoding/"
    root = ET.Element("AnyConnectProfile", {"xmlns": ns})
    init = ET.SubElement(root, "ClientInitialization")
    # Strict trust stays on even with a self-signed certificate: a profile that lets the user accept
    # an unknown certificate teaches clicking through the one warning that stops a fake server, and
    # Cisco Secure Client has no pin to check instead. The "Get connected" page says so and offers
    # openconnect with the pin (and FortiClient with the fingerprint) until the IT staff install a
    # certificate from a certificate authority; the file itself carries the same note.
    if self_signed(str(ctx.config.path(ctx.config.tls.certificate))):
        root.insert(0, ET.Comment(SELF_SIGNED_NOTE))
    for tag, value in (("UseStartBeforeLogon", "false"), ("StrictCertificateTrust", "true"), ("AutoUpdate", "false")):
        ET.SubElement(init, tag, {"UserControllable": "false"}).text = value
    servers = ET.SubElement(root, "ServerList")
    host = server_url(ctx).removeprefix("https://").rstrip("/")
    entries = profiles_for(ctx, username) or [("", ctx.config.service.name)]
    for name, label in entries:
        entry = ET.SubElement(servers, "HostEntry")
        ET.SubElement(entry, "HostName").text = label
        ET.SubElement(entry, "HostAddress").text = host
        if name:
            ET.SubElement(entry, "UserGroup").text = name
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")).encode()
