"""`handover worker`: runs due work in a loop. Every step is a short transaction, safe with several workers."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client import start_http_server
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import Clock, SystemClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.core.idempotency import purge_expired
from app.core.metrics import WORKER_JOB, WORKER_JOB_FAILURES, worker_pass
from app.jobs import service as jobs
from app.notify import worker as notify_worker
from app.transfer import deadlines, leave, longops, messaging, sweeper
from app.transfer import service as transfer
from app.transfer.followups import service as followups

logger = logging.getLogger("handover.worker")

Job = Callable[[Session, Clock], int]
# Jobs that manage their own transactions (deliveries must not hold one open while they send).
DbJob = Callable[[Database, Clock, threading.Event], int]


def execute_due_handovers(session: Session, clock: Clock, settings: Settings | None = None) -> int:
    return len(transfer.run_due(session, now=clock.now(), settings=settings))


def purge_idempotency_keys(session: Session, clock: Clock) -> int:
    return purge_expired(session, clock.now())


def complete_due_leaves(session: Session, clock: Clock) -> int:
    """Leaves whose return time has come become completed (access already follows the stored windows)."""
    return len(leave.complete_due(session, now=clock.now()))


JOBS: list[tuple[str, Job]] = [
    ("purge_idempotency_keys", purge_idempotency_keys),
    ("complete_due_leaves", complete_due_leaves),
]


def execute_and_anchor(db: Database, clock: Clock, stop: threading.Event) -> int:
    """The execution batch (a layoff's exits) and a checkpoint of the audit head it wrote, in one transaction."""
    with transaction(db) as session:
        done = execute_due_handovers(session, clock, db.settings)
        if done:
            transfer.anchor_audit(session, db.settings, now=clock.now(), reason="execution")
    return done


# When the chain last failed to verify, per database: a broken chain is logged once an interval, not walked anew
# every pass.
_unverified_at: WeakKeyDictionary[Database, dt.datetime] = WeakKeyDictionary()


def checkpoint_audit(db: Database, clock: Clock, stop: threading.Event) -> int:
    """Verifies the audit chain from the last verified checkpoint and signs the head the walk reached, when
    `audit_checkpoint_interval_seconds` passed or `audit_checkpoint_every_entries` were added. The walk reads in
    a transaction of its own: on SQLite a writing one would hold the write lock for the whole walk."""
    settings, now = db.settings, clock.now()
    failed = _unverified_at.get(db)
    if failed is not None and failed <= now < failed + dt.timedelta(seconds=settings.audit_checkpoint_interval_seconds):
        return 0
    with transaction(db, write=False) as session:
        if not audit.checkpoint_due(session, settings, now=now):
            return 0
        result = audit.verify(session, settings)
    if not result.ok:
        _unverified_at[db] = now
        broken = result.first_broken
        logger.error(
            "the audit chain does not verify: no checkpoint signed",
            extra={
                "fields": {
                    "first_broken": {"seq": broken.seq, "reason": broken.reason} if broken else None,
                    "checkpoint_errors": [vars(e) for e in result.checkpoint_errors],
                }
            },
        )
        return 0
    _unverified_at.pop(db, None)
    with transaction(db) as session:
        cp = transfer.anchor_audit(
            session, settings, now=now, reason="worker", head=(result.last_seq, result.last_hash), verified=True
        )
    return 1 if cp is not None else 0


def notify_overdue_follow_ups(db: Database, clock: Clock, stop: threading.Event) -> int:
    """A database job only because it needs the worker's settings (the default locale)."""
    with transaction(db) as session:
        return followups.notify_overdue(session, clock.now(), settings=db.settings)


def remind_overdue_approvals(db: Database, clock: Clock, stop: threading.Event) -> int:
    """Approval reminders and escalations (`app.transfer.deadlines`); a database job for the settings."""
    with transaction(db) as session:
        return deadlines.remind_due(session, clock.now(), settings=db.settings)


# What runs each kind of job (Prefer: respond-async): the operation's own function, so a job's result is the answer
# the synchronous request would have had.
JOB_RUNNERS: dict[str, jobs.Runner] = {
    longops.PLAN_KIND: longops.run_plan_batch,
    longops.SIMULATION_KIND: longops.run_simulation,
}
JOB_READ_ONLY = frozenset({longops.SIMULATION_KIND})  # saves nothing: read outside the write lock


def run_jobs(db: Database, clock: Clock, stop: threading.Event) -> int:
    """Runs the due jobs (leased, SKIP LOCKED on PostgreSQL) for at most one pass's budget."""
    return jobs.run_due(db, clock, stop, runners=JOB_RUNNERS, read_only=JOB_READ_ONLY)


# Overdue notices and checkpoints first, so the delivery pass that follows sends them.
DB_JOBS: list[tuple[str, DbJob]] = [
    ("execute_due_handovers", execute_and_anchor),
    # Issue 15: not approved by the effective time -> the interim owner; then the invariant's sweeper.
    ("take_over_interim", sweeper.take_over_interim),
    ("sweep_ownership", sweeper.sweep_ownership),
    ("notify_overdue_follow_ups", notify_overdue_follow_ups),
    ("remind_overdue_approvals", remind_overdue_approvals),
    ("checkpoint_audit", checkpoint_audit),
    # The outbox asks the workflow that wrote a notification whether it still holds before sending it.
    ("deliver_outbox", partial(notify_worker.deliver_due, checks=messaging.check_at_send)),
    # Last: a joint plan may take its solver's whole time limit, and should not hold up the deliveries.
    ("run_jobs", run_jobs),
]


def run_once(db: Database, clock: Clock, stop: threading.Event | None = None) -> dict[str, int]:
    """One pass over every job; each job in its own transaction so one failure does not block the rest."""
    done: dict[str, int] = {}
    started = time.perf_counter()
    for name, job in JOBS:
        began = time.perf_counter()
        try:
            with transaction(db) as session:
                done[name] = job(session, clock)
        except Exception:
            logger.exception("job %s failed", name)
            WORKER_JOB_FAILURES.labels(name).inc()
            done[name] = -1
        WORKER_JOB.labels(name).observe(time.perf_counter() - began)
    for name, db_job in DB_JOBS:
        began = time.perf_counter()
        try:
            done[name] = db_job(db, clock, stop or threading.Event())
        except Exception:
            logger.exception("job %s failed", name)
            WORKER_JOB_FAILURES.labels(name).inc()
            done[name] = -1
        WORKER_JOB.labels(name).observe(time.perf_counter() - began)
    worker_pass().observe(time.perf_counter() - started)
    return done


def serve_metrics(settings: Settings) -> tuple[Any, threading.Thread] | None:
    """The worker's metrics (deliveries, pass and job durations) on their own port, when one is configured.

    Its own port rather than the API's multiprocess directory: in the compose deploy the workers are containers
    of their own and share no directory with the API, and several workers on one host each take their own port
    (Prometheus adds them up)."""
    if settings.worker_metrics_port is None:
        return None
    worker_pass()  # present from the first scrape on, before the first pass ends
    server, thread = start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    logger.info("worker metrics on http://%s:%s/metrics", settings.worker_metrics_host, server.server_address[1])
    return server, thread


def run_forever(settings: Settings, clock: Clock | None = None, stop: threading.Event | None = None) -> None:
    clock = clock or SystemClock()
    stop = stop or threading.Event()
    db = Database(settings)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: finishing the delivery in flight, then stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    try:
        db.ping()
        exporter = serve_metrics(settings)
        while not stop.is_set():
            done = run_once(db, clock, stop)
            if any(v > 0 for v in done.values()):
                logger.info("worker pass", extra={"fields": done})
            stop.wait(settings.worker_interval_seconds)
        if exporter is not None:
            exporter[0].shutdown()
    finally:
        db.dispose()
