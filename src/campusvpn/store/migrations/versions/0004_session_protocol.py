"""vpn_sessions.protocol: which VPN protocol opened the session

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every session before this revision was opened over AnyConnect, the only protocol there was.
    with op.batch_alter_table("vpn_sessions") as batch:
        batch.add_column(sa.Column("protocol", sa.String(length=16), nullable=False, server_default="anyconnect"))


def downgrade() -> None:
    with op.batch_alter_table("vpn_sessions") as batch:
        batch.drop_column("protocol")
