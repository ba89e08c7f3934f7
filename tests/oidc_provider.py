"""A real OpenID Connect provider (npm oidc-provider, run by node) for the tests, on a free
loopback port with its own TLS certificate and signing keys the test chooses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey
from tests.helpers import free_port, stop_process

from campusvpn.cli.setup import write_self_signed

HERE = Path(__file__).resolve().parent / "oidc"
CACHE = Path(os.environ.get("CAMPUSVPN_NPM_CACHE", "/var/cache/campusvpn-tests/npm"))
CLIENT_ID, CLIENT_SECRET = "campusvpn-portal", "portal-client-secret-for-tests"
ACCOUNTS = {
    "hanako": {"preferred_username": "1234567890", "name": "Hanako Yamada", "affiliation": ["staff"]},
    "taro": {"preferred_username": "2234567890@example.ac.jp", "name": "Taro Suzuki", "affiliation": ["student"]},
    "outsider": {"preferred_username": "not-a-student-number", "name": "Someone Else"},
}


def signing_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True)


@dataclass
class OidcProvider:
    folder: Path
    port: int
    keys: list[RSAKey]
    redirect_uri: str
    process: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.folder / "cert.pem"

    def start(self) -> None:
        config: dict[str, Any] = {
            "issuer": self.issuer,
            "port": self.port,
            "cert": str(self.folder / "cert.pem"),
            "key": str(self.folder / "key.pem"),
            "jwks": {"keys": [k.as_dict(private=True) for k in self.keys]},
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [self.redirect_uri],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                }
            ],
            "accounts": ACCOUNTS,
        }
        (self.folder / "provider.json").write_text(json.dumps(config))
        self.process = subprocess.Popen(
            ["node", str(CACHE / "campusvpn-provider.mjs"), str(self.folder / "provider.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"oidc-provider exited: {out[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("oidc-provider did not listen within 30 s")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def ensure_installed() -> None:
    """npm install into the cache once; skip (with the reason) when node or npm cannot."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs node and npm (Debian nodejs, npm) for the oidc-provider tests")
    r = subprocess.run([str(HERE / "install.sh")], capture_output=True, text=True, timeout=300, check=False)
    if r.returncode != 0:
        pytest.skip(f"npm could not install oidc-provider (registry unreachable?): {r.stderr[-500:]}")
    shutil.copyfile(HERE / "provider.mjs", CACHE / "campusvpn-provider.mjs")  # node resolves imports from there


@contextmanager
def running_provider(tmp: Path, redirect_uri: str) -> Iterator[OidcProvider]:
    ensure_installed()
    folder = tmp / "oidc-provider"
    folder.mkdir(parents=True)
    write_self_signed(folder / "cert.pem", folder / "key.pem", "localhost")
    provider = OidcProvider(folder, free_port(), [signing_key("key-1")], redirect_uri)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
