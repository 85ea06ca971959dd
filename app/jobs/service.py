"""Jobs: long requests (a joint plan, a simulation of hundreds of leavers) accepted at once and run by a worker.

A job is submitted in the request's transaction (with its audit entry, and with its Idempotency-Key row when the
request carries one). A worker claims it in a short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two
workers never take one job; SQLite's write lock makes it the single worker), stamping a lease and a claim token.
The run happens in a transaction of its own, and the job's success is written in that same transaction: the
operation's effects (a plan's items) and `succeeded` commit together or not at all. A worker that dies mid-run
leaves the job `running` under a lease that expires; the next worker past it runs the job again from the start.

This module knows nothing of what a job does: the composition root (app/worker.py) binds a runner per kind.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.auth import Principal
from app.core.clock import Clock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.core.errors import TYPE_PREFIX, DomainError
from app.jobs.errors import JobNotFound
from app.jobs.models import Job
from app.jobs.schemas import JobFilter, JobOut, JobProblem

logger = logging.getLogger("handover.jobs")

WORKER_ACTOR = "system:worker"
# A run that failed for a reason other than the operation's own refusal (a lost database, a bug) is tried again,
# this many runs in all; a lease that expired counts as a run.
MAX_ATTEMPTS = 3
# One worker pass runs jobs for at most this long (wall time), then lets the other periodic work go on.
RUN_BUDGET_SECONDS = 10.0


@dataclass(frozen=True)
class Context:
    """What a runner gets: the principal the request was made by, the time the run started and the settings."""

    principal: Principal
    now: dt.datetime
    settings: Settings


# A runner does the job's work in the session it is given and returns the synchronous answer's JSON body; it
# raises a DomainError for what the synchronous request would have refused.
Runner = Callable[[Session, Mapping[str, Any], Context], dict[str, Any]]


def path_of(job_id: int) -> str:
    return f"/v1/jobs/{job_id}"


def submit(session: Session, *, kind: str, request: dict[str, Any], principal: Principal, now: dt.datetime) -> Job:
    job = Job(
        kind=kind,
        state="queued",
        created_by=principal.actor,
        principal={
            "sub": principal.sub,
            "role": principal.role,
            "scopes": sorted(principal.scopes),
            "employee": principal.employee,
        },
        request=request,
        progress=0.0,
        attempts=0,
        created_at=now,
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        actor=principal.actor,
        action="job.created",
        entity_type="job",
        entity_id=str(job.id),
        data={"kind": kind, "request": _summary(request)},
        at=now,
    )
    return job


def _summary(request: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit entry keeps of the request: its ids, not a pool or options."""
    return {k: request[k] for k in ("handover_ids", "leavers", "effective_at") if k in request}


def _may_see(principal: Principal, job: Job) -> bool:
    """Its result is what the requester's own synchronous call returned: theirs alone, and admins'."""
    return principal.role == "admin" or job.created_by == principal.actor


def get(session: Session, principal: Principal, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None or not _may_see(principal, job):
        raise JobNotFound(f"No job {job_id}.")
    return job


def list_jobs(session: Session, principal: Principal, flt: JobFilter, *, limit: int, offset: int) -> list[Job]:
    stmt = select(Job)
    if principal.role != "admin":
        stmt = stmt.where(Job.created_by == principal.actor)
    if flt.state:
        stmt = stmt.where(Job.state == flt.state)
    if flt.kind:
        stmt = stmt.where(Job.kind == flt.kind)
    return list(session.scalars(stmt.order_by(Job.id.desc()).limit(limit).offset(offset)))


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        state=job.state,
        progress=job.progress,
        attempts=job.attempts,
        created_by=job.created_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        location=path_of(job.id),
        result=job.result,
        problem=JobProblem.model_validate(job.problem) if job.problem is not None else None,
    )


# ---- the worker's side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    token: str
    attempts: int
    principal: Principal
    request: dict[str, Any]


def _problem(job_id: int, status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": path_of(job_id),
        **extra,
    }


def _problem_of(job_id: int, exc: DomainError) -> dict[str, Any]:
    extra: dict[str, Any] = dict(exc.extra)
    if exc.errors is not None:
        extra["errors"] = exc.errors
    return _problem(job_id, exc.status, exc.slug, exc.title, exc.detail, **extra)


def _finish(
    session: Session,
    claimed: Claimed,
    now: dt.datetime,
    *,
    result: dict[str, Any] | None,
    problem: dict[str, Any] | None,
) -> bool:
    """Ends the job if this worker still holds it (its claim token); False when the lease went to another."""
    state = "succeeded" if problem is None else "failed"
    done = session.execute(
        update(Job)
        .where(Job.id == claimed.id, Job.claim_token == claimed.token, Job.state == "running")
        .values(
            state=state,
            result=result,
            problem=problem,
            progress=1.0,
            finished_at=now,
            locked_until=None,
            claim_token=None,
        )
        .execution_options(synchronize_session=False)
    )
    if not getattr(done, "rowcount", 0):
        return False
    audit.record(
        session,
        actor=WORKER_ACTOR,
        action=f"job.{state}",
        entity_type="job",
        entity_id=str(claimed.id),
        data={
            "kind": claimed.kind,
            "attempts": claimed.attempts,
            "status": None if problem is None else problem["status"],
        },
        at=now,
    )
    return True


def claim(db: Database, clock: Clock, *, lease: dt.timedelta, kinds: set[str]) -> Claimed | None:
    """Leases the oldest due job (queued, or running under an expired lease) to this worker, or None.

    A job whose lease expired `MAX_ATTEMPTS` times is failed here instead of being run again."""
    while True:
        now = clock.now()
        token = uuid.uuid4().hex
        with transaction(db) as session:
            due = (
                select(Job)
                .where(
                    Job.kind.in_(sorted(kinds)),
                    or_(Job.state == "queued", and_(Job.state == "running", Job.locked_until <= now)),
                )
                .order_by(Job.created_at, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job = session.scalars(due).first()
            if job is None:
                return None
            job.claim_token = token
            if job.attempts >= MAX_ATTEMPTS:
                claimed = _claimed(job, token)
                job.state = "running"  # what _finish expects
                session.flush()
                _finish(
                    session,
                    claimed,
                    now,
                    result=None,
                    problem=_problem(
                        job.id,
                        500,
                        "internal-error",
                        "Internal error",
                        f"The job was interrupted {job.attempts} times and is not tried again.",
                    ),
                )
                logger.error("job %s gave up after %s attempts", job.id, job.attempts)
                continue
            job.state = "running"
            job.attempts += 1
            job.started_at = job.started_at or now
            job.locked_until = now + lease
            session.flush()
            return _claimed(job, token)


def _claimed(job: Job, token: str) -> Claimed:
    p = job.principal
    principal = Principal(sub=p["sub"], role=p["role"], scopes=frozenset(p["scopes"]), employee=p.get("employee"))
    return Claimed(job.id, job.kind, token, job.attempts, principal, dict(job.request))


def run(db: Database, clock: Clock, claimed: Claimed, runner: Runner, *, read_only: bool = False) -> str:
    """Runs one claimed job; returns the state it ended in (or `queued` when it is to be tried again).

    A `read_only` runner (a simulation) reads in a transaction of its own and the result is written after it: on
    SQLite a writing transaction would hold the write lock for the whole solve."""
    settings = db.settings
    try:
        if read_only:
            with transaction(db, write=False) as session:
                result = runner(session, claimed.request, Context(claimed.principal, clock.now(), settings))
        with transaction(db) as session:
            if not read_only:
                result = runner(session, claimed.request, Context(claimed.principal, clock.now(), settings))
            if not _finish(session, claimed, clock.now(), result=result, problem=None):
                raise _LeaseLost
        return "succeeded"
    except _LeaseLost:
        logger.warning("job %s: the lease passed to another worker; this run is discarded", claimed.id)
        return "running"
    except DomainError as exc:
        problem = _problem_of(claimed.id, exc)
    except Exception:
        logger.exception("job %s failed (attempt %s)", claimed.id, claimed.attempts)
        if claimed.attempts < MAX_ATTEMPTS:
            with transaction(db) as session:
                session.execute(
                    update(Job)
                    .where(Job.id == claimed.id, Job.claim_token == claimed.token)
                    .values(state="queued", locked_until=None, claim_token=None)
                    .execution_options(synchronize_session=False)
                )
            return "queued"
        problem = _problem(
            claimed.id, 500, "internal-error", "Internal error", "The job failed; the worker's log has the details."
        )
    with transaction(db) as session:
        _finish(session, claimed, clock.now(), result=None, problem=problem)
    return "failed"


class _LeaseLost(Exception):
    pass


def run_due(
    db: Database,
    clock: Clock,
    stop: threading.Event,
    *,
    runners: Mapping[str, Runner],
    read_only: frozenset[str] = frozenset(),
    budget_seconds: float = RUN_BUDGET_SECONDS,
) -> int:
    """Claims and runs due jobs one at a time until none is left, `stop` is set or the pass's budget is spent;
    returns how many ran to an end. Kinds in `read_only` write nothing but their result (see `run`)."""
    lease = dt.timedelta(seconds=db.settings.job_lease_seconds)
    deadline = time.monotonic() + budget_seconds
    done = 0
    while not stop.is_set() and time.monotonic() < deadline:
        claimed = claim(db, clock, lease=lease, kinds=set(runners))
        if claimed is None:
            break
        ended = run(db, clock, claimed, runners[claimed.kind], read_only=claimed.kind in read_only)
        if ended in ("succeeded", "failed"):
            done += 1
    return done
