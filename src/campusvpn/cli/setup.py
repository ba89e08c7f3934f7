"""`campusvpn init`: a working directory with config, keys, a TLS certificate and a database."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from campusvpn.cli import service_user as service_user_mod
from campusvpn.platform import link_key, state_files
from campusvpn.platform.config import ConfigError, parse_config
from campusvpn.platform.config_render import default_toml
from campusvpn.platform.config_schema import ServiceSection
from campusvpn.platform.privileges import ensure_system_user, lookup, service_account
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


class InitError(Exception):
    """`init` cannot set up this folder as asked; nothing was written."""


def init_dir(directory: Path, service_user: str | None = None) -> list[str]:
    """Create what a first run needs under `directory`; never overwrites. Returns what it did.

    `service_user` (default: the schema's) goes into the config. Run by root, `init` creates that system
    user when missing and gives it the folder; every file is private either way (0700 folders, 0600 files).
    """
    done = []
    conf = directory / "campusvpn.toml"
    if conf.exists():
        raise FileExistsError(f"{conf} exists already; init never overwrites a configuration")
    text = default_toml()
    if service_user is not None:
        text = _with_service_user(text, service_user)
    try:
        cfg = parse_config(text, conf)
    except ConfigError as exc:
        raise InitError("; ".join(p.split(": ", 1)[-1] for p in exc.problems)) from exc
    owner = None
    name = cfg.service.user
    if os.geteuid() == 0 and name:
        problem = service_user_mod.reach_problem(
            lookup(name), directory.absolute().parent, *service_user_mod.program_dirs()
        )
        if problem:
            raise InitError(
                f"the service user {name} {problem}. Keep the state and Python where it can reach them "
                "(e.g. --dir /var/lib/campusvpn, a checkout in /opt), let it through (chmod o+x on that folder), "
                "or keep root with --service-user ''"
            )
        pw, created = ensure_system_user(name)
        if created:
            done.append(f"created the system user {name} (uid {pw.pw_uid}; the gateway runs as it)")
        account = service_account(name)  # not root in disguise
        owner = (account.pw_uid, account.pw_gid)
    directory.mkdir(parents=True, exist_ok=True)
    conf.write_text(text, encoding="utf-8")
    done.append(f"wrote {conf}")
    keys = cfg.path(cfg.storage.key_file)
    if not keys.exists():
        generate_key_file(keys)
        done.append(f"wrote {keys} (secret keys: back it up apart from the database)")
    link = cfg.path(cfg.verification.link_key_file)
    if not link.exists():
        link_key.generate(link)
        done.append(f"wrote {link} (identity-link key: back it up apart from the database; never rotate it)")
    cert, key = cfg.path(cfg.tls.certificate), cfg.path(cfg.tls.key)
    if not cert.exists() and not key.exists():
        pin = write_self_signed(cert, key, socket.getfqdn() or "localhost")
        done.append(f"wrote a self-signed certificate {cert} ({pin})")
    revision = database.upgrade(cfg)
    # password and recovery-code hashes, keys, and the config (it may hold a database password): owner only
    state_files.hand_over(state_files.of(cfg, conf), owner)
    done.append(f"created the database ({cfg.storage.database}) at schema {revision}")
    if owner:
        done.append(f"{directory} and its files belong to {name}, readable by it alone")
    return done


def _with_service_user(text: str, name: str) -> str:
    line = f"user = {json.dumps(ServiceSection.model_fields['user'].default)}\n"
    assert line in text, "the default config names no service user"
    return text.replace(line, f"user = {json.dumps(name)}\n", 1)
