"""The unlinkable guard: a server's (or one channel's) choice to keep it, on for every row already stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Written by hand; `tests/db` checks the result matches `mmpp.bot.db.models`. Existing presets get the
guard on: the privacy a room had before this column existed is the default, not an opt-in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("server_presets", "channel_overrides")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("unlinkable", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("unlinkable")
