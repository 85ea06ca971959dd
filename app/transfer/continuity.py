"""Continuity of ownership (issue 15): no client is ever left with an owner nobody can act for.

The ownership invariant. At every instant `at`, every client that is not churned has an owner who

- can act at `at`: `active`, or `leaving` before their exit time (`directory.can_act`), and whose exit time, if
  any, has not come (the access decision denies from that second on), and
- is allowed `view` and `edit` on that client by the access decision at `at`: a grant of level owner or interim
  holds at `at`, and the owner's clearance covers the client's sensitivity.

A person on leave (an access suspension holds at `at`; `app.transfer.leave`) stays the owner and stays `active`, but
the access decision answers `employee_away` for them: their clients count as held when someone else who can act at
`at` (not departed, exit not come, not away, clearance enough) holds an owner or interim grant on the client at
`at`, as the leave's delegate does for [effective_at, return_at). Without such a cover the client breaks the
invariant (`owner_away`): nobody can act for it until the person is back.

`violations` computes the breaches from a `Snapshot` (pure; the specification), `violations_in` finds the same ones
in the database with one statement. They are kept equal by a property test (tests/transfer/test_continuity.py).

Rule 4, the interim owner at the effective time. A handover that is not approved lays interim grants ahead, from
its effective time, for the leaver's clients and their interim owner (`app.transfer.interim`): the access decision
follows the windows to the second whether or not any job runs. When the time has come and the handover is still
not approved, the worker (`take_over_due`) moves the clients to the interim owner, marks the leaver departed and
tells the CRM (`client.reassigned`, `interim: true`). A later approval moves them on to the planned successors; an
exit moved to a time that has not come reverses the takeover (`give_back`) and the rule runs again at the new time.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, null, or_, select
from sqlalchemy.orm import Session, aliased

from app.access import ownership as grants
from app.access import service as access
from app.access.models import AccessGrant, AccessSuspension
from app.audit import service as audit
from app.core.config import Settings, get_settings
from app.core.db import AnySelect
from app.directory import service as directory
from app.directory.models import Client, Employee
from app.notify import events as event_models
from app.notify import service as notify
from app.transfer import interim as interim_rule
from app.transfer import records
from app.transfer.errors import TakeoverNotReversible
from app.transfer.models import Handover

# The reasons a client breaks the invariant, in the order they are checked (the first one that applies is given).
OWNER_UNKNOWN = "owner_unknown"
OWNER_DEPARTED = "owner_departed"
OWNER_EXIT_PASSED = "owner_exit_passed"
OWNER_AWAY = "owner_away"
OWNER_NO_ACCESS = "owner_no_access"
OWNER_INSUFFICIENT_CLEARANCE = "owner_insufficient_clearance"
VIOLATION_REASONS = (
    OWNER_UNKNOWN,
    OWNER_DEPARTED,
    OWNER_EXIT_PASSED,
    OWNER_AWAY,
    OWNER_NO_ACCESS,
    OWNER_INSUFFICIENT_CLEARANCE,
)
# Nobody can act for the owner: the client needs another owner (rule 4).
OWNER_GONE = frozenset({OWNER_UNKNOWN, OWNER_DEPARTED, OWNER_EXIT_PASSED})
EDIT_LEVELS = ("owner", "interim")
VIEW_LEVELS = ("owner", "interim", "shadow", "read")

# The reason that marks the interim grants a handover lays ahead (and ends when it no longer needs them).
INTERIM_REASON = "interim owner: not approved by the effective time"
TAKEOVER_STATUSES = ("draft", "planned")


# ---- the invariant, pure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmployeeRow:
    status: str
    exit_at: dt.datetime | None
    clearance: int


@dataclass(frozen=True)
class ClientRow:
    owner: str
    status: str
    sensitivity: int


@dataclass(frozen=True)
class GrantRow:
    employee: str
    client: str
    level: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None = None
    revoked_at: dt.datetime | None = None

    def holds(self, at: dt.datetime) -> bool:
        return (
            self.valid_from <= at
            and (self.valid_until is None or self.valid_until > at)
            and (self.revoked_at is None or self.revoked_at > at)
        )


@dataclass(frozen=True)
class SuspensionRow:
    employee: str
    valid_from: dt.datetime
    valid_until: dt.datetime
    revoked_at: dt.datetime | None = None

    def holds(self, at: dt.datetime) -> bool:
        return self.valid_from <= at < self.valid_until and (self.revoked_at is None or self.revoked_at > at)


@dataclass(frozen=True)
class Snapshot:
    employees: Mapping[str, EmployeeRow]
    clients: Mapping[str, ClientRow]
    grants: Sequence[GrantRow]
    suspensions: Sequence[SuspensionRow] = ()


@dataclass(frozen=True, order=True)
class Violation:
    client: str
    owner: str
    reason: str


def violations(snap: Snapshot, at: dt.datetime) -> list[Violation]:
    """Every client of the snapshot that breaks the invariant at `at`, by client id. The access part is the access
    decision's rules in their order (`app.access.service._rule`) for `edit`, which allows whenever `edit` does."""
    levels: dict[tuple[str, str], set[str]] = defaultdict(set)
    editors: dict[str, set[str]] = defaultdict(set)  # client -> who holds an edit-level grant on it at `at`
    for g in snap.grants:
        if g.holds(at):
            levels[(g.employee, g.client)].add(g.level)
            if g.level in EDIT_LEVELS:
                editors[g.client].add(g.employee)
    away = {s.employee for s in snap.suspensions if s.holds(at)}

    def covers(who: str, c: ClientRow) -> bool:
        e = snap.employees.get(who)
        return (
            e is not None
            and who not in away
            and e.status != "departed"
            and (e.exit_at is None or e.exit_at > at)
            and e.clearance >= c.sensitivity
        )

    out = []
    for client_id, c in sorted(snap.clients.items()):
        if c.status == "churned":
            continue
        if c.owner in away and c.owner in snap.employees:
            covered = any(covers(who, c) for who in editors.get(client_id, ()) if who != c.owner)
            reason = _reason(snap.employees[c.owner], c, set(), at, away=True, covered=covered)
        else:
            reason = _reason(snap.employees.get(c.owner), c, levels.get((c.owner, client_id), set()), at)
        if reason is not None:
            out.append(Violation(client_id, c.owner, reason))
    return out


def _reason(
    e: EmployeeRow | None, c: ClientRow, held: set[str], at: dt.datetime, *, away: bool = False, covered: bool = False
) -> str | None:
    if e is None:
        return OWNER_UNKNOWN
    if e.status == "departed":
        return OWNER_DEPARTED
    if e.exit_at is not None and e.exit_at <= at:
        return OWNER_EXIT_PASSED
    if away:
        return None if covered else OWNER_AWAY
    if not held:
        return OWNER_NO_ACCESS
    if e.clearance < c.sensitivity:
        return OWNER_INSUFFICIENT_CLEARANCE
    if not held & set(EDIT_LEVELS):
        return OWNER_NO_ACCESS
    return None


def snapshot(session: Session) -> Snapshot:
    """The whole directory and every grant (tests and small tools; the worker uses `violations_in`)."""
    e, c, g, s = Employee, Client, AccessGrant, AccessSuspension
    return Snapshot(
        employees={
            r[0]: EmployeeRow(r[1], r[2], r[3])
            for r in session.execute(select(e.external_id, e.status, e.exit_at, e.clearance))
        },
        clients={
            r[0]: ClientRow(r[1], r[2], r[3])
            for r in session.execute(select(c.external_id, c.owner_id, c.status, c.sensitivity))
        },
        grants=[
            GrantRow(*r)
            for r in session.execute(
                select(g.employee_id, g.client_id, g.level, g.valid_from, g.valid_until, g.revoked_at)
            )
        ],
        suspensions=[
            SuspensionRow(*r) for r in session.execute(select(s.employee_id, s.valid_from, s.valid_until, s.revoked_at))
        ],
    )


# ---- the invariant, in the database ----------------------------------------------------------------------


def _away(employee: Any, at: dt.datetime) -> ColumnElement[bool]:
    s = AccessSuspension
    return exists().where(
        s.employee_id == employee,
        s.valid_from <= at,
        s.valid_until > at,
        or_(s.revoked_at.is_(None), s.revoked_at > at),
    )


def _reason_column(at: dt.datetime) -> list[tuple[ColumnElement[bool], Any]]:
    g = AccessGrant
    mine = and_(g.employee_id == Client.owner_id, g.client_id == Client.external_id, grants.holding(at))
    # Someone else who can act holds an edit-level grant on the client: the cover of an owner away on leave.
    other = aliased(Employee)
    cover = exists().where(
        g.client_id == Client.external_id,
        g.employee_id != Client.owner_id,
        g.level.in_(EDIT_LEVELS),
        grants.holding(at),
        other.external_id == g.employee_id,
        other.status != "departed",
        or_(other.exit_at.is_(None), other.exit_at > at),
        other.clearance >= Client.sensitivity,
        ~_away(other.external_id, at),
    )
    away = _away(Employee.external_id, at)
    return [
        (Employee.external_id.is_(None), OWNER_UNKNOWN),
        (Employee.status == "departed", OWNER_DEPARTED),
        (and_(Employee.exit_at.is_not(None), Employee.exit_at <= at), OWNER_EXIT_PASSED),
        (and_(away, ~cover), OWNER_AWAY),
        (away, null()),  # away and covered: held
        (~exists().where(mine), OWNER_NO_ACCESS),
        (Employee.clearance < Client.sensitivity, OWNER_INSUFFICIENT_CLEARANCE),
        (~exists().where(mine, g.level.in_(EDIT_LEVELS)), OWNER_NO_ACCESS),
    ]


def violations_statement(at: dt.datetime, *, owners: Sequence[str] | None = None) -> AnySelect:
    """(client, owner, reason) of every breach at `at`: one statement, the rules of `violations` set-based."""
    reason = case(*_reason_column(at), else_=literal(None)).label("reason")
    inner = (
        select(Client.external_id.label("client"), Client.owner_id.label("owner"), reason)
        .outerjoin(Employee, Employee.external_id == Client.owner_id)
        .where(Client.status != "churned")
    )
    if owners is not None:
        inner = inner.where(Client.owner_id.in_(list(owners)))
    sub = inner.subquery()
    return select(sub.c.client, sub.c.owner, sub.c.reason).where(sub.c.reason.is_not(None)).order_by(sub.c.client)


def violations_in(session: Session, at: dt.datetime) -> list[Violation]:
    """`violations` of the database at `at`, in one statement (no per-client loop)."""
    return [Violation(c, o, r) for c, o, r in session.execute(violations_statement(at))]


def count_in(session: Session, at: dt.datetime) -> int:
    """How many clients break the invariant at `at` (the `handover_unowned_clients` gauge)."""
    from_ = violations_statement(at).order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(from_)) or 0)


# ---- rule 4: the interim owner at the effective time -----------------------------------------------------


def _interim_for(session: Session, leaver: str, *, at: dt.datetime, settings: Settings | None) -> str | None:
    if settings is None:
        return directory.first_acting_manager(session, leaver, at)
    return interim_rule.interim_owner(session, leaver, at=at, settings=settings)


def _clients_of(owner: str) -> AnySelect:
    """The clients `owner` holds that the invariant covers (not churned)."""
    return select(Client.external_id).where(Client.owner_id == owner, Client.status != "churned")


def _moves_of(owner: str, to: str) -> AnySelect:
    return select(
        Client.external_id.label("client_id"), literal(owner).label("from_owner"), literal(to).label("to_owner")
    ).where(Client.owner_id == owner, Client.status != "churned")


def held_for(h: Handover, who: str) -> tuple[ColumnElement[bool], ...]:
    """The clients `who` holds for the leaver since the takeover: theirs, formerly the leaver's, and laid an interim
    grant on by this handover (a client an earlier handover of the leaver gave `who` is theirs to keep)."""
    return (
        Client.owner_id == who,
        Client.former_owner_id == h.leaver_id,
        Client.external_id.in_(grants.laid_on(h.id, INTERIM_REASON)),
    )


def lay_interim(session: Session, h: Handover, *, actor: str, now: dt.datetime, settings: Settings | None) -> None:
    """The interim grants ahead of a handover that is not approved (opened or rescheduled): from its effective
    time, for the interim owner at that time, on every client the leaver holds. Grants laid before (another time,
    another interim owner) stop now. Once the clients were taken over (`interim_at`) they stay with the interim
    owner; only the leaver's own cut follows the exit, never past the takeover (the interim owner alone holds the
    clients from then on)."""
    if h.status not in TAKEOVER_STATUSES:
        return
    if h.interim_at is not None:
        access.restore_leaver(session, h.id)
        access.cut_leaver(session, h.id, h.leaver_id, min(h.effective_at, h.interim_at))
        return
    # The leaver's own grants end at the effective time, cut by this handover (a cancellation gives them back), as
    # the approval would cut them: from that second the interim owner alone holds owner-level access.
    access.restore_leaver(session, h.id)
    access.cut_leaver(session, h.id, h.leaver_id, h.effective_at)
    grants.end_grants(session, [h.id], reason=INTERIM_REASON, now=now, actor=actor)
    who = _interim_for(session, h.leaver_id, at=h.effective_at, settings=settings)
    _grant_interim(session, h, who, _clients_of(h.leaver_id), actor=actor, now=now, settings=settings)


def _grant_interim(
    session: Session,
    h: Handover,
    who: str | None,
    clients: AnySelect,
    *,
    actor: str,
    now: dt.datetime,
    settings: Settings | None,
) -> None:
    """The interim owner's grants on `clients` from the effective time; taken over at once if that time has come."""
    if who is not None:
        grants.add_grants(
            session,
            employee=who,
            clients=clients,
            level="interim",
            valid_from=h.effective_at,
            reason=INTERIM_REASON,
            handover_id=h.id,
            actor=actor,
            now=now,
        )
    if h.effective_at <= now:
        take_over(session, h, actor=actor, now=now, settings=settings)


def lay_interim_for(
    session: Session, h: Handover, given: Sequence[str], *, actor: str, now: dt.datetime, settings: Settings | None
) -> None:
    """`lay_interim` for clients the CRM just gave the leaver (`given`), touching only their rows: the leaver's
    grants on them are cut at the effective time and the interim owner gets theirs from it, so a batch upsert costs
    O(new clients), not a re-lay of the whole handover. When the interim owner is no longer the one the grants laid
    before name (the chain changed meanwhile), everything is laid again for the new one, as `lay_interim` does."""
    if h.status not in TAKEOVER_STATUSES or h.interim_at is not None or not given:
        return
    who = _interim_for(session, h.leaver_id, at=h.effective_at, settings=settings)
    g = AccessGrant
    laid = session.scalar(
        select(g.employee_id)
        .where(
            g.handover_id == h.id,
            g.reason == INTERIM_REASON,
            g.revoked_at.is_(None),
            or_(g.valid_until.is_(None), g.valid_until > now),
        )
        .limit(1)
    )
    if laid is not None and laid != who:
        lay_interim(session, h, actor=actor, now=now, settings=settings)
        return
    new = _clients_of(h.leaver_id).where(Client.external_id.in_(list(given)))
    at = g.valid_from.type
    access.cut_clients(
        session,
        select(
            literal(h.id).label("handover_id"),
            literal(h.leaver_id).label("employee_id"),
            literal(h.effective_at, at).label("effective_at"),
            Client.external_id.label("client_id"),
        ).where(Client.external_id.in_(new)),
    )
    _grant_interim(session, h, who, new, actor=actor, now=now, settings=settings)


def take_over(session: Session, h: Handover, *, actor: str, now: dt.datetime, settings: Settings | None) -> int:
    """The effective time has come and the handover is not approved: every client the leaver still holds moves to
    the interim owner (who can act now), who holds an interim grant on it; the leaver is departed. Audited
    (`handover.interim_owner`) and told to the CRM (`client.reassigned` with `interim: true`). Returns the number
    of clients moved. Without anyone who can act, nothing moves: the sweeper raises the alert."""
    who = _interim_for(session, h.leaver_id, at=now, settings=settings)
    moved: list[str] = []
    access.cut_leaver(session, h.id, h.leaver_id, h.effective_at)  # grants the leaver got since the opening
    if who is not None:
        grants.end_grants(session, [h.id], reason=INTERIM_REASON, now=now, actor=actor, keep_employee=who)
        grants.add_grants(
            session,
            employee=who,
            clients=_clients_of(h.leaver_id),
            level="interim",
            valid_from=min(now, h.effective_at),
            reason=INTERIM_REASON,
            handover_id=h.id,
            actor=actor,
            now=now,
        )
        moved = list(session.scalars(_clients_of(h.leaver_id).order_by(Client.external_id)))
        # The leaver's records go by the handover's rules with every client going to `who` (issue 16).
        records.on_taken_over(
            session,
            h,
            who=who,
            clients=_clients_of(h.leaver_id).with_only_columns(Client.external_id.label("client_id")),
            actor=actor,
            now=now,
            settings=settings or get_settings(),
        )
        directory.move_owners(session, _moves_of(h.leaver_id, who), now=now, remember_former=True)
    directory.mark_departed(session, [h.leaver_id], now=now)
    h.interim_owner_id, h.interim_at = who, now
    h.version += 1
    h.updated_at = now
    audit.record_many(
        session,
        [
            audit.Change(
                actor,
                "handover.interim_owner",
                "handover",
                str(h.id),
                {"status": h.status, "leaver": h.leaver_id, "interim_owner": who, "clients_moved": len(moved)},
            )
        ],
        at=now,
    )
    if moved:
        notify.emit_batches(
            session,
            "client.reassigned",
            "clients",
            [{"client": c, "from": h.leaver_id, "to": who, "interim": True} for c in moved],
            common={"handover_id": h.id, "effective_at": h.effective_at, "undo": False},
            now=now,
            model=event_models.ClientReassignedEvent,
        )
    return len(moved)


def give_back(session: Session, h: Handover, *, actor: str, now: dt.datetime) -> int:
    """The exit moved to a time that has not come, after the interim owner took the clients over: the takeover is
    reversed, so the invariant holds exactly as for a handover that was never taken over. The leaver is who they
    were at the opening (`leaving`, with the new exit time, set by the caller), their grants this handover cut come
    back (to be cut again at the new time by `lay_interim`), the clients still with the interim owner that came
    from the leaver go back to them (one UPDATE … FROM), the interim grants end now and `interim_at` is cleared, so
    the interim rule runs again at the new time. Audited (`handover.interim_returned`) and told to the CRM
    (`client.reassigned`, `undo: true`, `interim: true`). Returns the number of clients given back.

    A leaver already departed when the handover was opened cannot get them back: 409, nothing changes."""
    if h.interim_at is None or h.status not in TAKEOVER_STATUSES or h.effective_at <= now:
        return 0
    if h.leaver_status_before == "departed":
        raise TakeoverNotReversible(
            f"{h.leaver_id} had already departed when the handover was opened; their clients are with the interim "
            f"owner {h.interim_owner_id} since {h.interim_at.isoformat()} and stay there: the exit time cannot move "
            "later.",
            extra={"handover_id": h.id, "interim_owner": h.interim_owner_id, "allowed": []},
        )
    who, leaver = h.interim_owner_id, h.leaver_id
    clients: list[str] = []
    if who is not None:
        back = held_for(h, who)
        clients = list(session.scalars(select(Client.external_id).where(*back).order_by(Client.external_id)))
        moves = select(
            Client.external_id.label("client_id"), literal(who).label("from_owner"), literal(leaver).label("to_owner")
        ).where(*back)
        directory.move_owners(session, moves, now=now, remember_former=False)
    records.on_undone(session, h, actor=actor, now=now)  # the records the takeover moved come back with the clients
    access.restore_leaver(session, h.id)
    grants.end_grants(session, [h.id], reason=INTERIM_REASON, now=now, actor=actor)
    taken_at = h.interim_at
    h.interim_owner_id, h.interim_at = None, None
    h.version += 1
    h.updated_at = now
    audit.record_many(
        session,
        [
            audit.Change(
                actor,
                "handover.interim_returned",
                "handover",
                str(h.id),
                {
                    "status": h.status,
                    "leaver": leaver,
                    "interim_owner": who,
                    "taken_over_at": taken_at.isoformat(),
                    "effective_at": h.effective_at.isoformat(),
                    "clients_returned": len(clients),
                },
            )
        ],
        at=now,
    )
    if clients:
        notify.emit_batches(
            session,
            "client.reassigned",
            "clients",
            [{"client": c, "from": who, "to": leaver, "interim": True} for c in clients],
            common={"handover_id": h.id, "effective_at": h.effective_at, "undo": True},
            now=now,
            model=event_models.ClientReassignedEvent,
        )
    return len(clients)


def take_over_due(session: Session, *, now: dt.datetime, settings: Settings, limit: int = 50) -> list[int]:
    """The worker's pass: handovers not approved whose effective time has come (SKIP LOCKED with several workers)."""
    due = session.scalars(
        select(Handover)
        .where(Handover.status.in_(TAKEOVER_STATUSES), Handover.effective_at <= now, Handover.interim_at.is_(None))
        .order_by(Handover.effective_at, Handover.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for h in due:
        take_over(session, h, actor="system:worker", now=now, settings=settings)
    return [h.id for h in due]


def on_approved(session: Session, handover_ids: Sequence[int], *, actor: str, now: dt.datetime) -> None:
    """Approved: interim grants laid ahead that have not started are withdrawn (the approval's own windows hold from
    the effective time); ones already holding stay until the execution moves the clients on."""
    grants.end_grants(session, handover_ids, reason=INTERIM_REASON, now=now, actor=actor, started=False)


def on_executed(session: Session, handover_ids: Sequence[int], *, actor: str, now: dt.datetime) -> None:
    """Executed: the clients are with their planned owners, the interim grants end now."""
    grants.end_grants(session, handover_ids, reason=INTERIM_REASON, now=now, actor=actor)


def on_cancelled(session: Session, h: Handover, *, now: dt.datetime) -> None:
    """Cancelled after the clients were taken over (HR called the exit off late): the clients still with the interim
    owner that came from the leaver go back, and the leaver is who they were before. A leaver who had already
    departed when the handover was opened stays departed, and their clients stay with the interim owner."""
    who, leaver = h.interim_owner_id, h.leaver_id
    if h.interim_at is None or h.leaver_status_before == "departed":
        return
    directory.clear_exit(session, leaver, status=h.leaver_status_before or "active", only_if_leaving=False, now=now)
    if who is None:
        return
    back = select(Client.external_id).where(*held_for(h, who))
    clients = list(session.scalars(back.order_by(Client.external_id)))
    moves = select(
        Client.external_id.label("client_id"), literal(who).label("from_owner"), literal(leaver).label("to_owner")
    ).where(*held_for(h, who))
    directory.move_owners(session, moves, now=now, remember_former=False)
    if clients:
        notify.emit_batches(
            session,
            "client.reassigned",
            "clients",
            [{"client": c, "from": who, "to": leaver, "interim": True} for c in clients],
            common={"handover_id": h.id, "effective_at": h.effective_at, "undo": True},
            now=now,
            model=event_models.ClientReassignedEvent,
        )
