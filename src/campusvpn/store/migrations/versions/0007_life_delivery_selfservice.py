"""lifecycle: SMS in the notice queue, per-user language, named authenticator apps, e-mail confirmation

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campusvpn.store.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mail_queue") as batch:
        batch.add_column(sa.Column("channel", sa.String(length=8), server_default="email", nullable=False))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=True))
    with op.batch_alter_table("mfa_methods") as batch:
        batch.add_column(sa.Column("label", sa.String(length=60), nullable=True))
    op.create_table(
        "email_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_digest"),
    )
    op.create_index(op.f("ix_email_confirmations_user_id"), "email_confirmations", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_email_confirmations_user_id"), table_name="email_confirmations")
    op.drop_table("email_confirmations")
    with op.batch_alter_table("mfa_methods") as batch:
        batch.drop_column("label")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("mail_queue") as batch:
        batch.drop_column("channel")
