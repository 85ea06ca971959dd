"""The ownership sweeper and its metrics (issue 15, point 8).

Every worker pass checks the ownership invariant (`continuity.violations_in`, one statement) and repairs what it
finds by rule 4:

- an owner nobody can act for (departed, exit passed): the client moves to that owner's interim owner
  (`app.transfer.interim`) with an interim grant from now;
- an owner who can act but holds no grant that lets them edit: they get an owner grant from now;
- an owner whose clearance is below the client's sensitivity, one away on leave whose client nobody covers
  (`owner_away`), or one without an interim owner: not repairable by rule; alerted, and left to people.

Every violation found raises an alert: an `ownership.violation` event (many clients per event) and an
`ownership.violation` audit entry per client; each repair is also an `ownership_repair` row (the
`handover_ownership_repairs_total` counter). One that cannot be repaired is alerted once per worker process while it
lasts (the gauge `handover_unowned_clients` counts it at every scrape).

Clients whose owner is the leaver of a handover whose effective time has come are the workflow's: the execution
(approved) or the interim takeover (not approved) that runs just before the sweeper in the same pass moves them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, insert, literal, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.access import ownership as grants
from app.audit import service as audit
from app.core.clock import Clock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory import service as directory
from app.directory.models import Client
from app.notify import events as event_models
from app.notify import service as notify
from app.transfer import continuity, records
from app.transfer import interim as interim_rule
from app.transfer.models import OPEN_STATUSES, Handover, OwnershipRepair

logger = logging.getLogger("handover.ownership")

ACTOR = "system:ownership"
REPAIR_REASON = "ownership repair"
EVENT = "ownership.violation"


@dataclass
class Sweep:
    found: list[continuity.Violation] = field(default_factory=list)
    repaired: dict[str, str] = field(default_factory=dict)  # client -> the owner it has now
    unrepaired: list[continuity.Violation] = field(default_factory=list)
    pending: int = 0  # the workflow's, this pass


def _workflow_owners(session: Session, owners: Sequence[str], now: dt.datetime) -> set[str]:
    """Owners who are the leaver of an open handover whose effective time has come: the workflow moves those."""
    return set(
        session.scalars(
            select(Handover.leaver_id).where(
                Handover.leaver_id.in_(list(owners)),
                Handover.status.in_(OPEN_STATUSES),
                Handover.status != "executed",
                Handover.effective_at <= now,
                Handover.interim_at.is_(None),
            )
        )
    )


def sweep(
    session: Session,
    *,
    now: dt.datetime,
    settings: Settings,
    alerted: set[continuity.Violation] | None = None,
) -> Sweep:
    """Finds and repairs the violations at `now`; writes in the caller's transaction. `alerted` holds the unrepairable
    violations already alerted (kept by the caller across passes): they are not alerted again."""
    out = Sweep()
    found = continuity.violations_in(session, now)
    if not found:
        if alerted is not None:
            alerted.clear()
        return out
    mine_not = _workflow_owners(session, sorted({v.owner for v in found}), now)
    out.pending = sum(1 for v in found if v.owner in mine_not)
    out.found = [v for v in found if v.owner not in mine_not]
    gone: dict[str, list[continuity.Violation]] = defaultdict(list)
    no_access: dict[str, list[continuity.Violation]] = defaultdict(list)
    for v in out.found:
        if v.reason in continuity.OWNER_GONE:
            gone[v.owner].append(v)
        elif v.reason == continuity.OWNER_NO_ACCESS:
            no_access[v.owner].append(v)
        else:
            out.unrepaired.append(v)
    repairs: list[dict[str, Any]] = []
    for owner, vs in sorted(gone.items()):
        who = interim_rule.interim_owner(session, owner, at=now, settings=settings)
        if who is None:
            out.unrepaired.extend(vs)
            continue
        clients = [v.client for v in vs]
        grants.add_grants(
            session,
            employee=who,
            clients=select(Client.external_id).where(Client.external_id.in_(clients)),
            level="interim",
            valid_from=now,
            reason=REPAIR_REASON,
            handover_id=None,
            actor=ACTOR,
            now=now,
        )
        moves = select(
            Client.external_id.label("client_id"), literal(owner).label("from_owner"), literal(who).label("to_owner")
        ).where(Client.external_id.in_(clients))
        records.on_repaired(session, moves, now=now)  # the client's open records follow it
        directory.move_owners(session, moves, now=now, remember_former=True)
        repairs.extend({"v": v, "to": who} for v in vs)
    for owner, vs in sorted(no_access.items()):
        grants.add_grants(
            session,
            employee=owner,
            clients=select(Client.external_id).where(Client.external_id.in_([v.client for v in vs])),
            level="owner",
            valid_from=now,
            reason=REPAIR_REASON,
            handover_id=None,
            actor=ACTOR,
            now=now,
        )
        repairs.extend({"v": v, "to": owner} for v in vs)
    out.repaired = {r["v"].client: r["to"] for r in repairs}
    if repairs:
        session.execute(
            insert(OwnershipRepair),
            [
                {
                    "client_id": r["v"].client,
                    "from_owner_id": r["v"].owner,
                    "to_owner_id": r["to"],
                    "reason": r["v"].reason,
                    "repaired_at": now,
                }
                for r in repairs
            ],
        )
    fresh = [v for v in out.unrepaired if alerted is None or v not in alerted]
    if alerted is not None:
        alerted.intersection_update(out.unrepaired)
        alerted.update(out.unrepaired)
    _alert(session, [(r["v"], r["to"]) for r in repairs] + [(v, None) for v in fresh], now=now)
    if out.unrepaired:
        logger.error(
            "%d client(s) have an owner nobody can act for and no repair by rule",
            len(out.unrepaired),
            extra={"fields": {"clients": [vars(v) for v in out.unrepaired[:20]]}},
        )
    return out


def _alert(session: Session, found: Sequence[tuple[continuity.Violation, str | None]], *, now: dt.datetime) -> None:
    if not found:
        return
    rows: list[dict[str, Any]] = [
        {"client": v.client, "owner": v.owner, "reason": v.reason, "repaired": to is not None, "new_owner": to}
        for v, to in found
    ]
    audit.record_many(
        session,
        [
            audit.Change(ACTOR, EVENT, "client", v.client, {k: x for k, x in r.items() if k != "client"})
            for (v, _), r in zip(found, rows, strict=True)
        ],
        at=now,
    )
    notify.emit_batches(
        session, EVENT, "clients", rows, common={"at": now}, now=now, model=event_models.OwnershipViolationEvent
    )
    moved = [{"client": r["client"], "from": r["owner"], "to": r["new_owner"], "interim": True} for r in rows]
    moved = [m for m in moved if m["to"] is not None and m["to"] != m["from"]]
    if moved:
        notify.emit_batches(
            session,
            "client.reassigned",
            "clients",
            moved,
            common={"handover_id": None, "effective_at": now, "undo": False},
            now=now,
            model=event_models.ClientReassignedEvent,
        )


# Unrepairable violations already alerted, per database (one worker process).
_alerted: WeakKeyDictionary[Database, set[continuity.Violation]] = WeakKeyDictionary()


def sweep_ownership(db: Database, clock: Clock, stop: threading.Event) -> int:
    """The worker's job: returns the number of violations repaired."""
    with transaction(db) as session:
        result = sweep(session, now=clock.now(), settings=db.settings, alerted=_alerted.setdefault(db, set()))
    return len(result.repaired)


def take_over_interim(db: Database, clock: Clock, stop: threading.Event) -> int:
    """The worker's job for rule 4: handovers not approved by their effective time go to the interim owner."""
    with transaction(db) as session:
        return len(continuity.take_over_due(session, now=clock.now(), settings=db.settings))


class OwnershipCollector(Collector):
    """`handover_unowned_clients` (the invariant's violations now) and `handover_ownership_repairs_total`, read from
    the database at scrape time, so every process answers the same."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            with transaction(self.db, write=False) as session:
                unowned = continuity.count_in(session, self.clock.now())
                repairs = int(session.scalar(select(func.count()).select_from(OwnershipRepair)) or 0)
        except SQLAlchemyError:
            logger.warning("ownership metrics not read: the database did not answer", exc_info=True)
            return
        yield GaugeMetricFamily(
            "handover_unowned_clients",
            "Clients (not churned) whose owner cannot act for them now: the ownership invariant's violations.",
            value=unowned,
        )
        yield CounterMetricFamily(
            "handover_ownership_repairs", "Clients the ownership sweeper repaired.", value=repairs
        )
