"""Delivery lanes and the circuit breaker: one hung receiver must not stall the others (issue 17, point 4).

The hung receiver is real: a loopback socket that accepts every connection and never answers, so each attempt
to it costs one whole outbound timeout. The healthy receiver and the SMTP server answer at once. What is
measured is the order of events (how many attempts to the hung receiver had started by the time the healthy one
had received everything), plus the durations the worker itself records; the schedule is moved with the clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.notify import service
from app.notify.models import Delivery, OutboxMessage, WebhookEndpoint
from app.notify.worker import Deliverer
from tests.support.db import audit_count
from tests.support.receivers import Receiver, SmtpServer, outbox

MakeDeliverer = Callable[..., Deliverer]

TIMEOUT = 2.0  # seconds: the outbound timeout, what one attempt to the hung receiver costs
EVENTS = 20  # to each endpoint
LANE_BATCH = 5  # rows per lane and claim: the healthy lane needs four claims while the hung one is in flight
BREAKER = 3  # failures in a row that pause an endpoint
PAUSE = 60.0
INTRO = {
    "contact": {"name": "Ada"},
    "client": {"name": "Acme", "external_id": "c-1"},
    "leaver": {"name": "Leo"},
    "successor": {"name": "Sam", "email": "sam@example.com", "title": None},
    "effective_date": "2026-11-16",
}


class HungReceiver:
    """Accepts connections on 127.0.0.1 and never answers (nor closes them), counting when each arrived."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[float] = []  # time.monotonic() of each connection
        self.conns: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            self.conns.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        for conn in self.conns:
            conn.close()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r.fields for r in self.records if getattr(r, "fields", {}).get("event") == name]  # type: ignore[attr-defined]


@pytest.fixture
def hung() -> Iterator[HungReceiver]:
    h = HungReceiver()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def logs() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("handover.notify")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@pytest.fixture
def lanes(notify_settings: Settings) -> Settings:
    return notify_settings.model_copy(
        update={
            "outbound_timeout_seconds": TIMEOUT,
            "delivery_lease_seconds": int(6 * TIMEOUT),
            "delivery_lane_batch": LANE_BATCH,
            "delivery_breaker_failures": BREAKER,
            "delivery_breaker_pause_seconds": PAUSE,
        }
    )


def endpoint_row(db: Database, endpoint_id: int) -> WebhookEndpoint:
    with db.session(write=False) as s:
        row = s.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        return row


def test_a_hung_receiver_delays_neither_the_healthy_one_nor_email(
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    hung: HungReceiver,
    smtp: SmtpServer,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
    lanes: Settings,
    logs: Captured,
) -> None:
    healthy_at: list[float] = []
    receiver.on_request = lambda _: healthy_at.append(time.monotonic())
    receiver.start()
    bad = make_endpoint(Receiver(clock, port=hung.port), ["alert.raised"])  # registered first: its rows come first
    good = make_endpoint(receiver, ["alert.raised"])
    with transaction(db) as s:
        for i in range(EVENTS):
            service.emit(s, "alert.raised", {"alert_id": i}, now=clock.now())
        for i in range(6):
            service.enqueue(
                s,
                kind="client",
                template="client_intro",
                locale="en",
                channel="email",
                recipient=f"c{i}@client.example",
                data=INTRO,
                not_before=clock.now(),
                now=clock.now(),
            )

    worker = deliverer(settings=lanes)
    started = time.monotonic()
    worker.run(budget_seconds=None)

    # Everything for the healthy receiver and every email went out, verified …
    assert len(receiver.received) == EVENTS and all(r.verified for r in receiver.received)
    assert len(smtp.mails) == 6
    assert {r.status for r in outbox(db) if r.channel == "email"} == {"sent"}
    # … while the hung receiver had at most its first attempt open: not one more timeout went by. The healthy
    # lane needed EVENTS / LANE_BATCH = 4 claims meanwhile, none of which waited for the hung lane.
    last_healthy = max(healthy_at)
    assert sum(1 for t in hung.accepted if t <= last_healthy) <= 1, (hung.accepted, last_healthy, started)
    assert last_healthy - started < TIMEOUT  # the same fact on the clock: within the first timeout

    # The hung lane: one attempt per lane run (it stops at its first failure and hands the rest back), and after
    # BREAKER failures in a row the breaker opens: paused, with the rest of its rows never tried.
    assert len(hung.accepted) == BREAKER
    rows = [r for r in outbox(db) if r.endpoint_id == bad["id"]]
    assert sorted(r.attempts for r in rows) == [0] * (EVENTS - BREAKER) + [1] * BREAKER
    assert all(r.status in ("failed", "pending") for r in rows)
    ep = endpoint_row(db, bad["id"])
    assert ep.failure_streak == BREAKER and ep.pauses == 1
    assert ep.paused_until == clock.now() + dt.timedelta(seconds=PAUSE)
    with db.session(write=False) as s:
        durations = list(s.scalars(select(Delivery.duration_ms).where(Delivery.endpoint_id == bad["id"])))
    assert len(durations) == BREAKER and all(TIMEOUT * 900 <= d < TIMEOUT * 2000 for d in durations), durations
    assert endpoint_row(db, good["id"]).failure_streak == 0

    # Another worker (another process) reads the same breaker: nothing of the paused endpoint is claimed.
    assert deliverer(settings=lanes).run() == 0
    assert len(hung.accepted) == BREAKER

    # After the pause one probe; it fails, so the breaker opens again for twice as long.
    clock.advance(dt.timedelta(seconds=PAUSE + 1))
    assert worker.run() == 1
    assert len(hung.accepted) == BREAKER + 1
    ep = endpoint_row(db, bad["id"])
    assert ep.pauses == 2 and ep.paused_until == clock.now() + dt.timedelta(seconds=2 * PAUSE)

    # Every failure and the pauses are JSON log fields with the ids; no URL or secret anywhere.
    failed = logs.events("delivery.failed")
    assert len(failed) == BREAKER + 1
    assert {f["endpoint"] for f in failed} == {bad["id"]}
    assert {f["message_id"] for f in failed} <= {r.message_id for r in rows}
    assert all(f["error"].startswith("timeout") for f in failed)
    assert len(logs.events("endpoint.paused")) == 2
    text = repr([getattr(r, "fields", None) for r in logs.records])
    assert bad["secret"] not in text and good["secret"] not in text and str(hung.port) not in text


def test_a_success_closes_the_breaker(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, deliverer: MakeDeliverer, lanes: Settings
) -> None:
    receiver.script = [(503, {})] * BREAKER
    receiver.start()
    ep = make_endpoint(receiver, ["*"])
    with transaction(db) as s:
        for i in range(BREAKER + 2):
            service.emit(s, "alert.raised", {"alert_id": i}, now=clock.now())
    worker = deliverer(settings=lanes)
    assert worker.run() == BREAKER  # three 503s, one per lane run, then paused
    assert endpoint_row(db, ep["id"]).paused_until is not None
    clock.advance(dt.timedelta(seconds=PAUSE))
    assert worker.run() == BREAKER + 2  # the pause is over; the receiver answers 200 again: all of them go
    row = endpoint_row(db, ep["id"])
    assert (row.failure_streak, row.pauses, row.paused_until) == (0, 0, None)
    assert [r.status for r in outbox(db)] == ["sent"] * (BREAKER + 2)


def test_replay_requeues_an_endpoints_failed_and_dead_messages_of_a_window(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
    lanes: Settings,
    logs: Captured,
) -> None:
    receiver.script = [(500, {})] * 3
    receiver.start()
    ep = make_endpoint(receiver, ["*"])
    other = make_endpoint(Receiver(clock), ["alert.raised"])  # never started: its messages must stay as they are
    created = clock.now()
    with transaction(db) as s:
        for i in range(3):
            service.emit(s, "handover.created", {"handover_id": i}, now=created)
    assert deliverer(settings=lanes).run() == 3
    rows = [r for r in outbox(db) if r.endpoint_id == ep["id"]]
    assert [r.status for r in rows] == ["failed"] * 3 and not [r for r in outbox(db) if r.endpoint_id == other["id"]]
    with transaction(db) as s:  # one of them had all its tries (the message a receiver would miss for good)
        s.get(OutboxMessage, rows[0].id, with_for_update=True).status = "dead"  # type: ignore[union-attr]
    assert len(logs.events("delivery.failed")) == 3

    url = f"/v1/webhook-endpoints/{ep['id']}/replay"
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    window = {"from": (created - hour).isoformat(), "to": (created + hour).isoformat()}
    earlier = {"from": (created - 2 * day).isoformat(), "to": (created - day).isoformat()}
    assert client.post(url, json=earlier, headers=auth()).json()["count"] == 0
    too_long = {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    for bad in (too_long, {"from": window["to"], "to": window["from"]}, {"from": "2026-01-01T00:00:00", "to": "x"}):
        r = client.post(url, json=bad, headers=auth())
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert client.post("/v1/webhook-endpoints/99999/replay", json=window, headers=auth()).status_code == 404
    assert client.post(url, json=window, headers=auth("auditor")).status_code == 403

    r = client.post(url, json=window, headers=auth())
    assert r.status_code == 202, r.text
    assert r.json() == {"endpoint_id": ep["id"], "count": 3, "more": False}
    assert audit_count(db, "webhook_endpoint.replayed") == 2  # the empty window is audited too
    assert {r.status for r in outbox(db) if r.endpoint_id == ep["id"]} == {"pending"}
    assert deliverer(settings=lanes).run() == 3
    assert {r.status for r in outbox(db) if r.endpoint_id == ep["id"]} == {"sent"}
    assert len(receiver.received) == 6 and len({g.webhook_id for g in receiver.received}) == 3  # the same messages
