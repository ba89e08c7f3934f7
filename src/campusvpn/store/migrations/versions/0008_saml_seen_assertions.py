"""SAML assertions already used (replay refused across worker processes)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campusvpn.store.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saml_seen_assertions",
        sa.Column("id", sa.String(length=256), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("expires_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_saml_seen_assertions_expires_at"), "saml_seen_assertions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_saml_seen_assertions_expires_at"), table_name="saml_seen_assertions")
    op.drop_table("saml_seen_assertions")
