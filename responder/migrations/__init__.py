"""Alembic migrations of the responder's store (see :mod:`responder.migrate`)."""
