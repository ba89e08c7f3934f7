"""A real SAML 2.0 identity provider for the tests: pysaml2's own IdP (saml2.server.Server) with
signing keys and metadata made at test time, served over HTTPS on a free loopback port:
/metadata, and /sso (HTTP-Redirect binding) which answers the AuthnRequest with the HTTP-POST
binding's page, as an identity provider does after its user signed in. `mode` makes it misbehave
the way the tests need (unsigned, expired, another audience, an answer to another request)."""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from campusvpn.cli.setup import write_self_signed

warnings.filterwarnings("ignore", message=".*CFB has been moved.*")
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT  # noqa: E402
from saml2.config import IdPConfig  # noqa: E402
from saml2.metadata import create_metadata_string  # noqa: E402
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID  # noqa: E402
from saml2.server import Server  # noqa: E402

PASSWORD_CONTEXT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
MFA_CONTEXT = "https://refeds.org/profile/mfa"
ACCOUNTS: dict[str, dict[str, list[str]]] = {
    "hanako": {"uid": ["1234567890"], "displayName": ["Hanako Yamada"], "eduPersonAffiliation": ["staff"]},
    "taro": {"uid": ["2234567890@example.ac.jp"], "displayName": ["Taro Suzuki"], "eduPersonAffiliation": ["student"]},
    "outsider": {"uid": ["not-a-student-number"], "displayName": ["Someone Else"]},
}


def write_rsa_signing_pair(cert_path: Path, key_path: Path) -> None:
    """The IdP's signing key: RSA, as SAML deployments (and pysaml2's default RSA-SHA256) use."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "campusvpn test IdP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class SamlIdp:
    folder: Path
    port: int = 0
    mode: str = "ok"  # ok | unsigned | expired | audience | foreign
    login: str = "hanako"
    authn_context: str = PASSWORD_CONTEXT
    answers: list[str] = field(default_factory=list)  # every SAMLResponse sent, base64
    sp_metadata: str | None = None
    _httpd: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def entity_id(self) -> str:
        return self.base + "/metadata"

    @property
    def ca_file(self) -> Path:
        return self.folder / "tls-cert.pem"

    @property
    def metadata_file(self) -> Path:
        return self.folder / "idp-metadata.xml"

    def config(self, lifetime_minutes: int = 5) -> IdPConfig:
        conf: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "key_file": str(self.folder / "sign-key.pem"),
            "cert_file": str(self.folder / "sign-cert.pem"),
            "service": {
                "idp": {
                    "endpoints": {"single_sign_on_service": [(self.base + "/sso", BINDING_HTTP_REDIRECT)]},
                    "policy": {"default": {"lifetime": {"minutes": lifetime_minutes}, "attribute_restrictions": None}},
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                }
            },
        }
        if self.sp_metadata:
            conf["metadata"] = {"inline": [self.sp_metadata]}
        config = IdPConfig()
        config.load(conf)
        return config

    def answer(self, saml_request: str) -> tuple[str, str]:
        """The HTTP-POST answer (destination, base64 SAMLResponse) to an AuthnRequest."""
        server = Server(config=self.config(lifetime_minutes=-10 if self.mode == "expired" else 5))
        request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message
        sp_entity_id = str(request.issuer.text)
        destination = str(request.assertion_consumer_service_url)
        identity = ACCOUNTS[self.login]
        response = server.create_authn_response(
            identity,
            in_response_to="id-from-another-browser" if self.mode == "foreign" else request.id,
            destination=destination,
            sp_entity_id="https://another.example.ac.jp/sp" if self.mode == "audience" else sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=f"persistent-{self.login}"),
            authn={"class_ref": self.authn_context, "authn_auth": self.entity_id},
            sign_assertion=self.mode != "unsigned",
            sign_response=self.mode == "unsigned",  # a signed response around an unsigned assertion
        )
        info = server.apply_binding(BINDING_HTTP_POST, str(response), destination, relay_state="", response=True)
        body = info["data"]
        found = re.search(r'name="SAMLResponse" value="([^"]+)"', body)
        assert found, body[:500]
        encoded = html.unescape(found.group(1))
        self.answers.append(encoded)
        return destination, encoded

    def start(self) -> None:
        write_self_signed(self.folder / "tls-cert.pem", self.folder / "tls-key.pem", "localhost")
        write_rsa_signing_pair(self.folder / "sign-cert.pem", self.folder / "sign-key.pem")
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/metadata":
                    self._send(200, idp.metadata_file.read_bytes(), "application/samlmetadata+xml")
                elif url.path == "/sso":
                    request = parse_qs(url.query).get("SAMLRequest", [""])[0]
                    destination, encoded = idp.answer(request)
                    page = (
                        f'<html><body><form method="post" action="{html.escape(destination)}">'
                        f'<input type="hidden" name="SAMLResponse" value="{html.escape(encoded)}">'
                        '<input type="hidden" name="RelayState" value="">'
                        '<button type="submit">Continue</button></form>'
                        "<script>document.forms[0].submit()</script></body></html>"
                    )
                    self._send(200, page.encode(), "text/html")
                else:
                    self._send(404, b"not here", "text/plain")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.folder / "tls-cert.pem", self.folder / "tls-key.pem")
        self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.metadata_file.write_bytes(create_metadata_string(None, config=self.config()))
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def trust(self, sp_metadata: str) -> None:
        """The service provider's metadata, as the IdP's operators load it."""
        self.sp_metadata = sp_metadata

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@contextmanager
def running_idp(folder: Path) -> Iterator[SamlIdp]:
    if shutil.which("xmlsec1") is None:
        raise RuntimeError("the SAML tests need the xmlsec1 program (Debian xmlsec1; scripts/test installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    idp = SamlIdp(folder)
    idp.start()
    try:
        yield idp
    finally:
        idp.stop()
