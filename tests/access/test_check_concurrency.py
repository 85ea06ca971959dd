"""Concurrent access checks: never more connections at once than the pool keeps (no overflow opened per burst)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.core.config import Settings
from app.core.db import Database


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def owner(client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    emp = {"external_id": "o1", "name": "O", "email": "o1@example.com", "seniority": 3, "clearance": 3}
    assert client.post("/v1/employees/batch", json={"items": [emp]}, headers=auth("hr")).status_code == 200
    cls = [{"external_id": f"c{i}", "name": f"C{i}", "tier": "standard", "owner": "o1"} for i in range(8)]
    assert client.post("/v1/clients/batch", json={"items": cls}, headers=auth("hr")).status_code == 200


class PeakCheckouts:
    def __init__(self) -> None:
        self.out = 0
        self.peak = 0
        self._lock = threading.Lock()

    def checkout(self, *_: Any) -> None:
        with self._lock:
            self.out += 1
            self.peak = max(self.peak, self.out)

    def checkin(self, *_: Any) -> None:
        with self._lock:
            self.out -= 1


@pytest.mark.anyio
async def test_a_burst_of_checks_stays_within_the_pool(
    app: FastAPI, db: Database, settings: Settings, owner: None, auth: Callable[..., dict[str, str]]
) -> None:
    peak = PeakCheckouts()
    event.listen(db.engine.pool, "checkout", peak.checkout)
    event.listen(db.engine.pool, "checkin", peak.checkin)
    headers = auth("integration", scope="access:check")
    answers: list[httpx.Response] = []
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as c:

            async def one(i: int) -> None:
                body = {"employee": "o1", "client": f"c{i % 8}", "action": "view"}
                answers.append(await c.post("/v1/access/check", json=body))

            async with anyio.create_task_group() as tg:
                for i in range(80):
                    tg.start_soon(one, i)
    finally:
        event.remove(db.engine.pool, "checkout", peak.checkout)
        event.remove(db.engine.pool, "checkin", peak.checkin)
    assert len(answers) == 80
    assert all(r.status_code == 200 and r.json()["allowed"] for r in answers), answers[0].text
    assert 1 <= peak.peak <= settings.database_pool_size
