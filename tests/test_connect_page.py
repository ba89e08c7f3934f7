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
    found = re.search(rf'<code id="{element}">([^<]*)</code>', page)
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
    steps = html.unescape(page[page.index('<ol id="forticlient-steps">') : page.index("</ol>")])
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
