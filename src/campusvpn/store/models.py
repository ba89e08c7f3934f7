"""Database tables. Times are stored as UTC; secrets only encrypted (seeds) or hashed (the rest)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), date: Date()}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_at: Mapped[datetime | None]
    password_hash: Mapped[str | None] = mapped_column(String(200))
    password_changed_at: Mapped[datetime | None]
    mfa_applied_at: Mapped[datetime | None]
    # When the user deleted their last method themselves: re-registration then needs a
    # recovery step, not just the password (see core rules on MFA).
    mfa_emptied_at: Mapped[datetime | None]
    language: Mapped[str | None] = mapped_column(String(8))  # en | ja for mail and SMS; None: the default
    created_at: Mapped[datetime]

    affiliations: Mapped[list[Affiliation]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="Affiliation.start"
    )
    methods: Mapped[list[MfaMethod]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="MfaMethod.id"
    )


class Affiliation(Base):
    __tablename__ = "affiliations"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    start: Mapped[date]
    end: Mapped[date | None]
    user: Mapped[User] = relationship(back_populates="affiliations")


class MfaMethod(Base):
    __tablename__ = "mfa_methods"
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # totp | phone
    phone_kind: Mapped[str | None] = mapped_column(String(16))  # mobile | alternate | office
    phone_number: Mapped[str | None] = mapped_column(String(20))
    phone_extension: Mapped[str | None] = mapped_column(String(10))
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    label: Mapped[str | None] = mapped_column(String(60))  # the user's name for an authenticator app
    last_step: Mapped[int | None] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    user: Mapped[User] = relationship(back_populates="methods")
    __table_args__ = (Index("ix_one_phone_kind", "user_id", "phone_kind", unique=True),)


class EmailConfirmation(Base):
    """An address a user typed, waiting for the link mailed to it; only its digest is kept."""

    __tablename__ = "email_confirmations"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(254))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PhoneChallenge(Base):
    __tablename__ = "phone_challenges"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    method_id: Mapped[int] = mapped_column(ForeignKey("mfa_methods.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    salt: Mapped[str] = mapped_column(String(32))
    code_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)


class ThrottleCounter(Base):
    __tablename__ = "throttle_counters"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]


class TrustedDevice(Base):
    __tablename__ = "trusted_devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(100))


class TrainingRecord(Base):
    __tablename__ = "training_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    fiscal_year: Mapped[int] = mapped_column(Integer)
    completed_on: Mapped[date]
    imported_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("user_id", "fiscal_year"),)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class VpnSession(Base):
    """A signed-in VPN session: outlives its TLS connections, ends once."""

    __tablename__ = "vpn_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(45))
    source: Mapped[str | None] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(200))
    # The VPN protocol that opened it ("anyconnect", "fortinet").
    protocol: Mapped[str] = mapped_column(String(16), server_default="anyconnect")
    started_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    node: Mapped[str | None] = mapped_column(String(64))
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    ended_at: Mapped[datetime | None] = mapped_column(index=True)
    end_reason: Mapped[str | None] = mapped_column(String(1000))  # a stored message (texts.stored)
    __table_args__ = (
        # One live session per address; ended sessions keep their address for the record.
        # PostgreSQL has the same partial index: see postgresql_where.
        Index("ix_live_address", "address", unique=True, sqlite_where=text("ended_at IS NULL")),
    )


class WebSession(Base):
    """A browser's portal session. Only a digest of its cookie is stored; a new id is issued at
    every change of privilege (sign-in), so a planted cookie never becomes a signed-in one."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    # The sign-in in progress (the engine's step and facts) or None once signed in.
    signin: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    signed_in_at: Mapped[datetime | None]
    second_factor_at: Mapped[datetime | None]  # for step-up before security-info changes
    flash: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # shown once (e.g. new recovery codes)
    source: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ApiToken(Base):
    """An admin's token for automation; the secret is shown once and stored as a digest."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class RecoveryPass(Base):
    """A help-desk one-time pass: lets a user who lost every method register a new one."""

    __tablename__ = "recovery_passes"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    pass_hash: Mapped[str] = mapped_column(String(200))
    issued_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Passkey(Base):
    """A WebAuthn credential for portal sign-in (public key only; nothing secret)."""

    __tablename__ = "passkeys"
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class MailMessage(Base):
    """An e-mail waiting to go out, or gone. `key` names the event it tells of, so a notice is
    queued once however often the job that notices the event runs."""

    __tablename__ = "mail_queue"
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), default="email", server_default="email")  # email | sms
    key: Mapped[str] = mapped_column(String(200), unique=True)
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    to: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)  # None once sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None]


class SsoAttempt(Base):
    """A VPN client's sign-in through the browser (AnyConnect single sign-on): begun by the client,
    completed or refused in the browser, redeemed once by the same client. In the database so any
    worker process can take each step. Only a digest of the one-time token is stored."""

    __tablename__ = "sso_attempts"
    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)  # the client's auth handle
    protocol: Mapped[str] = mapped_column(String(16))
    profile: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))  # the VPN client's address
    client_key: Mapped[str | None] = mapped_column(String(400))  # external browser: the token is sealed to it
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    # The browser's outcome: None while pending, then {"ok": true, ...} or the refusal and its reasons.
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    token_digest: Mapped[str | None] = mapped_column(String(64))
    token_expires_at: Mapped[datetime | None]
    redeemed_at: Mapped[datetime | None]


class SeenAssertion(Base):
    """A SAML assertion already used for a sign-in, kept until it expires so the same assertion
    posted again (by anyone, to any worker process) is refused."""

    __tablename__ = "saml_seen_assertions"
    id: Mapped[str] = mapped_column(String(256), primary_key=True)  # the assertion's ID
    issuer: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class IdentityLink(Base):
    """The verified real-world identity a member linked to their account, used for the self-reset.
    Stored only as a keyed hash of the [verification] provider's issuer and subject
    (platform.link_key), so the database alone names no one. One per account; one account per identity."""

    __tablename__ = "identity_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    identity_digest: Mapped[str] = mapped_column(String(64), unique=True)
    linked_at: Mapped[datetime]


def postgresql_where(metadata: MetaData) -> None:
    """Give every partial index its `sqlite_where` as `postgresql_where` too (migration 0002 creates
    both). The models name only SQLite's: naming a `postgresql_*` option makes SQLAlchemy load its
    whole PostgreSQL dialect (~2 MB, every driver) in every process that imports the models, also
    on SQLite (start-up memory). Alembic's environment calls this when it talks to PostgreSQL."""
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_options["sqlite"]["where"]
            if where is not None:
                index.dialect_kwargs["postgresql_where"] = where
