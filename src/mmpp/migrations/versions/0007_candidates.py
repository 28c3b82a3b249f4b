"""Several takes, one request: a server's number of takes, and the pictures a logged request drew.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Written by hand; `tests/db` checks the result matches `mmpp.bot.db.models`. Existing rows drew one
picture each; existing servers keep the bot's CANDIDATES (a NULL column).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generation_log") as batch:
        batch.add_column(sa.Column("pictures", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("server_safety") as batch:
        batch.add_column(sa.Column("candidates", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("server_safety") as batch:
        batch.drop_column("candidates")
    with op.batch_alter_table("generation_log") as batch:
        batch.drop_column("pictures")
