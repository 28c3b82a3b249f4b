"""Jobs that survive a restart, delivery outcomes, previews in the log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

`generation_log` rows double as the bot's job table: an open row (no outcome) is a job that was
reserved, waiting or running. They now carry what a restart needs to tell the member (interaction
id, application id, token and its expiry; never the selfie), the kind of job (portrait or style
preview), and outcomes that say how the portrait reached the member. Batch mode, because SQLite
can only change a CHECK constraint or a column type by rebuilding the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_OUTCOMES = ("done", "failed", "cancelled", "timeout")
NEW_OUTCOMES = (*OLD_OUTCOMES, "delivered", "delivered_fallback", "undelivered", "refused", "interrupted")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("generation_log") as batch:
        batch.drop_constraint(op.f("ck_generation_log_outcome"), type_="check")
        batch.alter_column("outcome", type_=sa.String(24), existing_type=sa.String(16), existing_nullable=True)
        batch.add_column(sa.Column("kind", sa.String(16), server_default="portrait", nullable=False))
        batch.add_column(sa.Column("interaction_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("application_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("interaction_token", sa.Text(), nullable=True))
        batch.add_column(sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(
            op.f("ck_generation_log_outcome"), f"outcome IS NULL OR {_one_of('outcome', NEW_OUTCOMES)}"
        )
        batch.create_check_constraint(op.f("ck_generation_log_kind"), _one_of("kind", ("portrait", "preview")))
        batch.create_index(op.f("ix_generation_log_finished_at"), ["finished_at"])


def downgrade() -> None:
    # Rows with outcomes the old schema does not know are mapped to their nearest old meaning.
    op.execute(
        "UPDATE generation_log SET outcome = 'done' WHERE outcome IN ('delivered', 'delivered_fallback', 'undelivered')"
    )
    op.execute("UPDATE generation_log SET outcome = 'cancelled' WHERE outcome IN ('refused', 'interrupted')")
    with op.batch_alter_table("generation_log") as batch:
        batch.drop_index(op.f("ix_generation_log_finished_at"))
        batch.drop_constraint(op.f("ck_generation_log_kind"), type_="check")
        batch.drop_constraint(op.f("ck_generation_log_outcome"), type_="check")
        batch.drop_column("token_expires_at")
        batch.drop_column("interaction_token")
        batch.drop_column("application_id")
        batch.drop_column("interaction_id")
        batch.drop_column("kind")
        batch.alter_column("outcome", type_=sa.String(16), existing_type=sa.String(24), existing_nullable=True)
        batch.create_check_constraint(
            op.f("ck_generation_log_outcome"), f"outcome IS NULL OR {_one_of('outcome', OLD_OUTCOMES)}"
        )
