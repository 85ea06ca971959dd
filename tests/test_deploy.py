"""Deployment: concurrent `handover migrate` runs (replicas starting together) all succeed, on both databases."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from app.core.migrate import alembic_config
from app.models import metadata
from tests.conftest import _create_pg_database

PG_URL = os.environ.get("HANDOVER_TEST_DATABASE_URL")
HANDOVER = shutil.which("handover", path=str(Path(sys.executable).parent)) or "handover"
SECRET = "d" * 48


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HANDOVER_ENVIRONMENT": "production",
        "HANDOVER_JWT_SECRET": SECRET,
        "HANDOVER_DATABASE_URL": database_url,
    }


def _start_migrations(
    tmp_path: Path, database_url: str, n: int = 3, env: dict[str, str] | None = None
) -> list[subprocess.Popen[str]]:
    env = env or _env(tmp_path, database_url)
    return [
        subprocess.Popen(
            [HANDOVER, "migrate"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]


def _finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        results.append((proc.returncode, err))
    return results


def _assert_at_head(database_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
            assert set(metadata.tables) <= set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.skipif(not PG_URL, reason="needs HANDOVER_TEST_DATABASE_URL (PostgreSQL)")
def test_three_concurrent_migrations_all_succeed_on_postgresql(tmp_path: Path) -> None:
    assert PG_URL
    url, drop = _create_pg_database(PG_URL)
    name = url.rsplit("/", 1)[1]
    gate = create_engine(url)
    try:
        with gate.connect() as hold, gate.connect() as watch:
            # A barrier: an uncommitted alembic_version makes every run block at the same point (creating it, or
            # before that on the migration lock); releasing it lets all three go at once.
            hold.execute(text("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)"))
            procs = _start_migrations(tmp_path, url)
            try:
                deadline = time.monotonic() + 60
                while True:
                    waiting = watch.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
                            " AND pid <> pg_backend_pid()"
                        ),
                        {"db": name},
                    ).scalar_one()
                    watch.rollback()
                    if waiting == 3:
                        break
                    assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
                    assert time.monotonic() < deadline, f"only {waiting} of 3 runs reached the database"
                    time.sleep(0.1)  # waiting for three processes to boot, not for a schedule
            finally:
                hold.rollback()
            results = _finish(procs)
        assert [code for code, _ in results] == [0, 0, 0], "\n".join(err for _, err in results)
        _assert_at_head(url)
    finally:
        gate.dispose()
        drop()


def _has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except (FileNotFoundError, PermissionError):
        return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the runs open the file")
def test_three_concurrent_migrations_all_succeed_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "handover.db"
    url = f"sqlite:///{path}"
    # A barrier: an exclusive lock on a new (rollback-journal) file stops every run at its first statement;
    # once all three have the file open, releasing it lets them go at once.
    hold = sqlite3.connect(path, isolation_level=None)
    hold.execute("BEGIN EXCLUSIVE")
    env = {**_env(tmp_path, url), "HANDOVER_SQLITE_BUSY_TIMEOUT_MS": "120000"}
    procs = _start_migrations(tmp_path, url, env=env)
    try:
        deadline = time.monotonic() + 60
        while not all(_has_open(p.pid, path) for p in procs):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "the runs did not reach the database"
            time.sleep(0.1)  # waiting for three processes to boot, not for a schedule
    finally:
        hold.rollback()
        hold.close()
    results = _finish(procs)
    assert [code for code, _ in results] == [0, 0, 0], "\n".join(err for _, err in results)
    _assert_at_head(url)
