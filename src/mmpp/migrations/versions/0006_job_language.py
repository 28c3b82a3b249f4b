"""The member's language on each job, so a notice after a restart speaks it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Written by hand; `tests/db` checks the result matches `mmpp.bot.db.models`. Rows written before this
have no language; their notices are in English.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generation_log") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation_log") as batch:
        batch.drop_column("language")
