"""Alembic environment for the responder's store.

:mod:`responder.migrate` runs it with an open connection in
``config.attributes["connection"]``, already inside the transaction that
holds the schema lock, so that every migration (and the version row) of one
upgrade commits together or not at all.
"""

from __future__ import annotations

from alembic import context

from responder.store import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through responder.migrate (yuqing db upgrade), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it: autogenerate writes batch operations there.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # Always inside the caller's transaction (BEGIN IMMEDIATE on SQLite): DDL commits with the version row.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
