"""Deployment: compose.yaml, the lock files, and concurrent `handover migrate` runs (replicas starting together).

No Docker engine runs here: compose.yaml is parsed and its commands checked against the real CLI parser.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.script import ScriptDirectory
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import create_engine, inspect, text

from app.cli import build_parser
from app.core.migrate import alembic_config
from app.metadata import metadata
from tests.conftest import _create_pg_database

PG_URL = os.environ.get("HANDOVER_TEST_DATABASE_URL")
HANDOVER = shutil.which("handover", path=str(Path(sys.executable).parent)) or "handover"
SECRET = "d" * 48
AUDIT_KEY = base64.b64encode(b"a" * 32).decode()  # an Ed25519 seed: production refuses to start without one


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HANDOVER_ENVIRONMENT": "production",
        "HANDOVER_JWT_SECRET": SECRET,
        "HANDOVER_AUDIT_SIGNING_KEY": AUDIT_KEY,
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
    path = tmp_path.resolve() / "handover.db"  # as /proc/<pid>/fd names it
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


ROOT = Path(__file__).resolve().parents[1]
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _interpolate(value: str) -> str:
    """What compose makes of a value when only the required variables are set: defaults, and a stand-in."""
    return INTERPOLATION.sub(lambda m: m.group(3) if m.group(2) == "-" else "x" * 40, value)


def _parse(command: list[str]) -> argparse.Namespace:
    assert command[0] == "handover"
    return build_parser().parse_args([_interpolate(part) for part in command[1:]])


def test_compose_runs_postgresql_migrations_once_the_api_and_two_workers() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"db", "migrate", "api", "worker"}

    db = services["db"]
    assert db["image"] == "postgres:15"
    assert "pg_isready" in db["healthcheck"]["test"]
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a bind mount

    migrate = services["migrate"]
    assert _parse(migrate["command"]).func.__name__ == "_migrate"
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}

    api = _parse(services["api"]["command"])
    assert api.func.__name__ == "_serve" and api.host == "0.0.0.0" and api.workers >= 2 and not api.migrate
    worker = services["worker"]
    assert _parse(worker["command"]).func.__name__ == "_worker"
    assert worker["deploy"]["replicas"] == 2
    assert worker["healthcheck"] == {"disable": True}  # the image's HEALTHCHECK is the API's
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert services[name]["build"] == "." and services[name]["image"] == migrate["image"]


def test_compose_commits_no_secret_and_requires_the_jwt_secret_and_audit_key() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            if re.search("SECRET|PASSWORD|KEY", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{name}: {key} must come from the environment"
        for key, value in service.get("environment", {}).items():
            for var, op, _ in INTERPOLATION.findall(value):
                if re.search("SECRET|PASSWORD", var):
                    assert op == "?", f"{name}: {key} has a default for {var}"
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        assert env["HANDOVER_JWT_SECRET"].startswith("${HANDOVER_JWT_SECRET:?")
        # Production refuses to start without the key that signs audit checkpoints.
        assert env["HANDOVER_AUDIT_SIGNING_KEY"].startswith("${HANDOVER_AUDIT_SIGNING_KEY:?")
        url = _interpolate(env["HANDOVER_DATABASE_URL"])
        assert url.startswith("postgresql+psycopg://") and "@db:5432/" in url
    assert "POSTGRES_PASSWORD:?" in services["db"]["environment"]["POSTGRES_PASSWORD"]


def _pins(lock: Path) -> dict[str, str]:
    """name -> version of every requirement in a lock file (markers aside: a fork pins one name twice)."""
    pins: dict[str, str] = {}
    text = lock.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, _, rest = line.partition(" ")
        name, sep, version = requirement.partition("==")
        assert sep, f"{lock.name}: not pinned: {line}"
        assert "--hash=sha256:" in rest, f"{lock.name}: no hash for {name}"
        pins.setdefault(canonicalize_name(name), version)
    return pins


def _requirements(specs: list[str]) -> list[Requirement]:
    return [Requirement(spec) for spec in specs]


def test_the_lock_files_are_in_step_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(ROOT / "requirements.lock")
    dev = _pins(ROOT / "requirements-dev.lock")
    extras = {"python-jose": {"cryptography": "cryptography"}, "psycopg": {"binary": "psycopg-binary"}}
    for lock, specs in (
        (runtime, project["dependencies"]),
        (dev, project["dependencies"] + project["optional-dependencies"]["dev"]),
    ):
        for req in _requirements(specs):
            name = canonicalize_name(req.name)
            assert name in lock, f"{name} is in pyproject.toml but not locked: re-run the compile (README, Deploy)"
            assert req.specifier.contains(lock[name], prereleases=True), f"{name}=={lock[name]} breaks {req}"
            for extra in req.extras:
                assert extras[name][extra] in lock, f"{name}[{extra}] is not locked"
    # Tests run exactly what production runs.
    assert {name: dev[name] for name in runtime} == runtime


def test_the_image_and_ci_install_from_the_locks() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in readme.splitlines() if line.endswith(".venv/bin/pytest"))
    assert "-r requirements-dev.lock" in test_command and "--no-deps -e ." in test_command
    assert test_command in ci.splitlines()
    run_command = next(line for line in readme.splitlines() if line.endswith(".venv/bin/handover serve"))
    assert "-r requirements.lock" in run_command and "--no-deps -e ." in run_command
