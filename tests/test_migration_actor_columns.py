"""The actor-column migration keeps every row: on SQLite it rebuilds parent tables, which must not cascade."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, inspect, select

from app.core.auth import mint_token
from app.core.migrate import alembic_config, upgrade
from app.main import create_app
from app.metadata import metadata
from tests.conftest import _create_pg_database, make_settings
from tests.support.company import EFFECTIVE, clients, employees

REVISION = "7e1d3c5a9b20"  # actor columns fit long subjects


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    url, drop = _create_pg_database(os.environ["HANDOVER_TEST_DATABASE_URL"])
    try:
        yield url
    finally:
        drop()


def _populate(url: str) -> None:
    settings = make_settings(url, webhook_allow_private=True)
    admin = {"Authorization": f"Bearer {mint_token(settings, role='admin', sub='migration-test')}"}
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert c.post("/v1/employees/batch", json={"items": employees()}, headers=admin).status_code == 200
        assert c.post("/v1/clients/batch", json={"items": clients()}, headers=admin).status_code == 200
        body = {"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()}
        hid = c.post("/v1/handovers", json=body, headers=admin).json()["id"]
        assert c.post(f"/v1/handovers/{hid}/plan", headers=admin).status_code == 200
        assert c.post(f"/v1/handovers/{hid}/approve", headers=admin).status_code == 200
        assert c.post(f"/v1/handovers/{hid}/execute", headers=admin).status_code == 200
        hook = {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}
        assert c.post("/v1/webhook-endpoints", json=hook, headers=admin).status_code == 201


def _counts(url: str) -> dict[str, int]:
    """Rows per table, for the tables this revision has (later revisions may add tables)."""
    engine = create_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0)
                for t in metadata.sorted_tables
                if t.name in present
            }
    finally:
        engine.dispose()


def _actor_length(url: str) -> int:
    engine = create_engine(url)
    try:
        columns = {c["name"]: c for c in inspect(engine).get_columns("audit_entry")}
        return int(columns["actor"]["type"].length)
    finally:
        engine.dispose()


def test_down_and_up_again_keeps_every_row(fresh_url: str) -> None:
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION).down_revision
    assert isinstance(previous, str)
    upgrade(fresh_url)
    _populate(fresh_url)
    before = _counts(fresh_url)
    assert all(before[t] > 0 for t in ("handover", "handover_item", "follow_up", "access_grant", "audit_entry"))
    assert before["webhook_subscription"] > 0

    command.downgrade(alembic_config(fresh_url), previous)
    assert _actor_length(fresh_url) == 200
    down = _counts(fresh_url)
    assert down == {t: n for t, n in before.items() if t in down}
    upgrade(fresh_url)
    assert _actor_length(fresh_url) == 300
    assert _counts(fresh_url) == before
    if fresh_url.startswith("sqlite"):
        engine = create_engine(fresh_url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        engine.dispose()
