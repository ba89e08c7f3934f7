"""Everything a use case needs, built once from the configuration."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from campusvpn.core import throttle
from campusvpn.core.hashing import Argon2Params, Hasher
from campusvpn.core.policy import PolicyRules, rules_from_config
from campusvpn.core.throttle import ThrottleRule
from campusvpn.core.totp import TotpParams
from campusvpn.core.usernames import InvalidUsername, UsernameRule
from campusvpn.platform import link_key
from campusvpn.platform.clock import Clock, SystemClock
from campusvpn.platform.config import ConfigError
from campusvpn.platform.config_schema import Config
from campusvpn.platform.secretbox import SecretBox, load_key_file
from campusvpn.service import notice_texts
from campusvpn.service.errors import NotFound, Unavailable
from campusvpn.service.sender import OutboxSender, Sender
from campusvpn.store import db
from campusvpn.store.models import User
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say

if TYPE_CHECKING:  # imported only when configured: a gateway worker starts without ldap3 or authlib
    from campusvpn.service.ldap_directory import LdapDirectory
    from campusvpn.service.oidc_client import OidcClient
    from campusvpn.service.saml_sp import SamlServiceProvider

log = logging.getLogger("campusvpn.storage")
# Errors of the storage itself (disk full, read-only, I/O, server down, corrupt file), not of a
# statement or of the data (a unique key taken is a conflict, a bug is a bug).
STORAGE_FAILURES = (sa_exc.OperationalError, sa_exc.DatabaseError, sa_exc.InterfaceError)
NOT_STORAGE_FAILURES = (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.DataError, sa_exc.NotSupportedError)


@dataclass
class Context:
    config: Config
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    hasher: Hasher
    box: SecretBox
    sender: Sender
    usernames: UsernameRule
    totp: TotpParams
    policy: PolicyRules
    password_throttle: ThrottleRule
    second_factor_throttle: ThrottleRule
    source_throttle: ThrottleRule
    texts: notice_texts.Texts
    directory: LdapDirectory | None = None  # [identity] first_factor = "ldap"
    oidc: OidcClient | None = None  # [oidc] enabled (the provider's metadata and keys are cached here)
    saml: SamlServiceProvider | None = None  # [saml] enabled (the identity provider's metadata is kept here)
    verification: OidcClient | None = None  # [verification] enabled: the identity-verified self-reset
    _link_key: bytes | None = field(default=None, repr=False)  # read at first use; never in a log line

    def identity_digest(self, issuer: str, subject: str) -> str:
        """The stored form of a verified identity (platform.link_key); the key file is read, or
        created, at the first link or reset."""
        if self._link_key is None:
            try:
                self._link_key = link_key.load(self.config.path(self.config.verification.link_key_file))
            except link_key.LinkKeyError as exc:
                log.error("%s", exc)
                raise Unavailable("the identity-link key cannot be read") from exc
        return link_key.digest(self._link_key, issuer, subject)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back if it raises. A storage
        failure becomes `Unavailable` (front ends say "try again in a few minutes") and a log line
        with its cause for the operators."""
        try:
            with self.sessions.begin() as s:
                yield s
        except sa_exc.DBAPIError as exc:
            if not isinstance(exc, STORAGE_FAILURES) or isinstance(exc, NOT_STORAGE_FAILURES):
                raise
            cause = str(exc.orig) if exc.orig is not None else str(exc)
            log.error("storage unavailable (%s): %s", self.config.storage.database.split("@")[-1], cause)
            raise Unavailable(cause) from exc

    def user(self, s: Session, typed: str) -> User:
        try:
            name = self.usernames.normalise(typed)
        except InvalidUsername as exc:
            # Not a user name at all (a mistyped URL, a bad path parameter): no such account.
            raise NotFound(exc.said) from exc
        user = s.scalars(select(User).where(User.username == name)).one_or_none()
        if user is None:
            raise NotFound(say(Code.ERROR_NO_ACCOUNT, username=name))
        return user


def open_context(
    config: Config, clock: Clock | None = None, *, migrate: bool = True, sender: Sender | None = None
) -> Context:
    try:
        texts = notice_texts.load(config.path(config.notices.templates) if config.notices.templates else None)
    except notice_texts.TemplateError as exc:
        raise ConfigError([str(exc)]) from exc
    engine = db.make_engine(config.database_url)
    if migrate:
        db.upgrade(engine)
    t = config.throttle

    def rule(lock_after: int) -> ThrottleRule:
        return ThrottleRule(t.free_failures, t.backoff_base, t.backoff_max, lock_after, t.lock_duration)

    return Context(
        config=config,
        clock=clock or SystemClock(),
        engine=engine,
        sessions=db.session_factory(engine),
        hasher=Hasher(
            Argon2Params(
                config.passwords.argon2_time_cost,
                config.passwords.argon2_memory_kib,
                config.passwords.argon2_parallelism,
            )
        ),
        box=load_key_file(config.path(config.storage.key_file)),
        sender=sender or _sender(config),
        usernames=UsernameRule(
            config.service.username_pattern,
            tuple(config.service.realms),
            config.service.username_hint,
            config.service.username_hint_ja,
        ),
        totp=TotpParams(
            config.mfa.totp_digits,
            config.mfa.totp_period,
            config.mfa.totp_algorithm,
            config.mfa.totp_drift_steps,
        ),
        policy=rules_from_config(config),
        password_throttle=rule(t.password_lock_after),
        second_factor_throttle=rule(t.second_factor_lock_after),
        source_throttle=throttle.source_rule(rule(t.source_lock_after)),
        texts=texts,
        directory=_directory(config),
        oidc=_oidc(config),
        saml=_saml(config),
        verification=_verification(config),
    )


def _directory(config: Config) -> LdapDirectory | None:
    if config.identity.first_factor != "ldap":
        return None
    from campusvpn.service.ldap_directory import LdapDirectory

    return LdapDirectory(config.ldap, config.base_dir)


def _oidc(config: Config) -> OidcClient | None:
    if not config.oidc.enabled:
        return None
    from campusvpn.service.oidc_client import OidcClient

    return OidcClient(config.oidc, config.base_dir)


def _verification(config: Config) -> OidcClient | None:
    if not config.verification.enabled:
        return None
    from campusvpn.service.oidc_client import OidcClient

    return OidcClient(config.verification.client_section(), config.base_dir)


def _saml(config: Config) -> SamlServiceProvider | None:
    if not config.saml.enabled:
        return None
    from campusvpn.service.saml_sp import SamlServiceProvider

    return SamlServiceProvider(config.saml, config.service.portal_url, config.base_dir)


def _sender(config: Config) -> Sender:
    """Where SMS, calls and e-mail notices go; a provider's HTTP client is imported only when configured."""
    kind = config.sender.kind
    if kind == "outbox":
        return OutboxSender(config.path(config.sender.outbox))
    from campusvpn.service.sms_providers import TwilioSender, WebhookSender

    return TwilioSender(config) if kind == "twilio" else WebhookSender(config)
