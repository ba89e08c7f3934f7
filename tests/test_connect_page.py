"""The portal's "Get connected" page: the FortiClient steps and the openconnect --protocol=fortinet
command line, in English and Japanese, from the gateway's own settings and certificate."""

from __future__ import annotations

import html
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from tests.conftest import add_user, make_config
from tests.test_portal import USER, client, sign_in

from campusvpn.cli.setup import write_self_signed
from campusvpn.platform.clock import FixedClock
from campusvpn.service.context import Context, open_context

PROFILES = """
[gateway]
listen = "0.0.0.0:10443"
hostname = "vpn.test.ac.jp"

[service]
helpdesk = "the help desk (ext. 1234)"

[[vpn.profiles]]
name = "staff"
roles = ["staff"]

[[vpn.profiles]]
name = "students"
roles = ["student"]
"""


def _ctx(tmp_path: Path, clock: FixedClock, extra: str = "") -> Context:
    ctx = open_context(make_config(tmp_path, '[portal]\ndefault_language = "en"\n' + extra), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "vpn.test.ac.jp")
    add_user(ctx, USER)
    return ctx


def _fingerprint(ctx: Context) -> str:
    cert = x509.load_pem_x509_certificate(ctx.config.path("tls/cert.pem").read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _code(page: str, element: str) -> str:
    found = re.search(rf'<code id="{element}"[^>]*>([^<]*)</code>', page)
    assert found, page
    return html.unescape(found.group(1))


def test_forticlient_steps_and_fortinet_command(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock, PROFILES)
    c = client(ctx)
    sign_in(c)
    page = c.get("/connect").text
    pin = re.search(r"pin-sha256:[A-Za-z0-9+/=]+", page)
    assert pin
    assert 'class="info"' not in page and "{&#39;url&#39;" not in page  # no dictionary in a status banner
    # The profile goes in the URL's path (FortiGate's realm); the port is the gateway's own.
    assert _code(page, "fortinet-command") == (
        f"sudo openconnect --protocol=fortinet --user={USER} --servercert={pin.group(0)} "
        "https://vpn.test.ac.jp:10443/staff"
    )
    start = page.index('<ol id="forticlient-steps">')
    steps = html.unescape(page[start : page.index("</ol>", start)])
    assert "“SSL-VPN”" in steps
    assert "Remote Gateway: vpn.test.ac.jp. Port: 10443" in steps
    assert "Realm (the connection group), where FortiClient asks for one: staff." in steps
    assert f"SHA-256 fingerprint is {_fingerprint(ctx)}." in steps and "contact the help desk (ext. 1234)" in steps
    assert "AnyConnect" in page and "--authgroup=staff" in _code(page, "openconnect-command")  # still there

    c.cookies.set("lang", "ja")
    ja = html.unescape(c.get("/connect", headers={"Accept-Language": "ja"}).text)
    assert "リモートゲートウェイ（Remote Gateway）：vpn.test.ac.jp。ポート：10443" in ja
    assert f"{_fingerprint(ctx)} と一致するときだけ続行" in ja
    assert "--protocol=fortinet" in ja


def test_without_profiles_and_on_port_443_the_url_is_the_bare_server(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock, '[gateway]\nhostname = "vpn.test.ac.jp"\n')
    c = client(ctx)
    sign_in(c)
    page = c.get("/connect").text
    pin = re.search(r"pin-sha256:[A-Za-z0-9+/=]+", page)
    assert pin
    assert _code(page, "fortinet-command").endswith(f"--servercert={pin.group(0)} https://vpn.test.ac.jp/")
    assert "Realm" not in page and "Port: 443 " in html.unescape(page)


def test_the_second_password_field_is_explained_as_the_gateway_reads_it(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock, PROFILES)
    c = client(ctx)
    sign_in(c)
    page = c.get("/connect").text
    listed = page[page.index('<ul id="second-password">') : page.index("</ul>", page.index("second-password"))]
    # What to type is shown as code, never as literal backticks.
    assert "`" not in page
    for typed in ("sms", "call", "trust", "123456 trust"):
        assert f"<code>{typed}</code>" in listed, typed
    assert f"for {ctx.config.trusted_devices.lifetime.days} days" in listed and "recovery codes" in listed
    # The words are the ones the gateway's code field understands.
    from campusvpn.signin.typed_answer import SEND_WORDS, TRUST_WORDS

    assert {"sms", "call"} <= set(SEND_WORDS) and "trust" in TRUST_WORDS


def test_the_profile_folders_and_the_mobile_apps(tmp_path: Path, clock: FixedClock) -> None:
    ctx = _ctx(tmp_path, clock, PROFILES)
    c = client(ctx)
    sign_in(c)
    raw = c.get("/connect").text
    page = html.unescape(raw)
    assert _code(raw, "profile-folder-windows") == r"C:\ProgramData\Cisco\Cisco Secure Client\VPN\Profile"
    assert _code(raw, "profile-folder-macos") == "/opt/cisco/secureclient/vpn/profile"
    assert "The mobile app cannot import the profile file" in page and "vpn.test.ac.jp:10443" in page
    assert "brew install openconnect" in page and "openconnect (macOS and Linux)" in page
    # No software site configured: the page says whom to ask; configured: it links to it.
    assert "Ask the help desk (ext. 1234) where to get Cisco Secure Client" in page
    (tmp_path / "b").mkdir()
    ctx2 = _ctx(tmp_path / "b", clock, 'software_url = "https://soft.test.ac.jp/vpn"\n')  # in [portal]
    c2 = client(ctx2)
    sign_in(c2)
    assert '<a href="https://soft.test.ac.jp/vpn" id="software-site">' in c2.get("/connect").text


def test_a_self_signed_certificate_is_said_with_its_pin_and_the_profile_stays_strict(
    tmp_path: Path, clock: FixedClock
) -> None:
    ctx = _ctx(tmp_path, clock, PROFILES)
    c = client(ctx)
    sign_in(c)
    page = c.get("/connect").text
    assert 'id="self-signed"' in page and "self-signed certificate" in page
    assert _code(page, "server-fingerprint") == _fingerprint(ctx)
    profile = c.get("/connect/profile.xml").text
    assert '<StrictCertificateTrust UserControllable="false">true</StrictCertificateTrust>' in profile
    assert "<!-- The server's certificate is self-signed" in profile
    ja = html.unescape(c.get("/connect?lang=ja").text)
    assert "このサーバーは自己署名証明書を使用しています" in ja


def test_a_certificate_from_an_authority_gets_no_self_signed_warning(tmp_path: Path, clock: FixedClock) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from cryptography.x509.oid import NameOID

    ctx = _ctx(tmp_path, clock, PROFILES)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpn.test.ac.jp")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    ctx.config.path("tls/cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    ctx.config.path("tls/key.pem").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    c = client(ctx)
    sign_in(c)
    page = c.get("/connect").text
    assert 'id="self-signed"' not in page and "pin-sha256:" in page
    assert "self-signed" not in c.get("/connect/profile.xml").text
