"""Baseline: the schema of the store before Alembic (issue 16).

Revision ID: 0001
Revises:
Create Date: 2026-12-04

Tables, indexes and constraints as ``create_all`` made them, and the audit's
append-only triggers (SQLite and PostgreSQL). A database made by the
pre-Alembic store is brought to this schema by
:func:`responder.migrations.baseline.adopt` and stamped here instead.
"""

from __future__ import annotations

from alembic import op

from responder.migrations import baseline

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    baseline.create(op.get_bind())


def downgrade() -> None:
    baseline.drop(op.get_bind())
