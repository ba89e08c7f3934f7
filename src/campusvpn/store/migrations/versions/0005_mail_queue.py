"""mail queue (e-mail notices with retry)

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campusvpn.store.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("to", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("sent_at", campusvpn.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(op.f("ix_mail_queue_username"), "mail_queue", ["username"], unique=False)
    op.create_index(op.f("ix_mail_queue_next_attempt_at"), "mail_queue", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mail_queue_next_attempt_at"), table_name="mail_queue")
    op.drop_index(op.f("ix_mail_queue_username"), table_name="mail_queue")
    op.drop_table("mail_queue")
