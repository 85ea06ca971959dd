"""/metrics in one process (TestClient): queue gauges read from the database, the pool gauges, the worker's counters."""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any

import httpx
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.core.clock import ManualClock
from app.core.db import Database, transaction
from app.notify import service as notify
from app.worker import run_once, serve_metrics
from tests.conftest import make_settings
from tests.support.company import EFFECTIVE, approve, plan

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def samples(text: str) -> dict[str, float]:
    """`name{labels}` → value, for every sample of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def scrape(client: TestClient, auth: Any) -> dict[str, float]:
    r = client.get("/metrics", headers=auth("admin"))
    assert r.status_code == 200, r.text
    return samples(r.text)


BRIEFING = {
    "clients": [],
    "leaver": {"name": "Lee"},
    "successor": {"name": "Sam"},
    "handover": {"id": 1, "effective_date": "2026-11-16"},
}


def enqueue_emails(
    db: Database, n: int, *, due: dt.datetime, now: dt.datetime, data: dict[str, Any] = BRIEFING
) -> None:
    with transaction(db) as session:
        for i in range(n):
            notify.enqueue(
                session,
                kind="internal",
                template="successor_briefing",
                locale="en",
                channel="email",
                recipient=f"m{i}@example.test",
                data=data,
                not_before=due,
                now=now,
            )


PENDING = 'handover_outbox_messages{category="notification",status="pending"}'
OLDEST = "handover_outbox_oldest_due_age_seconds"


def test_queue_gauges_follow_the_outbox(client: TestClient, auth: Any, db: Database, clock: ManualClock) -> None:
    before = scrape(client, auth)
    assert before["handover_queue_scrape_ok"] == 1
    assert before[PENDING] == 0 and before[OLDEST] == 0
    assert before['handover_outbox_messages{category="event",status="failed"}'] == 0
    now = clock.now()
    enqueue_emails(db, 3, due=now - dt.timedelta(hours=1), now=now)  # due from now on (not before: an hour ago)
    enqueue_emails(db, 2, due=now + dt.timedelta(days=2), now=now)  # scheduled: pending, but not waiting yet
    after = scrape(client, auth)
    assert after[PENDING] == 5 and after[OLDEST] == 0
    clock.advance(dt.timedelta(minutes=10))
    assert scrape(client, auth)[OLDEST] == 600
    clock.advance(dt.timedelta(days=3))
    assert scrape(client, auth)[OLDEST] == 600 + 3 * 86400


def test_due_handovers_counted_until_a_worker_executes_them(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    assert scrape(client, auth)["handover_handovers_due"] == 0
    clock.set(EFFECTIVE + dt.timedelta(minutes=1))
    assert scrape(client, auth)["handover_handovers_due"] == 1
    passes = REGISTRY.get_sample_value("handover_worker_pass_duration_seconds_count") or 0
    done = run_once(db, clock)
    assert done["execute_due_handovers"] == 1
    assert scrape(client, auth)["handover_handovers_due"] == 0
    assert REGISTRY.get_sample_value("handover_worker_pass_duration_seconds_count") == passes + 1
    job = {"job": "execute_due_handovers"}
    assert (REGISTRY.get_sample_value("handover_worker_job_duration_seconds_count", job) or 0) >= 1


def test_deliveries_are_counted_by_result(client: TestClient, auth: Any, db: Database, clock: ManualClock) -> None:
    # No SMTP host configured: every email attempt fails and is retried later.
    def count(result: str) -> float:
        labels = {"channel": "email", "result": result}
        return REGISTRY.get_sample_value("handover_outbox_deliveries_total", labels) or 0

    failed, dead = count("failed"), count("dead")
    enqueue_emails(db, 2, due=clock.now(), now=clock.now())
    enqueue_emails(db, 1, due=clock.now(), now=clock.now(), data={})  # does not render: dead at once
    run_once(db, clock)
    assert (count("failed"), count("dead")) == (failed + 2, dead + 1)
    assert scrape(client, auth)['handover_outbox_messages{category="notification",status="failed"}'] == 2


def test_pool_gauges_are_never_negative(client: TestClient, auth: Any, app: Any) -> None:
    values = scrape(client, auth)
    size = app.state.settings.database_pool_size
    assert values["handover_db_pool_size"] == size
    assert values["handover_db_pool_overflow"] == 0  # was QueuePool.overflow(): −size + open connections
    assert values["handover_db_pool_checked_out"] >= 0
    db: Database = app.state.db
    held = [db.engine.connect() for _ in range(size + 2)]  # two beyond the pool size
    try:
        values = scrape(client, auth)
        assert values["handover_db_pool_checked_out"] >= size + 2
        assert values["handover_db_pool_overflow"] >= 2
    finally:
        for conn in held:
            conn.close()
    values = scrape(client, auth)
    assert values["handover_db_pool_overflow"] == 0 and values["handover_db_pool_checked_out"] <= 1


def test_the_worker_serves_its_metrics_on_its_own_port(database_url: str) -> None:
    settings = make_settings(database_url, worker_metrics_port=0)
    exporter = serve_metrics(settings)
    assert exporter is not None
    server, thread = exporter
    try:
        port = server.server_address[1]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "handover_worker_pass_duration_seconds" in text and "handover_outbox_deliveries_total" in text
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert serve_metrics(make_settings(database_url)) is None
    assert isinstance(thread, threading.Thread)
