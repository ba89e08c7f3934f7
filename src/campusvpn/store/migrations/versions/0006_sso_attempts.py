"""VPN sign-in through the browser: single sign-on attempts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campusvpn.store.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sso_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handle", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("client_key", sa.String(length=400), nullable=True),
        sa.Column("created_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.Column("token_digest", sa.String(length=64), nullable=True),
        sa.Column("token_expires_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("redeemed_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("handle"),
    )
    op.create_index(op.f("ix_sso_attempts_expires_at"), "sso_attempts", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sso_attempts_expires_at"), table_name="sso_attempts")
    op.drop_table("sso_attempts")
