"""Alembic migrations; run them with `recall db upgrade` or `recall.db.upgrade(engine)`."""
