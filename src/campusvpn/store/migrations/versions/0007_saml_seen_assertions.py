"""SAML assertions already used (replay refused across worker processes)

Revision ID: 0007
Revises: 0005 (0006 once merged with main: see down_revision)
Create Date: 2026-12-02 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campusvpn.store.models

revision: str = "0007"
# Branched from 0005; main has since added 0006 (sso_attempts): at the merge this becomes "0006".
down_revision: str | None = "0005"
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
