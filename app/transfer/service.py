"""The handover workflow: open, plan, review, approve, execute, sign off, complete, cancel, undo.

Functions take a Session and flush; the caller commits. Bulk work is set-based: one query to load,
one statement to write, whatever the number of clients.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sqlalchemy import Table, and_, delete, exists, false, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access import service as access
from app.audit import service as audit
from app.core import bulk
from app.core.auth import Principal
from app.core.config import Settings
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.directory import service as directory
from app.directory.models import AccountTeamMember, Client, Employee
from app.notify import service as notify
from app.risk import service as risk
from app.transfer import followups, solver
from app.transfer.models import OPEN_STATUSES, Handover, HandoverItem

# The solver's weight per risk band: a critical client's poor fit costs four times a low-risk one's.
BAND_WEIGHT = {"low": 1.0, "medium": 1.5, "high": 2.5, "critical": 4.0}

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("planned", "cancelled"),
    "planned": ("planned", "approved", "cancelled"),
    "approved": ("executed", "cancelled"),
    "executed": ("completed", "undone"),
    "completed": ("undone",),
    "cancelled": (),
    "undone": (),
}


def _move(h: Handover, target: str, now: dt.datetime) -> None:
    allowed = TRANSITIONS[h.status]
    if target not in allowed:
        raise Conflict(
            f"A handover in status {h.status} cannot become {target}.",
            extra={"allowed": list(allowed)},
        )
    h.status = target
    h.version += 1
    h.updated_at = now


EVENTS = frozenset(
    {
        "handover.created",
        "handover.planned",
        "handover.approved",
        "handover.cancelled",
        "handover.executed",
        "handover.completed",
        "handover.undone",
    }
)


@dataclass
class Pending:
    """A batch of handovers' audit entries and events, written together by `write` (one chain read and one INSERT
    for the entries, one subscription read and one bulk insert for the events) instead of a statement or two per
    handover; each list keeps the order of the calls."""

    changes: list[audit.Change] = field(default_factory=list)
    events: notify.Events = field(default_factory=list)

    def write(self, session: Session, now: dt.datetime) -> None:
        notify.emit_many(session, self.events, now=now)
        audit.record_many(session, self.changes, at=now)


def _audit(
    session: Session,
    actor: str,
    action: str,
    h: Handover,
    now: dt.datetime,
    *,
    pending: Pending | None = None,
    **data: Any,
) -> None:
    """Every state change: one audit entry and, for the CRM, one outbound event, in the same transaction.

    With `pending`, both are held there for the caller's one `Pending.write` (a batch of handovers)."""
    if action in EVENTS:
        payload = {
            "handover_id": h.id,
            "leaver": h.leaver_id,
            "manager": h.manager_id,
            "status": h.status,
            "effective_at": h.effective_at,
            "reason": h.reason,
            "actor": actor,
        }
        extra = {k: v for k, v in data.items() if k in ("items", "reason") and v is not None}
        if "reason" in extra and action in ("handover.cancelled", "handover.undone"):
            payload["cancel_reason" if action == "handover.cancelled" else "undo_reason"] = extra.pop("reason")
        extra.pop("reason", None)
        payload.update(extra)
        notify.emit(session, action, payload, now=now, into=pending.events if pending is not None else None)
    change = audit.Change(actor, action, "handover", str(h.id), {"status": h.status, "leaver": h.leaver_id, **data})
    if pending is None:
        audit.record_many(session, [change], at=now)
    else:
        pending.changes.append(change)


def anchor_audit(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime,
    reason: str,
    head: tuple[int, str] | None = None,
    verified: bool = False,
) -> audit.Checkpoint | None:
    """Signs the audit head as a checkpoint and sends it out as `audit.checkpoint`: the copy a database writer cannot
    reach. A no-op without a signing key. Audit imports nothing but core, so its caller emits the event."""
    cp = audit.checkpoint(session, settings, now=now, reason=reason, head=head, verified=verified)
    if cp is not None:
        notify.emit(session, "audit.checkpoint", cp.event(), now=now)
    return cp


# ---- visibility -------------------------------------------------------------------------------


def handover_management(principal: Principal) -> Any:
    """Who manages a handover (plans, overrides, approves, cancels, completes, undoes it): the unrestricted roles,
    and a manager for the handovers that name them manager or whose leaver is in their subtree, except their own
    (the subtree holds its root: a leaving manager could otherwise cancel or re-plan their own exit)."""
    if principal.unrestricted:
        return true()
    if principal.employee is None or principal.role != "manager":
        return false()
    tree = directory.subtree(principal.employee)
    return and_(
        Handover.leaver_id != principal.employee,
        or_(Handover.manager_id == principal.employee, Handover.leaver_id.in_(tree)),
    )


def _own_items(employee: str) -> Any:
    """The items an employee receives: as successor, interim owner or receiver (a client moves only to one of those)."""
    return or_(
        HandoverItem.successor_id == employee,
        HandoverItem.interim_owner_id == employee,
        HandoverItem.transferred_to_id == employee,
    )


def _participation(employee: str) -> Any:
    """The employee receives one of the handover's items."""
    return exists().where(HandoverItem.handover_id == Handover.id, _own_items(employee))


def _rules(principal: Principal) -> tuple[Any, Any, Any]:
    """(manages, sees every item, sees) as SQL; each reuses `manages`, so a statement holding them has one subtree
    CTE. Every item: whoever manages the handover, and the leaver (they hand all of it over); the handover itself
    also its participants (a manager may be a successor elsewhere), who see their own items only (`HandoverView`)."""
    manages = handover_management(principal)
    if principal.unrestricted or principal.employee is None:
        return manages, manages, manages
    whole = or_(manages, Handover.leaver_id == principal.employee)
    return manages, whole, or_(whole, _participation(principal.employee))


def manages(session: Session, principal: Principal, h: Handover) -> bool:
    """`handover_management` for one loaded handover (a query only for a manager who is not its manager)."""
    if principal.unrestricted:
        return True
    if principal.role != "manager" or principal.employee is None or h.leaver_id == principal.employee:
        return False
    if h.manager_id == principal.employee:
        return True
    return session.scalar(select(Handover.id).where(Handover.id == h.id, handover_management(principal))) is not None


@dataclass(frozen=True)
class HandoverView:
    """A handover as one principal sees it: `own` is the employee whose items alone they see (a participant who neither
    manages nor leaves it: least privilege, the other clients of the leaver are not theirs), None for every item."""

    handover: Handover
    manages: bool
    own: str | None = None

    @property
    def scope(self) -> Literal["all", "own"]:
        return "all" if self.own is None else "own"

    def items(self) -> Any:
        """The items this view shows, as SQL on HandoverItem."""
        return true() if self.own is None else _own_items(self.own)


def _views(principal: Principal, rows: Any) -> list[HandoverView]:
    return [HandoverView(h, bool(m), None if w else principal.employee) for h, m, w in rows]


def _visible_rows(
    session: Session, principal: Principal, handover_ids: Sequence[int], *, lock: bool
) -> list[HandoverView]:
    managing, whole, sees = _rules(principal)
    stmt = (
        select(Handover, managing.label("manages"), whole.label("whole"))
        .where(Handover.id.in_(handover_ids), sees)
        .order_by(Handover.id)
    )
    if lock:
        stmt = stmt.with_for_update()
    return _views(principal, session.execute(stmt))


def see_handover(
    session: Session, principal: Principal, handover_id: int, *, lock: bool = False, manage: str | None = None
) -> HandoverView:
    """A handover the principal sees, else 404, with the items they see. With `manage` (the 403 detail), one they
    manage: a participant who does not manage it (a manager named successor on another team's handover) gets 403."""
    rows = _visible_rows(session, principal, [handover_id], lock=lock)
    if not rows:
        raise NotFound(f"No handover {handover_id}.")
    if manage is not None and not rows[0].manages:
        raise Forbidden(manage)
    return rows[0]


def get_handover(
    session: Session, principal: Principal, handover_id: int, *, lock: bool = False, manage: str | None = None
) -> Handover:
    """`see_handover`'s handover."""
    return see_handover(session, principal, handover_id, lock=lock, manage=manage).handover


def get_handovers(
    session: Session,
    principal: Principal,
    handover_ids: Sequence[int],
    *,
    lock: bool = False,
    manage: str | None = None,
) -> list[Handover]:
    """Several handovers in one query, in the order asked, locked in id order (two batches that overlap cannot
    deadlock); 404 naming the ids the principal cannot see, then, with `manage`, 403 naming those they see
    without managing them, like `get_handover` for one."""
    wanted = list(dict.fromkeys(handover_ids))
    rows = _visible_rows(session, principal, wanted, lock=lock)
    found = {v.handover.id: v.handover for v in rows}
    missing = [hid for hid in wanted if hid not in found]
    if missing:
        raise NotFound(
            f"No handover {', '.join(map(str, missing[:20]))}{' …' if len(missing) > 20 else ''}.",
            extra={"handover_ids": missing},
        )
    if manage is not None:
        unmanaged = [v.handover.id for v in rows if not v.manages]
        if unmanaged:
            raise Forbidden(manage, extra={"handover_ids": unmanaged})
    return [found[hid] for hid in wanted]


def _can_approve(principal: Principal, h: Handover) -> bool:
    if principal.role in ("admin", "integration"):
        return True
    return principal.role == "manager" and principal.employee is not None and principal.employee == h.manager_id


# ---- open -------------------------------------------------------------------------------------


def create_handover(
    session: Session,
    *,
    leaver: str,
    reason: str,
    effective_at: dt.datetime,
    destination_competitor: bool | None,
    source: str,
    actor: str,
    now: dt.datetime,
) -> Handover:
    emp = session.get(Employee, leaver, with_for_update=True)
    if emp is None:
        raise Unprocessable(
            f"No employee {leaver!r}.",
            errors=[{"loc": ["body", "leaver"], "msg": "unknown employee", "type": "unknown_reference"}],
        )
    if emp.status == "departed":
        raise Unprocessable(
            f"Employee {leaver!r} has already departed.",
            errors=[{"loc": ["body", "leaver"], "msg": "already departed", "type": "invalid_state"}],
        )
    open_one = session.scalar(
        select(Handover.id).where(Handover.leaver_id == leaver, Handover.status.in_(OPEN_STATUSES))
    )
    if open_one is not None:
        raise Conflict(
            f"Employee {leaver!r} already has an open handover ({open_one}).", extra={"handover_id": open_one}
        )
    h = Handover(
        leaver_id=leaver,
        manager_id=emp.manager_id,
        reason=reason,
        destination_competitor=destination_competitor,
        status="draft",
        effective_at=effective_at,
        source=source,
        candidate_pool={"kind": "organisation"},
        leaver_status_before=emp.status,
        version=1,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(h)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"Employee {leaver!r} already has an open handover.") from exc
    emp.status = "leaving"
    emp.exit_at = effective_at
    emp.updated_at = now
    _audit(
        session, actor, "handover.created", h, now, effective_at=effective_at.isoformat(), reason=reason, source=source
    )
    return h


def open_from_exit(
    session: Session,
    *,
    leaver: str,
    effective_at: dt.datetime,
    reason: str,
    destination_competitor: bool | None,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> Handover:
    """An HR exit event: opens the handover, or moves the effective time of the open one."""
    h = session.scalar(
        select(Handover).where(Handover.leaver_id == leaver, Handover.status.in_(OPEN_STATUSES)).with_for_update()
    )
    if h is None:
        return create_handover(
            session,
            leaver=leaver,
            reason=reason,
            effective_at=effective_at,
            destination_competitor=destination_competitor,
            source="hr_webhook",
            actor=actor,
            now=now,
        )
    if h.status == "executed":
        raise Conflict(f"The handover of {leaver!r} was already executed.")
    if h.effective_at != effective_at:
        reschedule(session, h, effective_at=effective_at, actor=actor, now=now, settings=settings)
    if destination_competitor is not None:
        h.destination_competitor = destination_competitor
    return h


def reschedule(
    session: Session, h: Handover, *, effective_at: dt.datetime, actor: str, now: dt.datetime, settings: Settings
) -> None:
    old = h.effective_at
    h.effective_at = effective_at
    h.version += 1
    h.updated_at = now
    session.execute(
        update(Employee).where(Employee.external_id == h.leaver_id).values(exit_at=effective_at, updated_at=now)
    )
    if h.status in ("approved", "executed"):
        access.on_reschedule(session, handover_id=h.id, leaver=h.leaver_id, effective_at=effective_at, now=now)
        notify.on_handover_rescheduled(session, handover_id=h.id, now=now, settings=settings)
        followups.reschedule_for_handover(session, handover_id=h.id, now=now, settings=settings)
    _audit(
        session,
        actor,
        "handover.rescheduled",
        h,
        now,
        old_effective_at=old.isoformat(),
        effective_at=effective_at.isoformat(),
    )


def cancel_for_exit(
    session: Session, *, leaver: str, reason: str | None, actor: str, now: dt.datetime
) -> Handover | None:
    """An HR exit_cancelled event: cancels the open handover, or undoes an executed one."""
    h = session.scalar(
        select(Handover)
        .where(Handover.leaver_id == leaver, Handover.status.in_((*OPEN_STATUSES, "completed")))
        .order_by(Handover.id.desc())
        .limit(1)
    )
    if h is None:
        return None
    if h.status in ("executed", "completed"):
        undo(session, h, actor=actor, now=now, reason=reason, settings=None)
    else:
        cancel(session, h, actor=actor, now=now, reason=reason)
    return h


# ---- plan -------------------------------------------------------------------------------------


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
    """Active employees who stay long enough, ranked: 0 the leaver's team, 1 department, 2 organisation."""
    leaver_rows = session.scalars(select(Employee).where(Employee.external_id.in_(leavers))).all()
    managers = {e.manager_id for e in leaver_rows if e.manager_id}
    horizon = effective_at + dt.timedelta(days=settings.successor_exit_horizon_days)
    stmt = select(Employee).where(
        Employee.status == "active",
        Employee.external_id.not_in(leavers),
        or_(Employee.exit_at.is_(None), Employee.exit_at > horizon),
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
    """Load points carried now, plus those promised by other open handovers (not yet executed)."""
    loads: dict[str, float] = defaultdict(float)
    if not owners:
        return loads
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
) -> Plan:
    """Solve the whole reassignment for the clients of `leavers` at once; nothing is written.

    Risk goes in twice: before solving, each client's band sets its weight (riskier clients get the better
    fits); after solving, the score is recomputed with the chosen successor's fit and stored on the item.
    """
    manual = manual or {}
    now = now or effective_at
    context = risk.RiskContext(
        reason=reason, destination_competitor=destination_competitor, min_seniority=dict(settings.min_seniority)
    )
    clients = list(
        session.scalars(
            select(Client).where(Client.owner_id.in_(leavers), Client.status != "churned").order_by(Client.external_id)
        )
    )
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
        for start in range(0, len(ids), 5000):
            for cid, emp_id in session.execute(
                select(AccountTeamMember.client_id, AccountTeamMember.employee_id).where(
                    AccountTeamMember.client_id.in_(ids[start : start + 5000])
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
    for client, a in zip(to_solve, solution.assignments, strict=True):
        successor = cand_ids[a.successor_id] if a.successor_id is not None else None
        leaver = leaver_rows[client.owner_id]
        interim = None
        attention = None
        if successor is None:
            interim = leaver.manager_id or settings.interim_owner
            attention = a.reason or "no_candidate"
            if interim is None:
                attention = f"{attention}; no interim owner (leaver has no manager)"
        rows.append(
            {
                "client_id": client.external_id,
                "client": client,
                "previous_owner_id": client.owner_id,
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
    if "planned" not in TRANSITIONS[h.status]:
        raise Conflict(f"A {h.status} handover cannot be planned.", extra={"allowed": list(TRANSITIONS[h.status])})
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
    for start in range(0, len(handover_ids), 1000):
        part = list(handover_ids[start : start + 1000])
        session.execute(delete(HandoverItem).where(HandoverItem.handover_id.in_(part), HandoverItem.manual.is_(False)))
    table = cast(Table, HandoverItem.__table__)
    for start in range(0, len(values), 2000):
        bulk.insert_rows(session, table, values[start : start + 2000])


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
    pending: Pending | None = None,
    **extra: Any,
) -> None:
    h.candidate_pool = pool
    h.planned_at = now
    _move(h, "planned", now)
    _audit(
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
    blocked = [h.id for h in handovers if "planned" not in TRANSITIONS[h.status]]
    if blocked:
        raise Conflict(
            f"Handovers {', '.join(map(str, blocked[:20]))} cannot be planned in their status.",
            extra={"handover_ids": blocked},
        )
    if len({h.leaver_id for h in handovers}) != len(handovers):
        raise Unprocessable("Two of these handovers are for the same leaver; plan them one at a time.")
    ids = [h.id for h in handovers]
    manual_of: dict[int, dict[str, str | None]] = defaultdict(dict)
    for start in range(0, len(ids), 1000):
        for hid, client_id, successor_id in session.execute(
            select(HandoverItem.handover_id, HandoverItem.client_id, HandoverItem.successor_id).where(
                HandoverItem.handover_id.in_(ids[start : start + 1000]), HandoverItem.manual.is_(True)
            )
        ):
            manual_of[hid][client_id] = successor_id
    # A manual item counts as kept only while its client is still the leaver's (as in a single plan).
    owner_of: dict[str, str | None] = {}
    manual_clients = sorted({c for m in manual_of.values() for c in m})
    for start in range(0, len(manual_clients), 1000):
        owner_of.update(
            (client_id, owner_id)
            for client_id, owner_id in session.execute(
                select(Client.external_id, Client.owner_id).where(
                    Client.external_id.in_(manual_clients[start : start + 1000]), Client.status != "churned"
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
    pending = Pending()
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
        anchor_audit(session, settings, now=now, reason="joint_plan")
    return plans, len(groups)


# ---- review -----------------------------------------------------------------------------------


def etag(version: int, kind: str, ident: int) -> str:
    return f'"{kind}-{ident}-v{version}"'


def check_if_match(if_match: str | None, current: str) -> None:
    from app.core.errors import PreconditionFailed, PreconditionRequired

    if if_match is None:
        raise PreconditionRequired("This update needs an If-Match header with the current ETag.")
    tags = [t.strip() for t in if_match.split(",")]
    if "*" not in tags and current not in tags and f"W/{current}" not in tags:
        raise PreconditionFailed("The resource changed since you read it; fetch it again.", extra={"etag": current})


def get_item(session: Session, view: HandoverView, item_id: int) -> HandoverItem:
    """An item the view shows, else 404: to a participant another receiver's item is outside their reach."""
    h = view.handover
    item = session.scalar(
        select(HandoverItem).where(HandoverItem.id == item_id, HandoverItem.handover_id == h.id, view.items())
    )
    if item is None:
        raise NotFound(f"No item {item_id} in handover {h.id}.")
    return item


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
        raise Conflict(f"Items of a {h.status} handover cannot be changed.", extra={"allowed": ["planned"]})
    if body.successor is not None:
        problems = constraint_violations(session, h, item, body.successor, settings)
        if "unknown employee" in problems:
            raise Unprocessable(
                f"No employee {body.successor!r}.",
                errors=[{"loc": ["body", "successor"], "msg": "unknown employee", "type": "unknown_reference"}],
            )
        if problems and not body.force:
            raise Unprocessable(
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
            raise Unprocessable(
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


# ---- approve, execute -------------------------------------------------------------------------


def approve(session: Session, h: Handover, principal: Principal, *, now: dt.datetime, settings: Settings) -> Handover:
    approve_many(session, [h], principal, now=now, settings=settings)
    return h


def approve_many(
    session: Session, hs: Sequence[Handover], principal: Principal, *, now: dt.datetime, settings: Settings
) -> None:
    """Approves handovers together (a layoff), all or nothing: every check first, then each step once for all
    of them (grants, notifications and follow-ups as one statement per effective time). The rows are those of
    approving them one after another; one audit entry and one event per handover."""

    def named(ids: Sequence[int]) -> dict[str, Any] | None:
        return {"handover_ids": list(ids)} if len(hs) > 1 else None  # a single approval names its own id

    denied = [h.id for h in hs if not _can_approve(principal, h)]
    if denied:
        raise Forbidden("Only the leaver's manager or an admin may approve this handover.", extra=named(denied))
    refused = [h for h in hs if h.status != "planned"]
    if len(hs) == 1 and refused:
        _move(refused[0], "approved", now)  # raises with the allowed transitions
    if refused:
        raise Conflict(
            f"Handovers {', '.join(str(h.id) for h in refused[:20])} are not planned; only planned ones can be "
            "approved.",
            extra=named([h.id for h in refused]),
        )
    ids = [h.id for h in hs]
    i = HandoverItem
    orphans = dict(
        session.execute(
            select(i.handover_id, func.count())
            .where(i.handover_id.in_(ids), i.successor_id.is_(None), i.interim_owner_id.is_(None))
            .group_by(i.handover_id)
        ).all()
    )
    if orphans:
        total = sum(orphans.values())
        raise Conflict(
            f"{total} item(s) have neither a successor nor an interim owner; set one first.",
            extra=named(sorted(orphans)),
        )
    session.execute(
        update(i)
        .where(i.handover_id.in_(ids), i.status == "proposed")
        .values(status="approved", version=i.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    for h in hs:
        h.approved_by = principal.actor
        h.approved_at = now
        _move(h, "approved", now)
    access.on_approve_many(session, [(h.id, h.effective_at) for h in hs], actor=principal.actor, now=now)
    _cut_leaving_receivers(session, ids)
    pending = Pending()
    for h in hs:
        _audit(session, principal.actor, "handover.approved", h, now, pending=pending)
    pending.write(session, now)
    notify.on_handovers_approved(session, ids, now=now, settings=settings)
    followups.create_for_handovers(session, hs, now=now, settings=settings)
    if len(hs) > 1:
        anchor_audit(session, settings, now=now, reason="joint_approval")


def _cut_leaving_receivers(session: Session, handover_ids: Sequence[int]) -> None:
    """A successor or interim owner whose own exit was approved before: the grants these approvals just gave
    them end at that exit, cut by *their* handover (so cancelling their exit gives the windows back, exactly).
    Receivers who leave in the same batch were cut with it (`access.on_approve_many`)."""
    receivers = select(func.coalesce(HandoverItem.successor_id, HandoverItem.interim_owner_id)).where(
        HandoverItem.handover_id.in_(handover_ids)
    )
    leaving = session.scalars(
        select(Handover.id).where(
            Handover.id.not_in(handover_ids),
            Handover.leaver_id.in_(receivers),
            Handover.status.in_(("approved", "executed", "completed")),
        )
    ).all()
    if leaving:
        access.cut_leavers(session, leaving)


def execute(
    session: Session,
    h: Handover,
    *,
    actor: str,
    now: dt.datetime,
    immediate: bool = False,
    settings: Settings | None = None,
) -> bool:
    """Moves ownership; idempotent. Returns False when there was nothing to do."""
    if h.status in ("executed", "completed"):
        return False
    if h.status != "approved":
        _move(h, "executed", now)
    if immediate and h.effective_at > now:
        if settings is None:
            raise ValueError("an immediate execution needs settings")
        reschedule(session, h, effective_at=now, actor=actor, now=now, settings=settings)
    if h.effective_at > now:
        raise Conflict(
            f"The effective time {h.effective_at.isoformat()} has not come yet.", extra={"allowed": ["cancelled"]}
        )
    execute_many(session, [h], actor=actor, now=now)
    return True


def execute_many(session: Session, hs: Sequence[Handover], *, actor: str, now: dt.datetime) -> None:
    """Moves ownership for approved handovers whose effective time has come, each step one statement for all of
    them (the worker's due batch); one audit entry and one handover.executed event per handover, as before.

    A client in two of these handovers' approved items (the CRM moved it between two leavers after the first
    plan) would make the set-based owner update ambiguous: those batches run one handover at a time, in order.
    """
    ids = [h.id for h in hs]
    item = HandoverItem
    if len(hs) > 1 and session.scalar(
        select(item.client_id)
        .where(item.handover_id.in_(ids), item.status == "approved")
        .group_by(item.client_id)
        .having(func.count() > 1)
        .limit(1)
    ):
        for h in hs:
            execute_many(session, [h], actor=actor, now=now)
        return
    # UPDATE … FROM: each client joined to its (single, checked above) approved item and that item's handover; only
    # clients still with their leaver move, and former_owner_id is that leaver (the row's owner before the SET).
    session.execute(
        update(Client)
        .where(
            item.handover_id.in_(ids),
            item.status == "approved",
            item.client_id == Client.external_id,
            Handover.id == item.handover_id,
            Client.owner_id == Handover.leaver_id,
        )
        .values(
            owner_id=func.coalesce(item.successor_id, item.interim_owner_id),
            former_owner_id=Client.owner_id,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(item)
        .where(item.handover_id.in_(ids), item.status == "approved", Client.external_id == item.client_id)
        .values(
            status="transferred",
            transferred_to_id=Client.owner_id,
            transferred_at=now,
            version=item.version + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    # A client the CRM moved elsewhere before the effective time stays where it is.
    planned_owner = func.coalesce(item.successor_id, item.interim_owner_id)
    moved_away = and_(item.handover_id.in_(ids), item.status == "transferred", item.transferred_to_id != planned_owner)
    elsewhere: dict[int, list[str]] = defaultdict(list)
    for hid, client_id in session.execute(select(item.handover_id, item.client_id).where(moved_away)):
        elsewhere[hid].append(client_id)
    if elsewhere:
        session.execute(
            update(item)
            .where(moved_away)
            .values(status="closed", attention_reason="owner changed before the effective time", transferred_to_id=None)
            .execution_options(synchronize_session=False)
        )
        for hid, clients in elsewhere.items():
            access.end_handover_grants_for_clients(session, handover_id=hid, clients=clients, now=now)
    confirm_signed_items(session, ids, now)
    session.execute(
        update(Employee)
        .where(Employee.external_id.in_([h.leaver_id for h in hs]))
        .values(status="departed", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    moved = dict(
        session.execute(
            select(item.handover_id, func.count())
            .where(item.handover_id.in_(ids), item.status == "transferred")
            .group_by(item.handover_id)
        ).all()
    )
    pending = Pending()
    moves = _moves(session, ids, statuses=("transferred", "confirmed"), back=False)
    for h in hs:
        h.executed_at = now
        _move(h, "executed", now)
        _audit(session, actor, "handover.executed", h, now, pending=pending, clients_moved=moved.get(h.id, 0))
        _reassigned(session, h, moves.get(h.id, []), back=False, now=now, into=pending.events)
    pending.write(session, now)


def _moves(
    session: Session, handover_ids: Sequence[int], *, statuses: Sequence[str], back: bool
) -> dict[int, list[dict[str, Any]]]:
    """Each handover's owner changes (or, `back`, their reversal), in item order; one query for all."""
    item = HandoverItem
    rows = session.execute(
        select(item.handover_id, item.client_id, item.previous_owner_id, item.transferred_to_id, item.successor_id)
        .where(item.handover_id.in_(list(handover_ids)), item.status.in_(statuses))
        .order_by(item.id)
    ).all()
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for hid, c, prev, to, succ in rows:
        if to is not None:
            out[hid].append(
                {"client": c, "from": (to if back else prev), "to": (prev if back else to), "interim": succ is None}
            )
    return out


def _reassigned(
    session: Session,
    h: Handover,
    moves: Sequence[dict[str, Any]],
    *,
    back: bool,
    now: dt.datetime,
    into: notify.Events | None = None,
) -> None:
    """The CRM learns every owner change, many clients per event."""
    if moves:
        notify.emit_batches(
            session,
            "client.reassigned",
            "clients",
            moves,
            common={"handover_id": h.id, "effective_at": h.effective_at, "undo": back},
            now=now,
            into=into,
        )


def run_due(session: Session, *, now: dt.datetime, limit: int = 50) -> list[int]:
    """Executes approved handovers whose time has come; safe with several workers (SKIP LOCKED)."""
    stmt = (
        select(Handover)
        .where(Handover.status == "approved", Handover.effective_at <= now)
        .order_by(Handover.effective_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    due = list(session.scalars(stmt).all())
    if due:
        execute_many(session, due, actor="system:worker", now=now)
    return [h.id for h in due]


# ---- cancel, undo, complete -------------------------------------------------------------------


def cancel(session: Session, h: Handover, *, actor: str, now: dt.datetime, reason: str | None) -> Handover:
    _move(h, "cancelled", now)
    session.execute(
        update(HandoverItem).where(HandoverItem.handover_id == h.id).values(status="cancelled", updated_at=now)
    )
    session.execute(
        update(Employee)
        .where(Employee.external_id == h.leaver_id, Employee.status == "leaving")
        .values(status=h.leaver_status_before or "active", exit_at=None, updated_at=now)
    )
    h.cancelled_by, h.cancelled_at, h.cancel_reason = actor, now, reason
    access.on_cancel(session, handover_id=h.id, actor=actor, now=now)
    notify.on_handover_cancelled(session, handover_id=h.id, now=now)
    followups.cancel_for_handover(session, handover_id=h.id, now=now)
    _audit(session, actor, "handover.cancelled", h, now, reason=reason)
    return h


def undo(
    session: Session, h: Handover, *, actor: str, now: dt.datetime, reason: str | None, settings: Settings | None
) -> Handover:
    window = dt.timedelta(days=settings.undo_window_days if settings else 30)
    if h.status in ("executed", "completed") and h.executed_at and now > h.executed_at + window:
        allowed = [t for t in TRANSITIONS[h.status] if t != "undone"]
        raise Conflict(f"The undo window of {window.days} days has passed.", extra={"allowed": allowed})
    _move(h, "undone", now)
    item = HandoverItem
    # Only clients still with the owner we gave them go back; anything the CRM moved since stays put.
    current_owner = select(Client.owner_id).where(Client.external_id == item.client_id).scalar_subquery()
    session.execute(
        update(item)
        .where(
            item.handover_id == h.id,
            item.status.in_(("transferred", "confirmed", "closed")),
            item.transferred_to_id == current_owner,
        )
        .values(status="reverted", reverted_at=now, version=item.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    back = (
        select(item.previous_owner_id)
        .where(item.handover_id == h.id, item.client_id == Client.external_id)
        .scalar_subquery()
    )
    reverted = select(item.client_id).where(item.handover_id == h.id, item.status == "reverted")
    session.execute(
        update(Client)
        .where(Client.external_id.in_(reverted))
        .values(owner_id=back, former_owner_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Employee)
        .where(Employee.external_id == h.leaver_id)
        .values(status="active", exit_at=None, updated_at=now)
    )
    h.undone_by, h.undone_at = actor, now
    staying = select(item.client_id).where(
        item.handover_id == h.id, item.status.in_(("transferred", "confirmed", "closed"))
    )
    access.on_undo(session, handover_id=h.id, actor=actor, now=now, staying=staying)
    followups.cancel_for_handover(session, handover_id=h.id, now=now)
    _audit(session, actor, "handover.undone", h, now, reason=reason)
    _reassigned(
        session, h, _moves(session, [h.id], statuses=("reverted",), back=True).get(h.id, []), back=True, now=now
    )
    return h


def complete(session: Session, h: Handover, *, actor: str, now: dt.datetime, reason: str | None) -> Handover:
    _move(h, "completed", now)
    h.completed_by, h.completed_at, h.completion_reason = actor, now, reason
    if reason:
        session.execute(
            update(HandoverItem)
            .where(HandoverItem.handover_id == h.id, HandoverItem.status == "transferred")
            .values(status="closed", updated_at=now)
        )
    _audit(session, actor, "handover.completed", h, now, reason=reason)
    return h


def _maybe_complete(session: Session, h: Handover, now: dt.datetime) -> None:
    if h.status != "executed" or now < h.effective_at:
        return
    open_items = session.scalar(
        select(func.count())
        .select_from(HandoverItem)
        .where(HandoverItem.handover_id == h.id, HandoverItem.status.not_in(("confirmed", "closed")))
    )
    if not open_items:
        complete(session, h, actor="system:sign-off", now=now, reason=None)


# ---- checklist and sign-off -------------------------------------------------------------------


def _involved(session: Session, principal: Principal, h: Handover, item: HandoverItem) -> bool:
    """The leaver, this item's successor, interim owner or receiver, or whoever manages the handover: a manager who
    is a successor on another team's handover works on their own items only."""
    emp = principal.employee
    if emp is not None and emp in (h.leaver_id, item.successor_id, item.interim_owner_id, item.transferred_to_id):
        return True
    return manages(session, principal, h)


def set_checklist(
    session: Session,
    h: Handover,
    item: HandoverItem,
    key: str,
    *,
    done: bool,
    note: str | None,
    principal: Principal,
    now: dt.datetime,
) -> HandoverItem:
    if h.status not in ("approved", "executed"):
        raise Conflict(
            f"The checklist of a {h.status} handover cannot change.", extra={"allowed": ["approved", "executed"]}
        )
    if not _involved(session, principal, h, item):
        raise Forbidden(
            "Only the leaver, this item's successor or interim owner, or a manager of the handover may update this "
            "checklist."
        )
    checklist = dict(item.checklist or {})
    if key.startswith("mitigation:") and key not in checklist:
        raise NotFound(f"Item {item.id} has no mitigation {key.removeprefix('mitigation:')!r}.")
    checklist[key] = {"done": done, "note": note, "by": principal.actor, "at": now.isoformat()}
    item.checklist = checklist
    item.version += 1
    item.updated_at = now
    audit.record(
        session,
        actor=principal.actor,
        action="handover.item.checklist",
        entity_type="handover_item",
        entity_id=str(item.id),
        data={"handover": h.id, "key": key, "done": done},
        at=now,
    )
    session.flush()
    return item


def sign_off(
    session: Session,
    h: Handover,
    item: HandoverItem,
    *,
    side: str,
    reason: str | None,
    principal: Principal,
    now: dt.datetime,
) -> HandoverItem:
    if h.status not in ("approved", "executed"):
        raise Conflict(f"A {h.status} handover cannot be signed off.", extra={"allowed": ["approved", "executed"]})
    if item.status in ("cancelled", "reverted", "closed"):
        raise Conflict(f"A {item.status} item cannot be signed off.")
    emp = principal.employee
    if side == "outgoing":
        if item.outgoing_signed_at is not None:
            raise Conflict("The outgoing side already signed.")
        if now < h.effective_at:
            if emp != h.leaver_id:
                raise Forbidden("Until the effective time only the leaver signs the outgoing side.")
        else:
            if not (principal.role in ("manager", "admin") and (principal.role == "admin" or emp == h.manager_id)):
                raise Forbidden("After the effective time the leaver's manager signs for the leaver.")
            if not reason:
                raise Unprocessable(
                    "A manager signing for the leaver must give a reason.",
                    errors=[{"loc": ["body", "reason"], "msg": "required", "type": "missing"}],
                )
        item.outgoing_signed_by, item.outgoing_signed_at, item.outgoing_signoff_reason = principal.actor, now, reason
    else:
        if item.incoming_signed_at is not None:
            raise Conflict("The incoming side already signed.")
        receiver = item.transferred_to_id or item.successor_id or item.interim_owner_id
        if emp is None or emp != receiver:
            raise Forbidden("Only the successor signs the incoming side.")
        item.incoming_signed_by, item.incoming_signed_at = principal.actor, now
    if item.outgoing_signed_at and item.incoming_signed_at and item.status == "transferred":
        item.status = "confirmed"
    item.version += 1
    item.updated_at = now
    audit.record(
        session,
        actor=principal.actor,
        action=f"handover.item.signed_{side}",
        entity_type="handover_item",
        entity_id=str(item.id),
        data={"handover": h.id, "reason": reason, "status": item.status},
        at=now,
    )
    session.flush()
    _maybe_complete(session, h, now)
    return item


def confirm_signed_items(session: Session, handover_ids: Sequence[int], now: dt.datetime) -> None:
    """At execution, items signed by both sides during the transition become confirmed."""
    session.execute(
        update(HandoverItem)
        .where(
            HandoverItem.handover_id.in_(handover_ids),
            HandoverItem.status == "transferred",
            HandoverItem.outgoing_signed_at.is_not(None),
            HandoverItem.incoming_signed_at.is_not(None),
        )
        .values(status="confirmed", updated_at=now)
    )


# ---- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    statuses: dict[str, int]
    bands: dict[str, int]
    needs_attention: int
    exposure: float


def counts(session: Session, handover_ids: Sequence[int], *, where: Any = None) -> dict[int, Counts]:
    """Items by status and band, attention and exposure, for a page of handovers in one query (only the items
    `where` holds for, when given)."""
    if not handover_ids:
        return {}
    rows = session.execute(
        select(
            HandoverItem.handover_id,
            HandoverItem.status,
            HandoverItem.risk_band,
            HandoverItem.needs_attention,
            func.count(),
            func.coalesce(func.sum(HandoverItem.exposure), 0),
        )
        .where(HandoverItem.handover_id.in_(handover_ids), true() if where is None else where)
        .group_by(HandoverItem.handover_id, HandoverItem.status, HandoverItem.risk_band, HandoverItem.needs_attention)
    ).all()
    statuses: dict[int, Counter[str]] = defaultdict(Counter)
    bands: dict[int, Counter[str]] = defaultdict(Counter)
    attention: Counter[int] = Counter()
    exposure: dict[int, float] = defaultdict(float)
    for hid, status, band, needs, n, exp in rows:
        statuses[hid][status] += n
        bands[hid][band or "unscored"] += n
        exposure[hid] += float(exp or 0)
        if needs:
            attention[hid] += n
    return {i: Counts(dict(statuses[i]), dict(bands[i]), attention[i], round(exposure[i], 2)) for i in handover_ids}


def view_counts(session: Session, views: Sequence[HandoverView]) -> dict[int, Counts]:
    """`counts` over the items each view shows: a participant's header adds up their own items, not the leaver's
    whole book (its size and exposure are the leaver's managers' to see)."""
    shown: list[Any] = []
    every = [v.handover.id for v in views if v.own is None]
    if every:
        shown.append(HandoverItem.handover_id.in_(every))
    for emp in sorted({v.own for v in views if v.own is not None}):
        ids = [v.handover.id for v in views if v.own == emp]
        shown.append(and_(HandoverItem.handover_id.in_(ids), _own_items(emp)))
    return counts(session, [v.handover.id for v in views], where=or_(*shown) if shown else None)


@dataclass(frozen=True)
class HandoverFilter:
    status: str | None = None
    leaver: str | None = None
    manager: str | None = None
    effective_from: dt.datetime | None = None
    effective_to: dt.datetime | None = None


def list_handovers(
    session: Session, principal: Principal, flt: HandoverFilter, *, limit: int, offset: int
) -> list[HandoverView]:
    managing, whole, sees = _rules(principal)
    stmt = select(Handover, managing.label("manages"), whole.label("whole")).where(sees)
    if flt.status:
        stmt = stmt.where(Handover.status == flt.status)
    if flt.leaver:
        stmt = stmt.where(Handover.leaver_id == flt.leaver)
    if flt.manager:
        stmt = stmt.where(Handover.manager_id == flt.manager)
    if flt.effective_from:
        stmt = stmt.where(Handover.effective_at >= flt.effective_from)
    if flt.effective_to:
        stmt = stmt.where(Handover.effective_at < flt.effective_to)
    return _views(principal, session.execute(stmt.order_by(Handover.id.desc()).limit(limit).offset(offset)))


@dataclass(frozen=True)
class ItemFilter:
    status: str | None = None
    risk_band: str | None = None
    successor: str | None = None
    needs_attention: bool | None = None


def list_items(
    session: Session, view: HandoverView, flt: ItemFilter, *, limit: int, offset: int
) -> list[tuple[HandoverItem, Client]]:
    stmt = (
        select(HandoverItem, Client)
        .join(Client, Client.external_id == HandoverItem.client_id)
        .where(HandoverItem.handover_id == view.handover.id, view.items())
    )
    if flt.status:
        stmt = stmt.where(HandoverItem.status == flt.status)
    if flt.risk_band:
        stmt = stmt.where(HandoverItem.risk_band == flt.risk_band)
    if flt.successor:
        stmt = stmt.where(HandoverItem.successor_id == flt.successor)
    if flt.needs_attention is not None:
        stmt = stmt.where(HandoverItem.needs_attention.is_(flt.needs_attention))
    return [(i, c) for i, c in session.execute(stmt.order_by(HandoverItem.id).limit(limit).offset(offset))]


# ---- simulation -------------------------------------------------------------------------------


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
        raise Unprocessable(
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
