"""Alembic environment: the engine is handed in by campusvpn.store.db, never read from an ini file."""

from alembic import context

from campusvpn.store.models import Base, postgresql_where

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        postgresql_where(Base.metadata)
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
