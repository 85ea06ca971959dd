"""Test fixtures: a fresh database per run and backend, real commits, cleaned after each test.

Every test that uses `client` or `db` runs on SQLite and, when HANDOVER_TEST_DATABASE_URL is set, on
PostgreSQL as well (a session fixture parametrised by backend).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.auth import mint_token
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.core.migrate import upgrade
from app.main import create_app
from app.metadata import metadata

pytest_plugins = ["tests.support.company", "tests.support.continuity", "tests.support.delivery"]

TEST_SECRET = "test-secret-0123456789abcdef-0123456789abcdef"  # noqa: S105
START = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("HANDOVER_TEST_DATABASE_URL") else [])


def _create_pg_database(base_url: str) -> tuple[str, Callable[[], None]]:
    url = make_url(base_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"handover_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()

    def drop() -> None:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("db") / "handover.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url
        return
    url, drop = _create_pg_database(os.environ["HANDOVER_TEST_DATABASE_URL"])
    try:
        upgrade(url)
        yield url
    finally:
        drop()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "jwt_issuer": "https://id.example.test",
        "jwt_audience": "handover-service",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(scope="session")
def app(settings: Settings, clock: ManualClock) -> FastAPI:
    return create_app(settings, clock=clock)


def _clean(db: Database) -> None:
    with db.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def db(app: FastAPI, clock: ManualClock) -> Iterator[Database]:
    clock.set(START)
    database: Database = app.state.db
    try:
        yield database
    finally:
        _clean(database)
        clock.set(START)


@pytest.fixture
def client(app: FastAPI, db: Database) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


TokenFactory = Callable[..., str]


@pytest.fixture
def token(settings: Settings, clock: ManualClock) -> TokenFactory:
    def make(
        role: str = "admin",
        *,
        sub: str | None = None,
        emp: str | None = None,
        scope: str | None = None,
        **kwargs: Any,
    ) -> str:
        # Tokens are signed against real time: the app's clock only drives domain logic.
        return mint_token(settings, role=role, sub=sub or f"test-{role}", emp=emp, scope=scope, **kwargs)

    return make


@pytest.fixture
def auth(token: TokenFactory) -> Callable[..., dict[str, str]]:
    def headers(role: str = "admin", **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(role, **kwargs)}"}

    return headers
