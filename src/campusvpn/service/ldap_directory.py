"""The university's LDAP directory as a password check: find the user's entry, bind as it.

A bind with the user's own password is the check (the directory's password policy applies, and
no password hash leaves the directory). The entry is found by a DN template (direct bind) or by a
search with a service account and a filter. Connections are kept in a small pool and re-bound for
each check, so a sign-in wave does not open a TLS connection per password. A directory that does
not answer (refused, timed out, TLS failure, "busy") raises `DirectoryUnavailable`, which the
sign-in says as "temporarily unavailable", never as a wrong password."""

from __future__ import annotations

import logging
import os
import queue
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from campusvpn.platform.config_schema import LdapSection

log = logging.getLogger("campusvpn.ldap")

# Result codes that mean "the directory cannot answer now", not "these credentials are wrong".
_UNAVAILABLE_RESULTS = {51, 52, 80}  # busy, unavailable, other


class DirectoryUnavailable(Exception):
    """The directory could not be asked (down, timed out, TLS refused, busy)."""


@dataclass(frozen=True)
class DirectoryEntry:
    dn: str
    attributes: dict[str, list[str]]

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name.lower()) if name else None
        return values[0] if values else None


@dataclass
class LdapDirectory:
    cfg: LdapSection
    base_dir: Path
    _idle: queue.LifoQueue[ldap3.Connection] = field(default_factory=queue.LifoQueue, repr=False)
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.cfg.pool_size)
        self._servers = [self._server(url) for url in self.cfg.servers]

    # --- the check ------------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> DirectoryEntry | None:
        """The user's entry if `password` is theirs; None if not (or no such entry)."""
        if not password:  # an empty password is an anonymous bind, which "succeeds"
            return None
        with self._connection() as conn:
            entry = self._find(conn, username)
            if entry is None:
                return None
            if not self._bind(conn, entry.dn, password):
                return None  # the directory answered: wrong password, locked entry...
            if self.cfg.user_dn_template and self._wanted():
                return self._read_own(conn, entry.dn)
            return entry

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().unbind()
            except queue.Empty:
                return
            except LDAPException:
                continue

    # --- steps ------------------------------------------------------------------------------------

    def _wanted(self) -> list[str]:
        return [a for a in (self.cfg.role_attribute, self.cfg.name_attribute, self.cfg.email_attribute) if a]

    def _find(self, conn: ldap3.Connection, username: str) -> DirectoryEntry | None:
        attrs = self._wanted()
        if self.cfg.user_dn_template:
            return DirectoryEntry(self.cfg.user_dn_template.format(username=escape_rdn(username)), {})
        if self.cfg.service_dn and not self._bind(conn, self.cfg.service_dn, self._service_password()):
            raise DirectoryUnavailable("the service account's bind was refused (check [ldap] service_dn)")
        flt = self.cfg.user_filter.format(username=escape_filter_chars(username))
        try:
            conn.search(self.cfg.base_dn, flt, ldap3.SUBTREE, attributes=attrs or ldap3.NO_ATTRIBUTES, size_limit=2)
        except LDAPException as exc:
            raise DirectoryUnavailable(f"search failed: {exc}") from exc
        if conn.result.get("result") in _UNAVAILABLE_RESULTS:
            raise DirectoryUnavailable(f"search refused: {conn.result.get('description')}")
        found = _entries(conn)
        if len(found) != 1:  # none, or an ambiguous filter: not a sign-in
            if len(found) > 1:
                log.warning("ldap filter %s matches %d entries; refusing", flt, len(found))
            return None
        return found[0]

    def _read_own(self, conn: ldap3.Connection, dn: str) -> DirectoryEntry:
        """The attributes the mapping needs, read as the user just bound (direct-bind mode)."""
        try:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=self._wanted())
        except LDAPException as exc:
            raise DirectoryUnavailable(f"reading {dn} failed: {exc}") from exc
        found = _entries(conn)
        return found[0] if found else DirectoryEntry(dn, {})

    def _bind(self, conn: ldap3.Connection, dn: str, password: str) -> bool:
        try:
            ok = bool(conn.rebind(user=dn, password=password))
        except LDAPException as exc:  # with raise_exceptions off, only the transport raises
            raise DirectoryUnavailable(f"bind failed: {exc}") from exc
        if not ok and conn.result.get("result") in _UNAVAILABLE_RESULTS:
            raise DirectoryUnavailable(f"bind refused: {conn.result.get('description')}")
        return ok

    # --- connections --------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[ldap3.Connection]:
        timeout = self.cfg.timeout.total_seconds()
        if not self._slots.acquire(timeout=timeout):
            raise DirectoryUnavailable(f"all {self.cfg.pool_size} directory connections are busy")
        conn: ldap3.Connection | None = None
        try:
            try:
                conn = self._idle.get_nowait()
                if conn.closed:
                    conn = None
            except queue.Empty:
                conn = None
            if conn is None:
                conn = self._open()
            yield conn
        except DirectoryUnavailable:
            if conn is not None:  # a broken connection is not put back
                _drop(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                self._idle.put(conn)
            self._slots.release()

    def _open(self) -> ldap3.Connection:
        # active=1: try each server once (True would loop forever while all are down); the stubs say bool.
        pool = ldap3.ServerPool(self._servers, ldap3.FIRST, active=1, exhaust=True)  # type: ignore[arg-type]
        conn = ldap3.Connection(
            pool, receive_timeout=int(max(1, self.cfg.timeout.total_seconds())), raise_exceptions=False
        )
        try:
            conn.open()
            if self.cfg.starttls and not conn.start_tls():
                raise DirectoryUnavailable(f"StartTLS refused: {conn.result}")
        except LDAPException as exc:
            log.error("ldap directory unreachable (%s): %s", ", ".join(self.cfg.servers), exc)
            raise DirectoryUnavailable(str(exc)) from exc
        return conn

    def _server(self, url: str) -> ldap3.Server:
        tls = None
        if url.startswith("ldaps://") or self.cfg.starttls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(self._path(self.cfg.ca_file)) if self.cfg.ca_file else None,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        return ldap3.Server(url, tls=tls, connect_timeout=max(1, int(self.cfg.connect_timeout.total_seconds())))

    def _path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    def _service_password(self) -> str:
        if self.cfg.service_password_env:
            return os.environ.get(self.cfg.service_password_env, "")
        return self.cfg.service_password


def _entries(conn: ldap3.Connection) -> list[DirectoryEntry]:
    out = []
    for e in conn.response or []:
        if e.get("type") != "searchResEntry":
            continue
        raw = e.get("attributes") or {}
        values = {k.lower(): [str(v) for v in (raw[k] if isinstance(raw[k], list) else [raw[k]])] for k in raw}
        out.append(DirectoryEntry(str(e["dn"]), values))
    return out


def _drop(conn: ldap3.Connection) -> None:
    with suppress(LDAPException):
        conn.unbind()
