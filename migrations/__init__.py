"""Alembic migrations: one static, revertable file per change, named by date and slug."""
