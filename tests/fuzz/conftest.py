"""Fixtures for the fuzz tests: the app they reach (with the HR webhook configured) and a seeded company.

The company is seeded once per module, put back before each test (and each stateful scenario), and the database
emptied at the module's end: schemathesis's cases meet real ids (SQLite reuses small ids, which hypothesis favours).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.migrate import upgrade
from app.main import create_app
from tests.conftest import START, make_settings
from tests.fuzz.harness import TARGET
from tests.fuzz.world import World, empty, seed

# A fixed test secret: with it the webhook answers 401 to unsigned deliveries instead of 503 "not configured".
HR_SECRET = "whsec_ZnV6ei1ob29rLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc="  # noqa: S105


@pytest.fixture(scope="session")
def fuzz_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database of the fuzz suite's own: the HTTP contract does not depend on the database, so the suite
    runs once (not once per backend with the second run skipped)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'handover.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def fuzz_settings(fuzz_database_url: str) -> Settings:
    # Private webhook targets allowed, so that the seed can register one on 127.0.0.1.
    return make_settings(fuzz_database_url, hr_webhook_secret=HR_SECRET, webhook_allow_private=True)


@pytest.fixture(scope="session")
def fuzz_app(fuzz_settings: Settings, clock: ManualClock) -> Iterator[FastAPI]:
    app = create_app(fuzz_settings, clock=clock)
    yield app
    app.state.db.dispose()


@pytest.fixture(scope="module")
def fuzz_module_world(fuzz_app: FastAPI, fuzz_settings: Settings, clock: ManualClock) -> Iterator[World]:
    """The company seeded once per module; the database is emptied at the module's end."""
    clock.set(START)
    empty(fuzz_app)
    with TestClient(fuzz_app, raise_server_exceptions=False) as client:
        world = World(fuzz_app, seed(client, fuzz_settings))
    TARGET.app = fuzz_app
    try:
        yield world
    finally:
        TARGET.app = None
        empty(fuzz_app)
        clock.set(START)


@pytest.fixture
def fuzz_world(fuzz_module_world: World) -> World:
    """The seeded world, as it was seeded: each test starts from it, whatever the previous one changed.

    A test that may write marks the world dirty (`World.dirty`); reads leave it as it is, and need no reset."""
    if fuzz_module_world.dirty:
        fuzz_module_world.reset()
    return fuzz_module_world
