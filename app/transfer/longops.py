"""The two long operations (a joint plan, a simulation) as functions of a session, a principal and the request.

The router calls them for a synchronous request; for `Prefer: respond-async` it makes the same up-front checks,
submits a job (app.jobs) and answers 202, and the worker runs the job with the runners below (bound in
app/worker.py), so the job's result is the synchronous answer itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.config import Settings
from app.core.errors import RoleNotAllowed
from app.directory import service as directory
from app.jobs.service import Context
from app.transfer import planning, schemas, visibility

CREATOR_ROLES = frozenset({"admin", "hr", "manager", "integration"})
PLAN_KIND, SIMULATION_KIND = "handover-plans", "simulations"
PLAN_MANAGE = "Only the leaver's managers, hr or an admin may plan these handovers."


def summary(
    h_id: int, result: planning.Plan, dry_run: bool, proposals: list[schemas.ItemOut] | None
) -> schemas.PlanSummary:
    successors: dict[str, int] = {}
    for r in result.rows:
        if r["successor_id"]:
            successors[r["successor_id"]] = successors.get(r["successor_id"], 0) + 1
    return schemas.PlanSummary(
        handover_id=h_id,
        dry_run=dry_run,
        items=len(result.rows) + result.kept_manual,
        assigned=sum(1 for r in result.rows if r["successor_id"]),
        interim=sum(1 for r in result.rows if not r["successor_id"]),
        kept_manual=result.kept_manual,
        total_cost=result.total_cost,
        solver_status=result.status,
        successors=successors,
        proposals=proposals,
    )


def check_plan_batch(session: Session, principal: Principal, body: schemas.PlanBatchRequest) -> None:
    """What refuses a joint plan before any work: the role, and each handover's visibility and management."""
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins plan handovers.")
    visibility.get_handovers(session, principal, sorted(set(body.handover_ids)), manage=PLAN_MANAGE)


def plan_batch(
    session: Session, principal: Principal, body: schemas.PlanBatchRequest, *, now: dt.datetime, settings: Settings
) -> schemas.PlanBatchOut:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins plan handovers.")
    ids = list(dict.fromkeys(body.handover_ids))
    handovers = visibility.get_handovers(session, principal, sorted(ids), lock=True, manage=PLAN_MANAGE)
    pool = body.candidate_pool.model_dump() if body.candidate_pool else None
    plans, solves = planning.plan_many(session, handovers, pool=pool, actor=principal.actor, now=now, settings=settings)
    return schemas.PlanBatchOut(handovers=[summary(hid, plans[hid], False, None) for hid in ids], solves=solves)


def check_simulation(session: Session, principal: Principal, body: schemas.SimulationRequest) -> None:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins run simulations.")
    if not principal.unrestricted:
        for leaver in body.leavers:
            directory.get_employee(session, principal, leaver)  # 404 outside a manager's reach


def simulation(
    session: Session, principal: Principal, body: schemas.SimulationRequest, *, settings: Settings
) -> schemas.SimulationOut:
    check_simulation(session, principal, body)
    result = planning.simulate(
        session,
        leavers=body.leavers,
        effective_at=body.effective_at,
        pool=body.candidate_pool.model_dump() if body.candidate_pool else None,
        settings=settings,
        include_items=body.include_items,
    )
    return schemas.SimulationOut.model_validate(result)


# ---- runners for the jobs the worker runs (bound in app/worker.py) --------------------------------------------


def run_plan_batch(session: Session, request: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    body = schemas.PlanBatchRequest.model_validate(request)
    return plan_batch(session, ctx.principal, body, now=ctx.now, settings=ctx.settings).model_dump(mode="json")


def run_simulation(session: Session, request: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    body = schemas.SimulationRequest.model_validate(request)
    return simulation(session, ctx.principal, body, settings=ctx.settings).model_dump(mode="json")
