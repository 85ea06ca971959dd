"""Run Alembic migrations from code (CLI, tests, embedded start-up)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
MIGRATION_LOCK_KEY = 0x4D494752  # "MIGR"


def project_root() -> Path:
    """The checkout (editable install) or the working directory (container) holding migrations/."""
    for candidate in (PACKAGE_ROOT, Path.cwd()):
        if (candidate / "migrations" / "env.py").exists():
            return candidate
    raise RuntimeError("migrations/ not found; run from the project directory")


def alembic_config(database_url: str | None = None) -> Config:
    root = project_root()
    ini = root / "alembic.ini"
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(root / "migrations"))
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Concurrent upgrades (replicas starting together) run one after another, so the later ones find nothing to do.

    The upgrade itself must be one transaction (env.py configures transactional DDL). PostgreSQL: a session-level
    advisory lock, taken before Alembic reads the version and released after its commit. SQLite: that transaction
    begins IMMEDIATE, so the file's write lock is held from the version read on (waiting up to the busy timeout).
    """
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.execution_options(sqlite_begin="IMMEDIATE")
    if dialect != "postgresql":
        yield
        return
    with connection.begin():
        # Wait as long as the other upgrade takes, not HANDOVER_STATEMENT_TIMEOUT_MS.
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        if not connection.invalidated:
            with connection.begin():
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
