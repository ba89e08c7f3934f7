"""`campusvpn init`: a working directory with config, keys, a TLS certificate and a database."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from campusvpn.platform.config import load_config
from campusvpn.platform.config_render import default_toml
from campusvpn.platform.secretbox import generate_key_file
from campusvpn.service import database


def write_self_signed(cert_path: Path, key_path: Path, hostname: str) -> str:
    """A self-signed ECDSA P-256 certificate for first runs; returns its SHA-256 pin."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def init_dir(directory: Path) -> list[str]:
    """Create what a first run needs under `directory`; never overwrites. Returns what it did."""
    directory.mkdir(parents=True, exist_ok=True)
    done = []
    conf = directory / "campusvpn.toml"
    if conf.exists():
        raise FileExistsError(f"{conf} exists already; init never overwrites a configuration")
    conf.write_text(default_toml(), encoding="utf-8")
    done.append(f"wrote {conf}")
    cfg = load_config(conf)
    keys = cfg.path(cfg.storage.key_file)
    if not keys.exists():
        generate_key_file(keys)
        done.append(f"wrote {keys} (secret keys: back it up apart from the database)")
    cert, key = cfg.path(cfg.tls.certificate), cfg.path(cfg.tls.key)
    if not cert.exists() and not key.exists():
        pin = write_self_signed(cert, key, socket.getfqdn() or "localhost")
        done.append(f"wrote a self-signed certificate {cert} ({pin})")
    revision = database.upgrade(cfg)
    if cfg.database_url.startswith("sqlite:///"):
        for f in directory.glob(Path(cfg.database_url.removeprefix("sqlite:///")).name + "*"):
            f.chmod(0o600)  # password and recovery-code hashes: owner only
    done.append(f"created the database ({cfg.storage.database}) at schema {revision}")
    return done
