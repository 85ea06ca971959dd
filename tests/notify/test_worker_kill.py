"""A real `handover worker` process SIGKILLed mid-batch: every row is delivered once its lease ends.

test_workers.py simulates a crash by claiming rows and abandoning them; here the worker is a separate process
running the `handover worker` command on the system clock, killed with SIGKILL while a request is in flight
and with results it has not recorded yet. A second worker (in this process, on the ManualClock) must leave the
dead worker's rows alone until their lease ends, then send them: rows the receiver already got go again with the
same webhook-id and body (the receiver dedupes), and the database records every row as sent exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.core.clock import ManualClock
from app.core.db import Database, transaction
from app.notify import service
from app.notify.models import Delivery, OutboxMessage
from app.notify.worker import RECORD_EVERY, Deliverer
from tests.conftest import TEST_SECRET
from tests.support.receivers import Received, Receiver, outbox

MakeDeliverer = Callable[..., Deliverer]

ROWS = 200
BATCH = 50  # the killed worker's batch size: at most this many rows are in its hands when it dies
HOLD_AT = BATCH + 38  # the receiver holds this request open: the worker dies waiting for it, mid-batch 2
DELAY = 0.01  # seconds per request: the receiver is slow enough that results pile up between recordings
LEASE = 120
TIMEOUT = 20.0  # the worker's outbound timeout: the held request must not time out before the kill
BOOT_SECONDS = 30.0  # bound on waiting for the subprocess to boot and reach the held request
TICK = dt.timedelta(milliseconds=1)


class SlowReceiver:
    """Delays every request; holds the HOLD_AT-th open (after recording it) until released."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, _item: Received) -> None:
        with self.lock:
            self.count += 1
            n = self.count
        if n == HOLD_AT:
            # The worker is killed while it waits for this answer; writing it afterwards then fails with a
            # BrokenPipeError that the server thread prints to (captured) stderr: expected, not a failure.
            self.held.set()
            self.release.wait(timeout=BOOT_SECONDS)
        time.sleep(DELAY)


def _worker_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDOVER_")}
    env.update(
        {
            "HANDOVER_ENVIRONMENT": "test",
            "HANDOVER_DATABASE_URL": database_url,
            "HANDOVER_JWT_SECRET": TEST_SECRET,
            "HANDOVER_LOG_LEVEL": "WARNING",
            "HANDOVER_WEBHOOK_ALLOW_PRIVATE": "true",
            "HANDOVER_OUTBOUND_TIMEOUT_SECONDS": str(TIMEOUT),
            "HANDOVER_DELIVERY_LEASE_SECONDS": str(LEASE),
            "HANDOVER_DELIVERY_BATCH_SIZE": str(BATCH),
            "HANDOVER_WORKER_INTERVAL_SECONDS": "0.2",
        }
    )
    return env


def _deliveries(db: Database) -> dict[int, list[bool]]:
    with db.session(write=False) as s:
        out: dict[int, list[bool]] = {}
        for pk, ok in s.execute(select(Delivery.message_pk, Delivery.succeeded).order_by(Delivery.id)):
            out.setdefault(pk, []).append(ok)
        return out


def _leased(db: Database) -> dict[str, tuple[str, str | None, dt.datetime | None, int]]:
    return {
        r.message_id: (r.status, r.claim_token, r.locked_until, r.attempts)
        for r in outbox(db)
        if r.claim_token is not None
    }


def test_sigkilled_worker_rows_are_delivered_once_its_lease_ends(
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
    database_url: str,
    tmp_path: Path,
) -> None:
    # The subprocess signs and leases on the system clock; start the test's clock there too, so the receiver
    # accepts its signatures and the lease it writes is ahead of our clock.
    clock.set(dt.datetime.now(dt.UTC))
    slow = SlowReceiver()
    receiver.on_request = slow
    receiver.start()
    handover = shutil.which("handover", path=str(Path(sys.executable).parent))
    assert handover, "the handover command is not installed next to the interpreter"
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        # Started first: it boots (imports take seconds) while the test fills the outbox, and polls until then.
        proc = subprocess.Popen(
            [handover, "worker"], cwd=tmp_path, env=_worker_env(database_url), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        make_endpoint(receiver, ["*"])
        with transaction(db) as s:
            for i in range(ROWS):
                service.emit(s, "alert.raised", {"alert_id": i}, now=clock.now())
        deadline = time.monotonic() + BOOT_SECONDS
        while not slow.held.wait(0.05):
            assert proc.poll() is None, f"the worker exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the worker never reached request {HOLD_AT}:\n{log.read_text()}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        slow.release.set()
    killed_at = dt.datetime.now(dt.UTC)

    # ---- what the dead worker left --------------------------------------------------------------------
    before = Counter(receiver.ids())
    assert sum(before.values()) == HOLD_AT and set(before.values()) == {1}
    assert all(r.verified for r in receiver.received), [r.error for r in receiver.received if not r.verified]
    rows = outbox(db)
    sent = {r.message_id for r in rows if r.status == "sent"}
    leased = _leased(db)
    unclaimed = {r.message_id for r in rows if r.status == "pending" and r.claim_token is None}
    assert len(sent) + len(leased) + len(unclaimed) == ROWS
    assert BATCH <= len(sent) < HOLD_AT  # the first batch and some of the second were recorded …
    assert sent <= set(before)
    assert 0 < len(leased) <= BATCH  # … the rest of the second batch is still leased to the dead worker
    assert len({token for _, token, _, _ in leased.values()}) == 1
    assert {(status, attempts) for status, _, _, attempts in leased.values()} == {("pending", 0)}
    expiries = {until for _, _, until, _ in leased.values()}
    assert all(until is not None and killed_at < until <= killed_at + dt.timedelta(seconds=LEASE) for until in expiries)
    in_flight = set(before) & set(leased)  # the receiver got these but the worker died before recording them
    assert in_flight and in_flight == set(before) - sent
    assert len(unclaimed) == ROWS - 2 * BATCH
    first_expiry = min(e for e in expiries if e is not None)
    last_expiry = max(e for e in expiries if e is not None)

    # ---- a second worker, just before the lease ends: only the rows nobody holds ----------------------
    clock.set(first_expiry - TICK)
    survivor = deliverer(batch_size=BATCH)
    assert survivor.run(budget_seconds=None) == len(unclaimed)
    assert survivor.run(budget_seconds=None) == 0
    assert _leased(db) == leased  # untouched: same token, same lease, not tried
    during = Counter(receiver.ids())
    assert all(during[m] == before[m] for m in leased)
    assert {m for m, n in during.items() if n > 1} == set()

    # ---- past the lease: the dead worker's rows go out, in-flight ones a second time ------------------
    clock.set(last_expiry + TICK)
    assert survivor.run(budget_seconds=None) == len(leased)
    assert survivor.run(budget_seconds=None) == 0

    rows = outbox(db)
    assert {r.status for r in rows} == {"sent"}
    assert all(r.claim_token is None and r.locked_until is None and r.sent_at is not None for r in rows)
    assert {r.attempts for r in rows} == {1}  # the dead worker's unrecorded tries left no trace
    deliveries = _deliveries(db)
    assert set(deliveries) == {r.id for r in rows}
    assert all(oks == [True] for oks in deliveries.values())  # no row sent twice according to the database

    counts = Counter(receiver.ids())
    assert set(counts) == {r.message_id for r in rows}  # every webhook-id reached the receiver
    again = {m for m, n in counts.items() if n > 1}
    assert again == in_flight  # re-deliveries only for rows in the dead worker's hands at the kill …
    assert set(counts.values()) <= {1, 2}
    assert len(again) <= min(BATCH, RECORD_EVERY)  # … at most one unrecorded group of results
    assert all(r.verified for r in receiver.received), [r.error for r in receiver.received if not r.verified]
    bodies: dict[str, set[bytes]] = {}
    for r in receiver.received:
        bodies.setdefault(r.webhook_id, set()).add(r.body)
    assert all(len(b) == 1 for b in bodies.values())  # a re-delivery is the same message: the receiver dedupes
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == ROWS
