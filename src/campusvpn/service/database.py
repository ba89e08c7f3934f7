"""Creating the database, or bringing its schema up to date, for a configuration."""

from __future__ import annotations

from campusvpn.platform.config_schema import Config
from campusvpn.store import db


def upgrade(config: Config) -> str | None:
    """Create the database or migrate it to the newest schema; returns that schema's revision."""
    engine = db.make_engine(config.database_url)
    try:
        db.upgrade(engine)
        return db.head_revision(engine)
    finally:
        engine.dispose()


def not_initialised(config: Config) -> str | None:
    """Why the configured database is not one `campusvpn init` made, or None (nothing is created)."""
    return db.not_initialised(config.database_url)
