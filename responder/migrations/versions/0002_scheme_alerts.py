"""Monitoring-scheme alerts (issue 17 part 4): scheme_matches, scheme_seen,
saved_searches.watch_from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

A saved search that exists already watches only the posts stored after this
upgrade (``watch_from`` = the newest post now), so turning its alert on
never sends the archive.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# As responder.store (BIGINT on PostgreSQL, the rowid on SQLite).
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("saved_searches") as b:
        b.add_column(sa.Column("watch_from", sa.BigInteger(), server_default=sa.text("0"), nullable=False))
    op.execute("UPDATE saved_searches SET watch_from = (SELECT COALESCE(MAX(id), 0) FROM posts)")
    op.create_table(
        "scheme_matches",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("scheme_id", PK, nullable=False),
        sa.Column("post_id", PK, nullable=False),
        sa.Column("notice_id", PK, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["scheme_id"], ["saved_searches.id"]),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"]),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scheme_id", "post_id", name="uq_scheme_match_post"),
    )
    op.create_index("ix_scheme_matches_scheme_id", "scheme_matches", ["scheme_id"], unique=False)
    op.create_index("ix_scheme_matches_post_id", "scheme_matches", ["post_id"], unique=False)
    op.create_table(
        "scheme_seen",
        sa.Column("scheme_id", PK, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("last_match_id", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["scheme_id"], ["saved_searches.id"]),
        sa.PrimaryKeyConstraint("scheme_id", "username"),
    )


def downgrade() -> None:
    op.drop_table("scheme_seen")
    op.drop_index("ix_scheme_matches_post_id", table_name="scheme_matches")
    op.drop_index("ix_scheme_matches_scheme_id", table_name="scheme_matches")
    op.drop_table("scheme_matches")
    with op.batch_alter_table("saved_searches") as b:
        b.drop_column("watch_from")
