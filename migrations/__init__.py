"""Alembic environment and versions: the only way Arsip's schema changes."""
