"""The database engine and schema upgrades (run by `init` and at start-up)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

# Alembic (11 MB) is imported only to upgrade or inspect the schema, not by a serving gateway worker.
if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (`sqlite:///path`), or None for other databases and `:memory:`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or ":memory:" in url or url[len(prefix) :].startswith("file:"):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None and not path.exists() and path.parent.is_dir():
            # SQLite would create it with the umask's mode (often 0644): it holds password hashes.
            # Its -wal and -shm files take the database file's mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            # FULL (not WAL's usual NORMAL): a revocation or suspension committed just before a power
            # cut must not come back; the sync costs ~0.2 ms a commit here (bench/ANALYSIS.md).
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it already is."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def not_initialised(url: str) -> str | None:
    """Why the database at `url` is not one `init` made (missing, or without a schema), or None.
    Looks without creating or changing anything."""
    path = sqlite_file(url)
    if path is not None:
        where = str(path.resolve())
        if not path.exists():
            return f"there is no database at {where}"
        engine = create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    else:
        where = url.rsplit("@", 1)[-1]  # no password in messages
        engine = create_engine(url, pool_pre_ping=True)
    try:
        revision = current_revision(engine)
    except DatabaseError as exc:
        return f"the database at {where} cannot be read ({exc.orig})"
    finally:
        engine.dispose()
    if revision is None:
        return f"the database at {where} was never initialised (it holds no campusvpn schema)"
    return None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
