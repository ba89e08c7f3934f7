"""A real OpenLDAP server (Debian's slapd) for the tests: its own config, database and TLS
certificate in a temporary folder, on free loopback ports, with a few users."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.helpers import free_port, stop_process

from campusvpn.cli.setup import write_self_signed

SLAPD = "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=ac,dc=jp"
PEOPLE = f"ou=people,{SUFFIX}"
SERVICE_DN = f"cn=reader,{SUFFIX}"
SERVICE_PASSWORD = "reader-password"


@dataclass(frozen=True)
class DirectoryUser:
    uid: str
    password: str
    affiliation: str = "staff"
    name: str = "Test Person"


USERS = (
    DirectoryUser("1234567890", "directory password one", "staff", "Hanako Yamada"),
    DirectoryUser("2234567890", "directory password two", "student", "Taro Suzuki"),
    DirectoryUser("3234567890", "directory password three", "alumni", "Jiro Sato"),
)


@dataclass
class Slapd:
    folder: Path
    port: int  # ldap:// (StartTLS offered)
    tls_port: int  # ldaps://
    ca_file: Path
    process: subprocess.Popen[bytes] | None = None
    address: str = "127.0.0.1"  # where it listens
    netns: str | None = None  # a network namespace to run in (the e2e test bed's campus host)

    @property
    def url(self) -> str:
        return f"ldap://{self.address}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://{self.address}:{self.tls_port}"

    def _listening(self) -> bool:
        if self.netns is None:
            try:
                socket.create_connection((self.address, self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        probe = f"import socket; socket.create_connection(({self.address!r}, {self.port}), timeout=0.5).close()"
        inside = ["ip", "netns", "exec", self.netns, sys.executable, "-c", probe]
        return subprocess.run(inside, capture_output=True, timeout=10, check=False).returncode == 0

    def start(self) -> None:
        # `ip netns exec` execs slapd: the PID is slapd's own.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.process = subprocess.Popen(
            [*prefix, SLAPD, "-f", str(self.folder / "slapd.conf"), "-h", f"{self.url}/ {self.tls_url}/", "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if self._listening():
                return
            time.sleep(0.1)
        raise RuntimeError("slapd did not start listening within 20 s")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def _ssha(password: str) -> str:
    return subprocess.run(
        ["/usr/sbin/slappasswd", "-s", password], check=True, capture_output=True, text=True
    ).stdout.strip()


def _ldif(users: tuple[DirectoryUser, ...]) -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example University\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\n"
        f"userPassword: {_ssha(SERVICE_PASSWORD)}\n",
    ]
    for u in users:
        parts.append(
            f"dn: uid={u.uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {u.uid}\ncn: {u.name}\nsn: {u.name.split()[-1]}\n"
            f"mail: {u.uid}@example.ac.jp\nemployeeType: {u.affiliation}\nuserPassword: {_ssha(u.password)}\n"
        )
    return "\n".join(parts)


def _config(folder: Path) -> str:
    return f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {folder}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {folder}/cert.pem
TLSCertificateKeyFile {folder}/key.pem
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
directory {folder}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by self read by dn.exact="{SERVICE_DN}" read by * none
"""


@contextmanager
def running_slapd(
    tmp: Path,
    users: tuple[DirectoryUser, ...] = USERS,
    *,
    address: str = "127.0.0.1",
    netns: str | None = None,
    tls_name: str = "localhost",
) -> Iterator[Slapd]:
    """`tls_name`: the DNS name in its certificate (besides localhost and 127.0.0.1)."""
    if not (Path(SLAPD).exists() and Path("/usr/sbin/slapadd").exists()):
        pytest.skip("Debian slapd is not installed (apt-get install slapd ldap-utils)")
    folder = tmp / "slapd"
    (folder / "db").mkdir(parents=True)
    write_self_signed(folder / "cert.pem", folder / "key.pem", tls_name)
    (folder / "slapd.conf").write_text(_config(folder))
    (folder / "users.ldif").write_text(_ldif(users))
    subprocess.run(
        ["/usr/sbin/slapadd", "-f", str(folder / "slapd.conf"), "-l", str(folder / "users.ldif")],
        check=True,
        capture_output=True,
    )
    server = Slapd(folder, free_port(), free_port(), folder / "cert.pem", address=address, netns=netns)
    server.start()
    try:
        yield server
    finally:
        server.stop()
