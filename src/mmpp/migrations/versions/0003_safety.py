"""Image safety: a "filtered" generation outcome, and each server's choice for NSFW channels.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Written by hand; `tests/db` checks the result matches `mmpp.bot.db.models`. The outcome check is
replaced in batch mode because SQLite cannot alter a constraint in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The outcomes 0002 allows (delivery, reservations, restarts).
OUTCOMES_BEFORE = (
    "done", "failed", "cancelled", "timeout",
    "delivered", "delivered_fallback", "undelivered", "refused", "interrupted",
)
OUTCOMES_AFTER = (*OUTCOMES_BEFORE, "filtered")


def _outcome_check(outcomes: tuple[str, ...]) -> str:
    return f"outcome IS NULL OR outcome IN ({', '.join(repr(o) for o in outcomes)})"


def _replace_outcome_check(outcomes: tuple[str, ...]) -> None:
    with op.batch_alter_table("generation_log") as batch:
        batch.drop_constraint(op.f("ck_generation_log_outcome"), type_="check")
        batch.create_check_constraint(op.f("ck_generation_log_outcome"), _outcome_check(outcomes))


def upgrade() -> None:
    op.create_table(
        "server_safety",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("relax_in_nsfw_channels", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.BigInteger(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_server_safety")),
    )
    _replace_outcome_check(OUTCOMES_AFTER)


def downgrade() -> None:
    # Rows the older schema cannot hold are kept as what they were to the member: not posted.
    op.execute("UPDATE generation_log SET outcome = 'failed', reason = 'filtered' WHERE outcome = 'filtered'")
    _replace_outcome_check(OUTCOMES_BEFORE)
    op.drop_table("server_safety")
