"""Engine, sessions and the declarative base shared by every module."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

from sqlalchemy import JSON, DateTime, Engine, MetaData, Select, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from app.core.config import Settings

# A statement one module hands another (e.g. the workflow's rows for access to write grants from): any columns.
AnySelect: TypeAlias = Select[*tuple[Any, ...]]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Columns that store an actor (`role:sub` of a token, or a system name): the longest role, ':', a 255-character sub.
ACTOR_LENGTH = 300


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on both databases: SQLite forgets the zone, so we put it back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a timezone-aware UTC time")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def make_engine(settings: Settings) -> Engine:
    """One engine per process; SQLite gets WAL, foreign keys and explicit BEGIN control."""
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": settings.sqlite_busy_timeout_ms / 1000,
            },
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_pre_ping=False,
            pool_timeout=settings.database_pool_timeout_seconds,
        )
        _configure_sqlite(engine, settings)
        return engine
    return create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=True,
        pool_timeout=settings.database_pool_timeout_seconds,
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={settings.statement_timeout_ms}",
        },
    )


def _configure_sqlite(engine: Engine, settings: Settings) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from pysqlite so BEGIN IMMEDIATE is possible.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred reader cannot upgrade after
        # another writer committed (SQLITE_BUSY_SNAPSHOT), so read-then-write would fail.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


class Database:
    """The engine and the two session factories: writers and readers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        writer_bind = self.engine.execution_options(sqlite_begin="IMMEDIATE") if settings.is_sqlite else self.engine
        self.writer = sessionmaker(bind=writer_bind, expire_on_commit=False, autoflush=False)
        self.reader = sessionmaker(bind=self.engine, expire_on_commit=False, autoflush=False)
        # For one-statement reads (the access check): on PostgreSQL in autocommit, so the read is one round trip,
        # with no BEGIN before it and no ROLLBACK when the connection goes back to the pool (a single statement
        # sees one snapshot either way). Same pool. SQLite keeps its explicit BEGIN (see _configure_sqlite).
        self.single_read: Engine = (
            self.engine if settings.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    def ping(self) -> None:
        """One round trip, so a process fails at start-up, not at its first job, when the database does not answer."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def session(self, *, write: bool = True) -> Session:
        return (self.writer if write else self.reader)()

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def transaction(db: Database, *, write: bool = True) -> Iterator[Session]:
    """A unit of work outside HTTP (CLI, worker): commit on success, roll back on error."""
    session = db.session(write=write)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
