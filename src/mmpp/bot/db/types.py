"""Column types that hide two backend differences: unsigned 64-bit ids and timezone-aware times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_2_63 = 1 << 63
_2_64 = 1 << 64


class UInt64(TypeDecorator[int]):
    """An unsigned 64-bit integer (Discord snowflakes, seeds) in a signed BIGINT column.

    Values at or above 2**63 are stored as their two's-complement negative, the same 64 bits read
    as signed. Every id Discord issues before 2084 stays below 2**63 and is stored unchanged, so
    the column stays readable in `psql`/`sqlite3`, and equality, IN and indexes work for all
    values. Range comparisons on values above 2**63 are not meaningful; nothing orders by id.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        number = int(value)
        if not 0 <= number < _2_64:
            raise ValueError(f"{number} is not an unsigned 64-bit integer")
        return number - _2_64 if number >= _2_63 else number

    def process_literal_param(self, value: Any, dialect: Dialect) -> str:
        return "NULL" if value is None else str(self.process_bind_param(value, dialect))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        number = int(value)
        return number + _2_64 if number < 0 else number

    @property
    def python_type(self) -> type[int]:
        return int


# Discord calls its ids snowflakes; the alias says which columns hold them.
Snowflake = UInt64


class UTCDateTime(TypeDecorator[datetime]):
    """`TIMESTAMP WITH TIME ZONE` on PostgreSQL; UTC text on SQLite. Always aware UTC in Python.

    SQLite has no time zone type and SQLAlchemy drops the offset when it writes one, so every value
    is converted to UTC first; that also keeps SQLite's text comparison in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def python_type(self) -> type[datetime]:
        return datetime
