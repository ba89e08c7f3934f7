"""A session's end reason holds a stored message (codes and facts as JSON), not only English

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vpn_sessions") as batch:
        batch.alter_column("end_reason", type_=sa.String(length=1000), existing_type=sa.String(length=200))


def downgrade() -> None:
    with op.batch_alter_table("vpn_sessions") as batch:
        batch.alter_column("end_reason", type_=sa.String(length=200), existing_type=sa.String(length=1000))
