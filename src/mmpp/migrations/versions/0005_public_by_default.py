"""Private by default: a server may choose that finished portraits are posted in the channel at once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Written by hand; `tests/db` checks the result matches `mmpp.bot.db.models`. Existing servers keep the new
default, private until the member presses Post.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("server_safety") as batch:
        batch.add_column(sa.Column("public_by_default", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("server_safety") as batch:
        batch.drop_column("public_by_default")
