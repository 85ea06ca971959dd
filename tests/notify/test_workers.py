"""Crashes and concurrency: a killed worker's rows after the lease, SIGTERM mid-batch, two workers on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import insert

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.notify import service
from app.notify.models import OutboxMessage
from app.notify.worker import Deliverer
from tests.support.receivers import Receiver, outbox

MakeDeliverer = Callable[..., Deliverer]


def emit(db: Database, clock: ManualClock, n: int) -> None:
    with transaction(db) as s:
        for i in range(n):
            service.emit(s, "alert.raised", {"alert_id": i}, now=clock.now())


def test_killed_worker_rows_are_delivered_by_another_after_the_lease(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, deliverer: MakeDeliverer
) -> None:
    receiver.start()
    make_endpoint(receiver, ["*"])
    emit(db, clock, 5)
    crashed = deliverer(batch_size=3)
    claim = crashed.claim()  # claimed and committed, then the process "dies" before sending anything
    assert claim.claimed == 3
    survivor = deliverer()
    assert survivor.run() == 2  # the two rows nobody holds
    assert survivor.run() == 0  # the crashed worker's rows are leased
    clock.advance(dt.timedelta(seconds=notify_lease(survivor)))
    assert survivor.run() == 3
    counts = Counter(receiver.ids())
    assert len(counts) == 5 and set(counts.values()) == {1}
    assert {r.status for r in outbox(db)} == {"sent"}
    assert all(r.claim_token is None and r.locked_until is None for r in outbox(db))


def notify_lease(d: Deliverer) -> int:
    assert d.settings is not None
    return d.settings.delivery_lease_seconds


def test_sigterm_finishes_the_delivery_in_flight_and_hands_back_the_rest(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, deliverer: MakeDeliverer
) -> None:
    stop = threading.Event()
    receiver.on_request = lambda _: stop.set()  # the signal arrives while the first delivery is in flight
    receiver.start()
    make_endpoint(receiver, ["*"])
    emit(db, clock, 4)
    worker = deliverer(stop=stop)
    assert worker.run() == 1  # claimed four, finished one …
    assert len(receiver.received) == 1  # … sent one, and stopped (handing back the other three)
    rows = outbox(db)
    assert [r.status for r in rows].count("sent") == 1
    assert all(r.locked_until is None for r in rows)  # no lease to wait for
    receiver.on_request = None
    assert deliverer().run() == 3  # another worker takes over at once
    assert len(set(receiver.ids())) == 4


def test_a_row_sent_by_a_worker_whose_lease_ran_out_is_recorded_once_as_sent(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, deliverer: MakeDeliverer
) -> None:
    """At least once: a slow worker and its successor may both send; the receiver dedupes by webhook-id."""
    receiver.start()
    make_endpoint(receiver, ["*"])
    emit(db, clock, 1)
    slow = deliverer()
    claim = slow.claim()
    clock.advance(dt.timedelta(seconds=notify_lease(slow) + 1))
    assert deliverer().run() == 1
    slow.deliver(claim.token, claim.batch)  # the slow one finishes late
    ids = receiver.ids()
    assert len(ids) == 2 and len(set(ids)) == 1
    [row] = outbox(db)
    assert (row.status, row.attempts, row.claim_token) == ("sent", 2, None)


def test_two_workers_share_the_outbox_each_row_exactly_once(
    backend: str,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    notify_settings: Settings,
) -> None:
    rows = 2000
    if backend != "postgresql":
        pytest.skip("SQLite runs a single worker")
    receiver.start()
    endpoint = make_endpoint(receiver, ["*"])
    now = clock.now()
    with transaction(db) as s:
        s.execute(
            insert(OutboxMessage),
            [
                {
                    "message_id": service.new_message_id(),
                    "category": "event",
                    "event_type": "alert.raised",
                    "channel": "webhook",
                    "endpoint_id": endpoint["id"],
                    "payload": {"type": "alert.raised", "timestamp": now.isoformat(), "data": {"alert_id": i}},
                    "status": "pending",
                    "priority": 0,
                    "attempts": 0,
                    "not_before": now,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for i in range(rows)
            ],
        )
    done: dict[int, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(n: int) -> None:
        database = Database(notify_settings)
        worker = Deliverer(database, clock, settings=notify_settings, batch_size=25)
        try:
            start.wait()
            done[n] = worker.run(budget_seconds=None)
        except BaseException as exc:
            errors.append(exc)
        finally:
            worker.close()
            database.dispose()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    counts = Counter(receiver.ids())
    assert len(counts) == rows and set(counts.values()) == {1}
    assert all(r.verified for r in receiver.received)
    assert done[0] + done[1] == rows and done[0] > 0 and done[1] > 0
    assert {r.status for r in outbox(db)} == {"sent"}
