"""Alembic's home for MMPP's schema. A package so `mmpp.bot.db.migrate` finds it from any directory."""
