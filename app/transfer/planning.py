"""Planning: candidates and their loads, the exact reassignment (`solver`), plans of one or many handovers,
reviews of single items, and simulations that save nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.book import service as book
from app.core import bulk
from app.core.bulk import among, chunks
from app.core.config import Settings
from app.directory import service as directory
from app.directory.models import AccountTeamMember, Client, Employee
from app.risk import service as risk
from app.transfer import continuity, service, solver
from app.transfer import interim as interim_rule
from app.transfer.errors import (
    HandoverNotPlannable,
    InterimOwnerInvalid,
    ItemsLocked,
    LeaverTwiceInPlan,
    SuccessorBreaksConstraints,
    UnknownEmployee,
)
from app.transfer.models import OPEN_STATUSES, Handover, HandoverItem

# The solver's weight per risk band: a critical client's poor fit costs four times a low-risk one's.
BAND_WEIGHT = {"low": 1.0, "medium": 1.5, "high": 2.5, "critical": 4.0}


def open_departures(session: Session, owners: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """(reason, destination competitor) of each owner's open handover: risk's DepartureSource (bound in app.main)."""
    stmt = select(Handover.leaver_id, Handover.reason, Handover.destination_competitor).where(
        among(session, Handover.leaver_id, owners), Handover.status.in_(OPEN_STATUSES)
    )
    return {
        leaver: (risk_reason(reason) or "other", bool(competitor))
        for leaver, reason, competitor in session.execute(stmt)
    }


def risk_reason(reason: str | None) -> str | None:
    """The risk model knows the accepted reasons; a departure that named none (`unknown`, issue 15) scores as
    `other`."""
    return "other" if reason == "unknown" else reason


def _lang(tag: str | None) -> str | None:
    return tag.split("-")[0].lower() if tag else None


@dataclass
class Plan:
    rows: list[dict[str, Any]]
    kept_manual: int
    total_cost: float
    status: str
    loads_before: dict[str, float]
    loads_after: dict[str, float]
    capacities: dict[str, float]


def _candidates(
    session: Session, leavers: Sequence[str], pool: dict[str, Any], effective_at: dt.datetime, settings: Settings
) -> tuple[list[Employee], dict[str, int]]:
    """Active employees who stay long enough and are not on leave at the effective time, ranked: 0 the leaver's
    team, 1 department, 2 organisation."""
    leaver_rows = session.scalars(select(Employee).where(Employee.external_id.in_(leavers))).all()
    managers = {e.manager_id for e in leaver_rows if e.manager_id}
    horizon = effective_at + dt.timedelta(days=settings.successor_exit_horizon_days)
    # Someone on leave at the effective time cannot take a client over then (their own access is suspended).
    on_leave = exists().where(
        Handover.leaver_id == Employee.external_id,
        Handover.reason == "leave",
        Handover.status.in_(OPEN_STATUSES),
        Handover.effective_at <= effective_at,
        Handover.return_at > effective_at,
    )
    stmt = select(Employee).where(
        Employee.status == "active",
        Employee.external_id.not_in(leavers),
        or_(Employee.exit_at.is_(None), Employee.exit_at > horizon),
        ~on_leave,
    )
    kind = pool.get("kind", "organisation")
    grand = {
        m
        for m in session.scalars(select(Employee.manager_id).where(Employee.external_id.in_(managers)))
        if m is not None
    }
    roots = sorted(grand | managers)
    dept: set[str] = set(session.scalars(directory.subtree(roots))) if roots else set()
    if kind == "list":
        stmt = stmt.where(Employee.external_id.in_(pool.get("employees", [])))
    elif kind == "team":
        stmt = stmt.where(Employee.manager_id.in_(managers))
    elif kind == "department":
        stmt = stmt.where(Employee.external_id.in_(dept))
    rows = list(session.scalars(stmt.order_by(Employee.external_id)))
    rank = {}
    for e in rows:
        rank[e.external_id] = 0 if e.manager_id in managers else 1 if e.external_id in dept else 2
    return rows, rank


def _loads(
    session: Session, owners: Sequence[str], settings: Settings, *, exclude_handovers: Sequence[int] = ()
) -> dict[str, float]:
    """Load points carried now (clients by tier, and when the company counts them the open deals' amounts and open
    cases they hold), plus those promised by other open handovers (not yet executed)."""
    loads: dict[str, float] = defaultdict(float)
    if not owners:
        return loads
    records = book.owner_load(
        session,
        owners,
        amount_per_point=settings.load_open_deal_amount_per_point,
        points_per_case=settings.load_points_per_open_case,
    )
    for owner, points in records.items():
        loads[owner] += points
    rows = session.execute(
        select(Client.owner_id, Client.tier, func.count())
        .where(Client.owner_id.in_(owners), Client.status != "churned")
        .group_by(Client.owner_id, Client.tier)
    ).all()
    for owner, tier, n in rows:
        loads[owner] += settings.load_points.get(tier, 1.0) * n
    pending = (
        select(HandoverItem.successor_id, Client.tier, func.count())
        .join(Client, Client.external_id == HandoverItem.client_id)
        .join(Handover, Handover.id == HandoverItem.handover_id)
        .where(
            HandoverItem.successor_id.in_(owners),
            HandoverItem.status.in_(("proposed", "approved")),
            Handover.status.in_(("planned", "approved")),
        )
        .group_by(HandoverItem.successor_id, Client.tier)
    )
    if exclude_handovers:
        pending = pending.where(HandoverItem.handover_id.not_in(list(exclude_handovers)))
    for successor, tier, n in session.execute(pending).all():
        if successor is not None:
            loads[successor] += settings.load_points.get(tier, 1.0) * n
    return loads


def compute_plan(
    session: Session,
    *,
    leavers: Sequence[str],
    effective_at: dt.datetime,
    pool: dict[str, Any],
    settings: Settings,
    manual: dict[str, str | None] | None = None,
    handover_ids: Sequence[int] = (),
    now: dt.datetime | None = None,
    reason: str | None = None,
    destination_competitor: bool | None = None,
    held_by: Mapping[str, Sequence[ColumnElement[bool]]] | None = None,
) -> Plan:
    """Solve the whole reassignment for the clients of `leavers` at once; nothing is written.

    `held_by` (leaver -> conditions on Client, `continuity.held_for`): the clients an interim owner took over from
    that leaver at the effective time (issue 15, `app.transfer.continuity`) are still the leaver's to plan.

    Risk goes in twice: before solving, each client's band sets its weight (riskier clients get the better
    fits); after solving, the score is recomputed with the chosen successor's fit and stored on the item.
    """
    manual = manual or {}
    now = now or effective_at
    context = risk.RiskContext(
        reason=risk_reason(reason),
        destination_competitor=destination_competitor,
        min_seniority=dict(settings.min_seniority),
        departures=open_departures,
        base_currency=settings.base_currency,
    )
    held = [and_(*conditions) for conditions in (held_by or {}).values()]
    clients = list(
        session.scalars(
            select(Client)
            .where(or_(Client.owner_id.in_(leavers), *held), Client.status != "churned")
            .order_by(Client.external_id)
        )
    )
    # Whose each client is to plan: its owner, or the leaver an interim owner holds it for.
    owner_of = {
        c.external_id: c.owner_id if c.owner_id in leavers else (c.former_owner_id or c.owner_id) for c in clients
    }
    leaver_rows = {e.external_id: e for e in session.scalars(select(Employee).where(Employee.external_id.in_(leavers)))}
    candidates, rank = _candidates(session, leavers, pool, effective_at, settings)
    cand_ids = [c.external_id for c in candidates]
    loads = _loads(session, cand_ids, settings, exclude_handovers=handover_ids)
    loads_before = dict(loads)
    # Manual choices stay; their load counts against the chosen successor.
    for client in clients:
        chosen = manual.get(client.external_id)
        if chosen is not None:
            loads[chosen] = loads.get(chosen, 0.0) + settings.load_points.get(client.tier, 1.0)
    to_solve = [c for c in clients if c.external_id not in manual]
    index = {eid: i for i, eid in enumerate(cand_ids)}
    team: dict[str, set[int]] = defaultdict(set)
    if to_solve:
        ids = [c.external_id for c in to_solve]
        for part in chunks(ids, 5000):
            for cid, emp_id in session.execute(
                select(AccountTeamMember.client_id, AccountTeamMember.employee_id).where(
                    AccountTeamMember.client_id.in_(part)
                )
            ):
                if emp_id in index:
                    team[cid].add(index[emp_id])
    model = risk.active_model(session)
    factors = risk.factor_batch(session, [c.external_id for c in to_solve], context=context, now=now)
    before = risk.score_batch(factors, model)
    weight = {cid: BAND_WEIGHT.get(r.risk.band, 1.0) for cid, r in before.items()}
    specs = [
        solver.ClientSpec(
            id=i,
            tier=c.tier,
            industry=c.industry,
            region=c.region,
            language=_lang(c.language),
            sensitivity=c.sensitivity,
            team_member_ids=frozenset(team[c.external_id]),
            risk_weight=weight.get(c.external_id, 1.0),
        )
        for i, c in enumerate(to_solve)
    ]
    cand_specs = [
        solver.CandidateSpec(
            id=index[e.external_id],
            seniority=e.seniority,
            clearance=e.clearance,
            capacity=float(e.capacity),
            current_load=loads.get(e.external_id, 0.0),
            skills=frozenset(e.skills or []),
            regions=frozenset(e.regions or []),
            languages=frozenset(_lang(x) or "" for x in (e.languages or [])),
            pool_rank=rank[e.external_id],
        )
        for e in candidates
    ]
    config = solver.SolverConfig(
        load_points=dict(settings.load_points),
        min_seniority=dict(settings.min_seniority),
        time_limit=settings.solver_time_limit_seconds,
    )
    solution = solver.solve(specs, cand_specs, config)
    rows: list[dict[str, Any]] = []
    interims: dict[str, str | None] = {}
    for client, a in zip(to_solve, solution.assignments, strict=True):
        successor = cand_ids[a.successor_id] if a.successor_id is not None else None
        leaver = leaver_rows[owner_of[client.external_id]]
        interim = None
        attention = None
        if successor is None:
            if leaver.external_id not in interims:
                interims[leaver.external_id] = interim_rule.interim_owner(
                    session, leaver.external_id, at=effective_at, settings=settings
                )
            interim = interims[leaver.external_id]
            attention = a.reason or "no_candidate"
            if interim is None:
                attention = f"{attention}; no interim owner (no manager up the chain can act)"
        rows.append(
            {
                "client_id": client.external_id,
                "client": client,
                "previous_owner_id": owner_of[client.external_id],
                "successor_id": successor,
                "interim_owner_id": interim,
                "needs_attention": successor is None,
                "attention_reason": attention,
                "reasons": {
                    "chosen": {"employee": successor, "costs": dict(a.breakdown)} if successor else None,
                    "runner_up": (
                        {"employee": cand_ids[a.runner_up_id], "costs": dict(a.runner_up_breakdown or {})}
                        if a.runner_up_id is not None
                        else None
                    ),
                    "weighted_cost": a.cost,
                },
            }
        )
    # Only the successor's fit changed since `before`: the same factors with it, not a second read of them all.
    successors = {r["client_id"]: r["successor_id"] for r in rows if r["successor_id"]}
    after = risk.score_batch(
        risk.with_successors(session, factors, successors, min_seniority=dict(settings.min_seniority)), model
    )
    for r in rows:
        scored = after.get(r["client_id"])
        stored = scored.as_json() if scored else {}
        r["risk_score"] = stored.get("score")
        r["risk_band"] = stored.get("band")
        r["exposure"] = stored.get("exposure")
        r["risk_factors"] = stored
        r["checklist"] = {
            f"mitigation:{m['action']}": {"done": False, "note": m["text"], "by": None, "at": None}
            for m in stored.get("mitigations", [])
        }
    loads_after = dict(loads)
    for r in rows:
        if r["successor_id"]:
            loads_after[r["successor_id"]] = loads_after.get(r["successor_id"], 0.0) + settings.load_points.get(
                r["client"].tier, 1.0
            )
    return Plan(
        rows=rows,
        kept_manual=len(clients) - len(to_solve),
        total_cost=float(solution.total_cost),
        status=solution.status,
        loads_before=loads_before,
        loads_after=loads_after,
        capacities={e.external_id: float(e.capacity) for e in candidates},
    )


def plan(
    session: Session,
    h: Handover,
    *,
    pool: dict[str, Any] | None,
    dry_run: bool,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> tuple[Plan, list[HandoverItem] | None]:
    if "planned" not in service.TRANSITIONS[h.status]:
        raise HandoverNotPlannable(
            f"A {h.status} handover cannot be planned.", extra={"allowed": list(service.TRANSITIONS[h.status])}
        )
    pool = pool or h.candidate_pool or {"kind": "organisation"}
    manual: dict[str, str | None] = {
        client_id: successor_id
        for client_id, successor_id in session.execute(
            select(HandoverItem.client_id, HandoverItem.successor_id).where(
                HandoverItem.handover_id == h.id, HandoverItem.manual.is_(True)
            )
        )
    }
    result = compute_plan(
        session,
        leavers=[h.leaver_id],
        effective_at=h.effective_at,
        pool=pool,
        settings=settings,
        manual=manual,
        handover_ids=[h.id],
        now=now,
        reason=h.reason,
        destination_competitor=h.destination_competitor,
        held_by={h.leaver_id: continuity.held_for(h, h.interim_owner_id)} if h.interim_owner_id else None,
    )
    if dry_run:
        preview = [
            HandoverItem(
                id=0,
                handover_id=h.id,
                client_id=r["client_id"],
                previous_owner_id=r["previous_owner_id"],
                successor_id=r["successor_id"],
                interim_owner_id=r["interim_owner_id"],
                status="proposed",
                needs_attention=r["needs_attention"],
                attention_reason=r["attention_reason"],
                reasons=r["reasons"],
                manual=False,
                forced=False,
                checklist=r["checklist"],
                version=1,
                updated_at=now,
                risk_factors=r["risk_factors"],
                risk_score=r["risk_score"],
                risk_band=r["risk_band"],
                exposure=r["exposure"],
            )
            for r in result.rows
        ]
        return result, preview
    _replace_proposals(session, [h.id], _item_values(h.id, result.rows, now))
    _mark_planned(session, h, pool, result.rows, result.kept_manual, result, actor=actor, now=now)
    return result, None


def _replace_proposals(session: Session, handover_ids: Sequence[int], values: Sequence[dict[str, Any]]) -> None:
    """The solver's items replace the previous plan's; manual overrides stay."""
    for ids in chunks(handover_ids, 1000):
        session.execute(delete(HandoverItem).where(HandoverItem.handover_id.in_(ids), HandoverItem.manual.is_(False)))
    table = cast(Table, HandoverItem.__table__)
    for rows in chunks(values, 2000):
        bulk.insert_rows(session, table, rows)


def _item_values(handover_id: int, rows: Sequence[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    return [
        {
            "handover_id": handover_id,
            "client_id": r["client_id"],
            "previous_owner_id": r["previous_owner_id"],
            "successor_id": r["successor_id"],
            "interim_owner_id": r["interim_owner_id"],
            "status": "proposed",
            "needs_attention": r["needs_attention"],
            "attention_reason": r["attention_reason"],
            "reasons": r["reasons"],
            "risk_factors": r["risk_factors"],
            "risk_score": r["risk_score"],
            "risk_band": r["risk_band"],
            "exposure": r["exposure"],
            "manual": False,
            "forced": False,
            "checklist": r["checklist"],
            "version": 1,
            "updated_at": now,
        }
        for r in rows
    ]


def _mark_planned(
    session: Session,
    h: Handover,
    pool: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    kept_manual: int,
    result: Plan,
    *,
    actor: str,
    now: dt.datetime,
    pending: service.Pending | None = None,
    **extra: Any,
) -> None:
    h.candidate_pool = pool
    h.planned_at = now
    service.move(h, "planned", now)
    service.record(
        session,
        actor,
        "handover.planned",
        h,
        now,
        pending=pending,
        items=len(rows) + kept_manual,
        interim=sum(1 for r in rows if r["successor_id"] is None),
        kept_manual=kept_manual,
        total_cost=result.total_cost,
        solver_status=result.status,
        **extra,
    )


def plan_many(
    session: Session,
    handovers: Sequence[Handover],
    *,
    pool: dict[str, Any] | None,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> tuple[dict[int, Plan], int]:
    """Plans several handovers as one reassignment (a layoff, a reorganisation): one solve per set of handovers
    sharing effective time, pool and exit context, so successors' capacity is shared fairly instead of going to
    whichever leaver was planned first; items are written in bulk. Each handover gets its own Plan (its rows);
    the second value is the number of solves."""
    blocked = [h.id for h in handovers if "planned" not in service.TRANSITIONS[h.status]]
    if blocked:
        raise HandoverNotPlannable(
            f"Handovers {', '.join(map(str, blocked[:20]))} cannot be planned in their status.",
            extra={"handover_ids": blocked},
        )
    if len({h.leaver_id for h in handovers}) != len(handovers):
        raise LeaverTwiceInPlan("Two of these handovers are for the same leaver; plan them one at a time.")
    ids = [h.id for h in handovers]
    manual_of: dict[int, dict[str, str | None]] = defaultdict(dict)
    for part in chunks(ids, 1000):
        for hid, client_id, successor_id in session.execute(
            select(HandoverItem.handover_id, HandoverItem.client_id, HandoverItem.successor_id).where(
                HandoverItem.handover_id.in_(part), HandoverItem.manual.is_(True)
            )
        ):
            manual_of[hid][client_id] = successor_id
    # A manual item counts as kept only while its client is still the leaver's (as in a single plan).
    owner_of: dict[str, str | None] = {}
    manual_clients = sorted({c for m in manual_of.values() for c in m})
    for clients in chunks(manual_clients, 1000):
        owner_of.update(
            (client_id, owner_id)
            for client_id, owner_id in session.execute(
                select(Client.external_id, Client.owner_id).where(
                    Client.external_id.in_(clients), Client.status != "churned"
                )
            ).all()
        )
    groups: dict[str, list[Handover]] = defaultdict(list)
    for h in handovers:
        chosen = pool or h.candidate_pool or {"kind": "organisation"}
        key = json.dumps(
            [h.effective_at.isoformat(), chosen, h.reason, h.destination_competitor], sort_keys=True, default=str
        )
        groups[key].append(h)
    plans: dict[int, Plan] = {}
    pending = service.Pending()
    for members in groups.values():
        first = members[0]
        chosen = pool or first.candidate_pool or {"kind": "organisation"}
        manual = {c: s for h in members for c, s in manual_of[h.id].items()}
        result = compute_plan(
            session,
            leavers=[h.leaver_id for h in members],
            effective_at=first.effective_at,
            pool=chosen,
            settings=settings,
            manual=manual,
            handover_ids=[h.id for h in members],
            now=now,
            reason=first.reason,
            destination_competitor=first.destination_competitor,
        )
        by_leaver: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in result.rows:
            by_leaver[r["previous_owner_id"]].append(r)
        member_ids = [h.id for h in members]
        values = [v for h in members for v in _item_values(h.id, by_leaver[h.leaver_id], now)]
        _replace_proposals(session, member_ids, values)
        for h in members:
            rows = by_leaver[h.leaver_id]
            own = Plan(
                rows=rows,
                kept_manual=sum(1 for c in manual_of[h.id] if owner_of.get(c) == h.leaver_id),
                total_cost=result.total_cost,
                status=result.status,
                loads_before=result.loads_before,
                loads_after=result.loads_after,
                capacities=result.capacities,
            )
            plans[h.id] = own
            _mark_planned(
                session,
                h,
                chosen,
                rows,
                own.kept_manual,
                own,
                actor=actor,
                now=now,
                pending=pending,
                planned_with=len(members),
            )
    pending.write(session, now)
    if len(handovers) > 1:
        service.anchor_audit(session, settings, now=now, reason="joint_plan")
    return plans, len(groups)


def constraint_violations(
    session: Session, h: Handover, item: HandoverItem, employee_id: str, settings: Settings
) -> list[str]:
    emp = session.get(Employee, employee_id)
    client = session.get(Client, item.client_id)
    assert client is not None
    if emp is None:
        return ["unknown employee"]
    problems = []
    if emp.external_id == h.leaver_id:
        problems.append("the successor is the leaver")
    if emp.status != "active":
        problems.append(f"the successor is {emp.status}")
    horizon = h.effective_at + dt.timedelta(days=settings.successor_exit_horizon_days)
    if emp.exit_at is not None and emp.exit_at <= horizon:
        problems.append(f"the successor leaves within {settings.successor_exit_horizon_days} days")
    if emp.seniority < settings.min_seniority.get(client.tier, 1):
        problems.append(
            f"seniority {emp.seniority} is below the {client.tier} minimum {settings.min_seniority.get(client.tier)}"
        )
    if emp.clearance < client.sensitivity:
        problems.append(f"clearance {emp.clearance} is below the client's sensitivity {client.sensitivity}")
    load = _loads(session, [employee_id], settings, exclude_handovers=[h.id]).get(employee_id, 0.0)
    planned = session.execute(
        select(Client.tier, func.count())
        .join(HandoverItem, HandoverItem.client_id == Client.external_id)
        .where(
            HandoverItem.handover_id == h.id,
            HandoverItem.successor_id == employee_id,
            HandoverItem.status.in_(("proposed", "approved")),
            HandoverItem.id != item.id,
        )
        .group_by(Client.tier)
    ).all()
    load += sum(settings.load_points.get(t, 1.0) * n for t, n in planned)
    if load + settings.load_points.get(client.tier, 1.0) > float(emp.capacity) + 1e-9:
        problems.append(f"capacity {float(emp.capacity)} would be exceeded (load {load})")
    return problems


def patch_item(
    session: Session, h: Handover, item: HandoverItem, body: Any, *, actor: str, now: dt.datetime, settings: Settings
) -> HandoverItem:
    if h.status not in ("draft", "planned"):
        raise ItemsLocked(f"Items of a {h.status} handover cannot be changed.", extra={"allowed": ["planned"]})
    if body.successor is not None:
        problems = constraint_violations(session, h, item, body.successor, settings)
        if "unknown employee" in problems:
            raise UnknownEmployee(
                f"No employee {body.successor!r}.",
                errors=[{"loc": ["body", "successor"], "msg": "unknown employee", "type": "unknown_reference"}],
            )
        if problems and not body.force:
            raise SuccessorBreaksConstraints(
                "The successor breaks hard constraints: "
                + "; ".join(problems)
                + ". Send force=true with a reason to override.",
                errors=[{"loc": ["body", "successor"], "msg": p, "type": "constraint"} for p in problems],
            )
        item.successor_id = body.successor
        item.interim_owner_id = None
        item.forced = bool(problems)
        item.needs_attention = bool(problems)
        item.attention_reason = ("forced: " + "; ".join(problems)) if problems else None
    else:
        emp = session.get(Employee, body.interim_owner)
        if emp is None or emp.status == "departed" or emp.external_id == h.leaver_id:
            raise InterimOwnerInvalid(
                "The interim owner must be an employee who stays.",
                errors=[{"loc": ["body", "interim_owner"], "msg": "invalid interim owner", "type": "invalid"}],
            )
        item.successor_id = None
        item.interim_owner_id = body.interim_owner
        item.forced = False
        item.needs_attention = True
        item.attention_reason = "interim owner chosen by a person"
    item.manual = True
    item.override_reason = body.reason
    item.version += 1
    item.updated_at = now
    h.version += 1
    h.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="handover.item.overridden",
        entity_type="handover_item",
        entity_id=str(item.id),
        data={
            "handover": h.id,
            "client": item.client_id,
            "successor": item.successor_id,
            "interim_owner": item.interim_owner_id,
            "force": body.force,
            "reason": body.reason,
        },
        at=now,
    )
    session.flush()
    return item


def simulate(
    session: Session,
    *,
    leavers: Sequence[str],
    effective_at: dt.datetime,
    pool: dict[str, Any] | None,
    settings: Settings,
    include_items: bool,
    item_limit: int = 5000,
) -> dict[str, Any]:
    """Plans several leavers at once, as one reassignment; nothing is written."""
    unique = list(dict.fromkeys(leavers))
    known = set(session.scalars(select(Employee.external_id).where(Employee.external_id.in_(unique))))
    missing = [x for x in unique if x not in known]
    if missing:
        raise UnknownEmployee(
            f"Unknown employees: {', '.join(missing[:20])}.",
            errors=[
                {"loc": ["body", "leavers", unique.index(m)], "msg": "unknown employee", "type": "unknown_reference"}
                for m in missing[:50]
            ],
        )
    result = compute_plan(
        session,
        leavers=unique,
        effective_at=effective_at,
        pool=pool or {"kind": "organisation"},
        settings=settings,
        now=effective_at,
    )
    gained: dict[str, Counter[str]] = defaultdict(Counter)
    for r in result.rows:
        if r["successor_id"]:
            gained[r["successor_id"]][r["client"].tier] += 1
    successors = [
        {
            "employee": emp,
            "load_before": round(result.loads_before.get(emp, 0.0), 2),
            "load_after": round(result.loads_after.get(emp, 0.0), 2),
            "capacity": result.capacities.get(emp, 0.0),
            "clients_gained": dict(tiers),
        }
        for emp, tiers in sorted(gained.items())
    ]
    items = None
    if include_items:
        items = [
            {
                "client": r["client_id"],
                "leaver": r["previous_owner_id"],
                "tier": r["client"].tier,
                "successor": r["successor_id"],
                "interim_owner": r["interim_owner_id"],
                "needs_attention": r["needs_attention"],
                "attention_reason": r["attention_reason"],
                "risk_band": r["risk_band"],
            }
            for r in result.rows[:item_limit]
        ]
    return {
        "leavers": unique,
        "effective_at": effective_at,
        "clients": len(result.rows),
        "assigned": sum(1 for r in result.rows if r["successor_id"]),
        "needs_attention": sum(1 for r in result.rows if r["needs_attention"]),
        "total_cost": result.total_cost,
        "solver_status": result.status,
        "successors": successors,
        "risk_distribution": dict(Counter(r["risk_band"] or "unscored" for r in result.rows)),
        "total_exposure": round(sum(float(r["exposure"] or 0) for r in result.rows), 2),
        "items": items,
    }
