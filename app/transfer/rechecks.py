"""Re-checks: a plan is only as good as the facts it was made on. At approval and at execution every planned
successor is validated again; clients the CRM gave the leaver after planning join the handover.

What a successor must still be (items whose client is still the leaver's):

- known, not departed, and able to act at the effective time (not leaving before it) — for every item, forced
  or not, at execution; at approval for every item too, except that a forced item (a person overrode the
  constraints, with a reason) keeps a successor who only leaves later than planned for;
- not forced: active (not leaving), not the leaver of an open handover effective at or before this one, with
  clearance for the client's sensitivity, and within capacity (what they own, what other open handovers promise
  them, and what these handovers give them).

Items that fail are re-planned by the exact solver (`planning.compute_plan`) over those clients only: every
other item of the handover is pinned to its receiver, so its load counts. The solver finds someone valid or
gives the client to the interim owner with `needs_attention` and a reason. One audit entry per re-planned item
(`handover.item.replanned`); approval returns them (`Replanned`) for its response.

Late clients: a client owned by the leaver with no item in their open handover (the CRM gave it after planning)
joins it — planned at once by the same solve (a proposed item when planned; an approved one with its grants when
approved; a draft is planned later with everything else). A client given to a leaver whose handover was already
executed goes straight to the interim owner, with an item that says so, an audit entry and a `handover.attention`
event. Everything is set-based: one read per step for a batch, one solve per handover that needs one.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Table, and_, exists, func, literal, select, update
from sqlalchemy.orm import Session

from app.access import service as access
from app.access.models import AccessGrant
from app.audit import service as audit
from app.core import bulk
from app.core.config import Settings
from app.core.db import AnySelect
from app.directory import service as directory
from app.directory.models import Client, Employee
from app.notify import events as event_models
from app.notify import service as notify
from app.transfer import continuity, messaging, planning, seats
from app.transfer import interim as interim_rule
from app.transfer.followups import service as followups
from app.transfer.models import OPEN_STATUSES, Handover, HandoverItem

Stage = Literal["approval", "execution", "intake"]


@dataclass(frozen=True)
class Replanned:
    """One item the re-check changed (or added, `problem` "late client")."""

    handover_id: int
    client_id: str
    previous_successor: str | None
    problem: str
    successor: str | None
    interim_owner: str | None
    needs_attention: bool
    attention_reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "client": self.client_id,
            "previous_successor": self.previous_successor,
            "problem": self.problem,
            "successor": self.successor,
            "interim_owner": self.interim_owner,
            "needs_attention": self.needs_attention,
            "attention_reason": self.attention_reason,
        }


LATE = "late client: given to the leaver after planning"
# A role change or a leave keeps the person, who can hold what they are given.
SELF_KEEPING = ("role_change", "leave")
STRANDED = "nobody can hold the client (no successor, no interim owner can act): it stays with the leaver"
REASON_LENGTH = 200  # handover_item.attention_reason


def _clip(reason: str | None) -> str | None:
    return reason if reason is None or len(reason) <= REASON_LENGTH else reason[: REASON_LENGTH - 1] + "…"


def recheck(
    session: Session,
    hs: Sequence[Handover],
    *,
    stage: Stage,
    actor: str,
    now: dt.datetime,
    settings: Settings,
    only_late: bool = False,
) -> dict[int, list[Replanned]]:
    """Re-validates the successors of these handovers' current items (proposed at approval, approved at
    execution or intake) and adds their late clients; re-plans what fails. Returns the changes per handover."""
    hs = [h for h in hs if h.status in ("planned", "approved")]
    if not hs:
        return {}
    ids = [h.id for h in hs]
    by_id = {h.id: h for h in hs}
    status_of = {h.id: "proposed" if h.status == "planned" else "approved" for h in hs}
    i = HandoverItem
    items = session.execute(
        select(
            i.id,
            i.handover_id,
            i.client_id,
            i.status,
            i.successor_id,
            i.forced,
            i.version,
            Client.tier,
            Client.sensitivity,
        )
        .join(Client, Client.external_id == i.client_id)
        .join(Handover, Handover.id == i.handover_id)
        .where(
            i.handover_id.in_(ids),
            i.status.in_(("proposed", "approved")),
            Client.owner_id == Handover.leaver_id,
            Client.status != "churned",
        )
    ).all()
    items = [r for r in items if r.status == status_of[r.handover_id]]
    problems: dict[int, str] = {} if only_late else _problems(session, by_id, items, stage=stage, settings=settings)
    # A role change keeps the person, who can hold the clients of the new role: none of theirs is late.
    late = _late_clients(session, [h.id for h in hs if h.reason != "role_change"])
    touched = sorted({r.handover_id for r in items if r.id in problems} | set(late))
    out: dict[int, list[Replanned]] = {}
    changes: list[audit.Change] = []
    stranded: dict[int, list[str]] = defaultdict(list)
    for hid in touched:
        h = by_id[hid]
        mine = [r for r in session.execute(select(i.client_id, i.successor_id, i.id).where(i.handover_id == hid))]
        affected = {r.client_id: r for r in items if r.handover_id == hid and r.id in problems}
        manual = {c: s for c, s, _ in mine if c not in affected}
        result = planning.compute_plan(
            session,
            leavers=[h.leaver_id],
            effective_at=h.effective_at,
            pool=h.candidate_pool or {"kind": "organisation"},
            settings=settings,
            manual=manual,
            handover_ids=[hid],
            now=now,
            reason=h.reason,
            destination_competitor=h.destination_competitor,
        )
        rows = {r["client_id"]: r for r in result.rows}
        done: list[Replanned] = []
        updates = []
        for client_id, item in affected.items():
            row = rows.get(client_id) or _interim_row(session, h, client_id, settings)
            problem = problems[item.id]
            reason = None if row["successor_id"] else f"re-checked at {stage}: {problem}; {row['attention_reason']}"
            if _stranded(row, status_of[hid]):
                reason = f"{STRANDED}; {reason}"
                stranded[hid].append(client_id)
            reason = _clip(reason)
            updates.append(
                {
                    "id": item.id,
                    "status": "closed" if _stranded(row, status_of[hid]) else status_of[hid],
                    "successor_id": row["successor_id"],
                    "interim_owner_id": row["interim_owner_id"],
                    "needs_attention": row["successor_id"] is None,
                    "attention_reason": reason,
                    "reasons": {
                        **(row.get("reasons") or {}),
                        "replanned": {"stage": stage, "from": item.successor_id, "problem": problem},
                    },
                    "risk_factors": row.get("risk_factors") or {},
                    "risk_score": row.get("risk_score"),
                    "risk_band": row.get("risk_band"),
                    "exposure": row.get("exposure"),
                    "manual": False,
                    "forced": False,
                    "incoming_signed_by": None,
                    "incoming_signed_at": None,
                    "version": item.version + 1,
                    "updated_at": now,
                }
            )
            done.append(
                Replanned(
                    hid,
                    client_id,
                    item.successor_id,
                    problem,
                    row["successor_id"],
                    row["interim_owner_id"],
                    row["successor_id"] is None,
                    reason,
                )
            )
        if updates:
            session.execute(update(HandoverItem), updates)
        new_rows = []
        for client_id in late.get(hid, []):
            row = rows.get(client_id) or _interim_row(session, h, client_id, settings)
            reason = None if row["successor_id"] else f"{LATE}; {row['attention_reason']}"
            if _stranded(row, status_of[hid]):
                reason = f"{STRANDED}; {reason}"
                stranded[hid].append(client_id)
            reason = _clip(reason)
            new_rows.append({**row, "needs_attention": row["successor_id"] is None, "attention_reason": reason})
            done.append(
                Replanned(
                    hid,
                    client_id,
                    None,
                    LATE,
                    row["successor_id"],
                    row["interim_owner_id"],
                    row["successor_id"] is None,
                    reason,
                )
            )
        values = planning._item_values(hid, new_rows, now)
        for v, row in zip(values, new_rows, strict=True):
            v["status"] = "closed" if _stranded(row, status_of[hid]) else status_of[hid]
            v["reasons"] = {**(row.get("reasons") or {}), "late": {"stage": stage}}
        bulk.insert_rows(session, cast(Table, HandoverItem.__table__), values)
        if status_of[hid] == "approved":
            _regrant(session, h, [r.client_id for r in done], replanned=list(affected), actor=actor, now=now)
            rerouted = _follow(session, h, affected, done, actor=actor, now=now, settings=settings)
            if rerouted is not None:
                changes.append(rerouted)
        if stage == "intake":
            h.version += 1
            h.updated_at = now
        out[hid] = done
        changes.extend(
            audit.Change(
                actor,
                "handover.item.added" if r.problem == LATE else "handover.item.replanned",
                "handover",
                str(hid),
                {"stage": stage, **r.as_json()},
            )
            for r in done
        )
    for hid, found in stranded.items():
        h, clients = by_id[hid], sorted(found)  # in client order, whatever order the database gave the items
        notify.emit(
            session,
            "handover.attention",
            event_models.HandoverAttentionEvent(
                handover_id=hid,
                leaver=h.leaver_id,
                reason=STRANDED,
                clients=[event_models.AttentionClient(client=c, to=None) for c in clients],
            ),
            now=now,
        )
        changes.append(
            audit.Change(actor, "handover.attention", "handover", str(hid), {"reason": STRANDED, "clients": clients})
        )
    if changes:
        session.flush()
        audit.record_many(session, changes, at=now)
    return out


def _follow(
    session: Session,
    h: Handover,
    affected: dict[str, Any],
    done: Sequence[Replanned],
    *,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> audit.Change | None:
    """Approved items given to someone else: approval's briefing, introductions and sign-off reminders not sent
    yet follow them (`messaging.on_replanned`), and so do their follow-ups (`followups.follow_receivers`); one audit
    entry (`handover.messages_rerouted`) says what moved. None when no receiver changed."""
    moves = [
        messaging.Rerouted(affected[r.client_id].id, r.client_id, r.previous_successor, r.successor or r.interim_owner)
        for r in done
        if r.client_id in affected
        and r.previous_successor is not None
        and r.previous_successor != (r.successor or r.interim_owner)
    ]
    if not moves:
        return None
    sent = messaging.on_replanned(session, h, moves, now=now, settings=settings)
    follow = followups.follow_receivers(session, {m.item_id: m.new for m in moves}, now=now)
    return audit.Change(
        actor,
        "handover.messages_rerouted",
        "handover",
        str(h.id),
        {
            "status": h.status,
            "clients": [{"client": m.client_id, "from": m.old, "to": m.new} for m in moves],
            "messages": sent,
            "follow_ups": follow,
        },
    )


def _stranded(row: dict[str, Any], status: str) -> bool:
    """An approved item left with no receiver at all (nobody up the chain can act): it is closed, not moved."""
    return status == "approved" and row["successor_id"] is None and row["interim_owner_id"] is None


def _problems(
    session: Session, by_id: dict[int, Handover], items: Sequence[Any], *, stage: Stage, settings: Settings
) -> dict[int, str]:
    """Item id → why its successor no longer qualifies."""
    successors = sorted({r.successor_id for r in items if r.successor_id is not None})
    if not successors:
        return {}
    emps = {e.external_id: e for e in session.scalars(select(Employee).where(Employee.external_id.in_(successors)))}
    exits = dict(
        session.execute(
            select(Handover.leaver_id, func.min(Handover.effective_at))
            .where(Handover.leaver_id.in_(successors), Handover.status.in_(OPEN_STATUSES))
            .group_by(Handover.leaver_id)
        ).all()
    )
    problems: dict[int, str] = {}
    for r in items:
        if r.successor_id is None:
            continue
        h = by_id[r.handover_id]
        e = emps.get(r.successor_id)
        exit_at = exits.get(r.successor_id)
        if e is None:
            problems[r.id] = "the successor is unknown"
        elif e.status == "departed":
            problems[r.id] = "the successor has departed"
        elif stage == "execution" and not directory.can_act(e, h.effective_at):
            problems[r.id] = f"the successor cannot act at the effective time ({e.status})"
        elif r.forced:
            continue  # a person overrode the soft constraints with a reason
        elif e.status != "active":
            problems[r.id] = f"the successor is {e.status}"
        elif exit_at is not None and exit_at <= h.effective_at:
            problems[r.id] = f"the successor leaves at {exit_at.isoformat()}, before this handover"
        elif e.clearance < r.sensitivity:
            problems[r.id] = f"clearance {e.clearance} is below the client's sensitivity {r.sensitivity}"
    # Capacity: what they carry and are promised elsewhere, plus what these handovers still give them.
    load = planning._loads(session, successors, settings, exclude_handovers=list(by_id))
    for r in items:
        if r.successor_id is not None and r.id not in problems:
            load[r.successor_id] = load.get(r.successor_id, 0.0) + settings.load_points.get(r.tier, 1.0)
    for r in items:
        e = emps.get(r.successor_id) if r.successor_id else None
        if e is None or r.id in problems or r.forced:
            continue
        have = load.get(r.successor_id, 0.0)
        if have > float(e.capacity) + 1e-9:
            problems[r.id] = f"capacity {float(e.capacity)} is exceeded (load {round(have, 2)})"
    return problems


def _late_clients(session: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    """Clients owned by each handover's leaver that have no item in it."""
    i = HandoverItem
    rows = session.execute(
        select(Handover.id, Client.external_id)
        .join(Client, Client.owner_id == Handover.leaver_id)
        .where(
            Handover.id.in_(list(ids)),
            Client.status != "churned",
            ~exists().where(i.handover_id == Handover.id, i.client_id == Client.external_id),
        )
        .order_by(Handover.id, Client.external_id)
    ).all()
    out: dict[int, list[str]] = defaultdict(list)
    for hid, client_id in rows:
        out[hid].append(client_id)
    return out


def _interim_row(session: Session, h: Handover, client_id: str, settings: Settings) -> dict[str, Any]:
    """What the solver would give when it gave nothing for this client: its interim owner."""
    owner = interim_rule.interim_owner(session, h.leaver_id, at=h.effective_at, settings=settings)
    reason = "no_candidate" if owner else "no_candidate; no interim owner (no manager up the chain can act)"
    return {
        "client_id": client_id,
        "previous_owner_id": h.leaver_id,
        "successor_id": None,
        "interim_owner_id": owner,
        "needs_attention": True,
        "attention_reason": reason,
        "reasons": {},
        "risk_factors": {},
        "risk_score": None,
        "risk_band": None,
        "exposure": None,
        "checklist": {},
    }


def _regrant(
    session: Session,
    h: Handover,
    clients: Sequence[str],
    *,
    replanned: Sequence[str],
    actor: str,
    now: dt.datetime,
) -> None:
    """Approved items that changed receiver or joined: the old receiver's windows end now, the new receiver gets
    the windows approval gives (shadow until the effective time, owner or interim from it), and the leaver's own
    grants (one the CRM just gave them) are cut at the effective time."""
    if not clients:
        return
    access.end_handover_grants_for_clients(session, handover_id=h.id, clients=list(replanned), now=now)
    i = HandoverItem
    receiver = func.coalesce(i.successor_id, i.interim_owner_id)
    at = AccessGrant.valid_from.type
    mine = (i.handover_id == h.id, i.status == "approved", i.client_id.in_(list(clients)))

    def window(level: str, start: Any, end: Any, reason: str, *where: Any) -> AnySelect:
        return select(
            receiver, i.client_id, literal(level), literal(start, at), literal(end, at), literal(reason), i.handover_id
        ).where(*mine, *where)

    windows = [
        window("owner", h.effective_at, None, "handover", i.successor_id.is_not(None)),
        window("interim", h.effective_at, None, "handover", i.successor_id.is_(None)),
    ]
    if now < h.effective_at:
        windows.insert(0, window("shadow", now, h.effective_at, "handover transition"))
    for rows in windows:
        access.insert_grants(session, rows, actor=actor, now=now)
    access.cut_leavers(
        session,
        select(
            Handover.id.label("handover_id"),
            Handover.leaver_id.label("employee_id"),
            Handover.effective_at.label("effective_at"),
        ).where(Handover.id == h.id),
    )


# ---- the CRM gives clients to leavers (bound in app.main as intake's LateOwners) -----------------------------


LEAVE_DELEGATION = "leave delegation"


def delegate_grants(session: Session, h: Handover, *which: ColumnElement[bool], actor: str, now: dt.datetime) -> int:
    """A leave's delegate gets an interim grant for the leave's window [effective_at, return_at), keyed by the
    leave (rescheduling, cancelling and completing it move or end the grant), on each of the person's clients that
    `which` selects (every one without it). Returns how many clients the person owns among them."""
    at = AccessGrant.valid_from.type
    owned = (Client.owner_id == h.leaver_id, *which)
    rows = select(
        literal(h.delegate_id),
        Client.external_id,
        literal("interim"),
        literal(h.effective_at, at),
        literal(h.return_at, at),
        literal(LEAVE_DELEGATION),
        literal(h.id),
    ).where(*owned)
    access.insert_grants(session, rows, actor=actor, now=now)
    return int(session.scalar(select(func.count()).select_from(Client).where(*owned)) or 0)


def cover_receivers_on_leave(session: Session, handover_ids: Sequence[int], *, actor: str, now: dt.datetime) -> None:
    """Clients these executions gave to someone on a scheduled leave: the leave's delegate holds them for the leave's
    window, like the person's other clients (else nobody could act for them until the return)."""
    i = HandoverItem
    arrived = (i.handover_id.in_(list(handover_ids)), i.status.in_(("transferred", "confirmed")))
    leaves = session.scalars(
        select(Handover).where(
            Handover.reason == "leave",
            Handover.status == "scheduled",
            Handover.delegate_id.is_not(None),
            Handover.leaver_id.in_(select(i.transferred_to_id).where(*arrived)),
        )
    ).all()
    for lv in leaves:
        got = select(i.client_id).where(*arrived, i.transferred_to_id == lv.leaver_id)
        delegate_grants(session, lv, Client.external_id.in_(got), actor=actor, now=now)


def adopt_late_clients(
    session: Session,
    changes: Sequence[tuple[str, str | None, str]],
    *,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> None:
    """Owner changes the CRM pushed: a client given to a leaver joins their open handover (planned at once when
    it is planned or approved); one given to a leaver whose handover was executed goes to the interim owner. A
    departed person the CRM puts on one of these clients' teams leaves it again (`seats.drop_departed`)."""
    seats.drop_departed(session, [c for c, _, _ in changes], actor=actor, now=now)
    owners = sorted({new for _, old, new in changes if new != old})
    if not owners:
        return
    latest: dict[str, Handover] = {}
    for h in session.scalars(
        select(Handover)
        .where(Handover.leaver_id.in_(owners), Handover.status.in_((*OPEN_STATUSES, "completed")))
        .order_by(Handover.id)
        .with_for_update()  # an approval or execution of the same handover waits, or is waited for
    ):
        latest[h.leaver_id] = h
    if not latest:
        return
    session.flush()
    # A person on leave stays the owner; the leave's delegate must hold what they are given meanwhile (issue 15).
    for h in latest.values():
        if h.reason == "leave" and h.status == "scheduled" and h.delegate_id is not None:
            given = sorted(c for c, old, new in changes if new == h.leaver_id and new != old)
            delegate_grants(session, h, Client.external_id.in_(given), actor=actor, now=now)
    # Not approved yet: the interim grants laid ahead of the effective time cover the new client too (from that
    # second, like the others); once taken over, a new client goes to the interim owner at once, as after execution.
    for h in latest.values():
        if h.status not in continuity.TAKEOVER_STATUSES or h.reason in SELF_KEEPING:
            continue
        if h.interim_at is None:
            given = sorted(c for c, old, new in changes if new == h.leaver_id and new != old)
            continuity.lay_interim_for(session, h, given, actor=actor, now=now, settings=settings)
        elif not directory.can_act(session.get(Employee, h.leaver_id), now):
            continuity.take_over(session, h, actor=actor, now=now, settings=settings)
    live = [h for h in latest.values() if h.status in ("planned", "approved") and h.interim_at is None]
    if live:
        recheck(session, live, stage="intake", actor=actor, now=now, settings=settings, only_late=True)
    # A role change or a leave keeps the person: what they get afterwards is theirs (their new role, their return).
    done = [
        h
        for h in latest.values()
        if h.status in ("executed", "completed")
        and h.reason not in SELF_KEEPING
        and not directory.can_act(session.get(Employee, h.leaver_id), now)
    ]
    if done:
        moved = {c: new for c, old, new in changes if new != old}
        _after_execution(session, done, moved, actor=actor, now=now, settings=settings)


def _after_execution(
    session: Session,
    hs: Sequence[Handover],
    moved: dict[str, str],
    *,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> None:
    """Clients given to leavers already gone: straight to the interim owner (at now), with an item on the
    executed handover, an audit entry and a `handover.attention` event; with nobody to act, they stay and the
    event says so."""
    i = HandoverItem
    events: notify.Events = []
    changes: list[audit.Change] = []
    owner_changes: list[tuple[str, str | None, str]] = []
    for h in hs:
        clients = sorted(c for c, new in moved.items() if new == h.leaver_id)
        if not clients:
            continue
        interim = interim_rule.interim_owner(session, h.leaver_id, at=now, settings=settings)
        reason = f"given to {h.leaver_id} after the handover was executed"
        if interim is not None:
            directory.move_owners(
                session,
                select(
                    Client.external_id.label("client_id"),
                    Client.owner_id.label("from_owner"),
                    literal(interim).label("to_owner"),
                ).where(Client.external_id.in_(clients), Client.owner_id == h.leaver_id),
                now=now,
                remember_former=True,
            )
            owner_changes.extend((c, h.leaver_id, interim) for c in clients)
            existing = set(session.scalars(select(i.client_id).where(i.handover_id == h.id, i.client_id.in_(clients))))
            values = {
                "successor_id": None,
                "interim_owner_id": interim,
                "status": "transferred",
                "needs_attention": True,
                "attention_reason": _clip(reason),
                "transferred_to_id": interim,
                "transferred_at": now,
                "previous_owner_id": h.leaver_id,
                "updated_at": now,
            }
            if existing:
                session.execute(
                    update(i)
                    .where(and_(i.handover_id == h.id, i.client_id.in_(sorted(existing))))
                    .values(**values, version=i.version + 1)
                    .execution_options(synchronize_session=False)
                )
            rows = [
                {
                    "handover_id": h.id,
                    "client_id": c,
                    **values,
                    "reasons": {"late": {"stage": "after_execution"}},
                    "risk_factors": {},
                    "manual": False,
                    "forced": False,
                    "checklist": {},
                    "version": 1,
                }
                for c in clients
                if c not in existing
            ]
            bulk.insert_rows(session, cast(Table, HandoverItem.__table__), rows)
        else:
            reason += "; no interim owner can act, the client stays with the leaver"
        notify.emit(
            session,
            "handover.attention",
            event_models.HandoverAttentionEvent(
                handover_id=h.id,
                leaver=h.leaver_id,
                reason=reason,
                clients=[event_models.AttentionClient(client=c, to=interim) for c in clients],
            ),
            now=now,
            into=events,
        )
        changes.append(
            audit.Change(
                actor,
                "handover.attention",
                "handover",
                str(h.id),
                {"reason": reason, "clients": clients, "to": interim},
            )
        )
    if owner_changes:
        access.sync_owner_grants(session, owner_changes, actor=actor, now=now)
    notify.emit_many(session, events, now=now)
    audit.record_many(session, changes, at=now)
