"""Directory logic: set-based upserts by external id, and who may see which record."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    delete,
    exists,
    false,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.auth import Principal
from app.core.bulk import among, chunks
from app.core.db import AnySelect
from app.directory import schemas
from app.directory.errors import (
    ClientNotFound,
    ClientRecordsInvalid,
    EmployeeNotFound,
    EmployeeRecordsInvalid,
    ManagementCycle,
    SearchTextInvalid,
)
from app.directory.models import AccountTeamMember, Client, ClientContact, Employee


def _upsert(session: Session, table: Any, rows: list[dict[str, Any]], keep: Sequence[str]) -> None:
    """INSERT … ON CONFLICT DO UPDATE on either database, as one executemany of one cached statement.

    psycopg pipelines the rows and sqlite3 loops in C: both several times faster than one multi-VALUES
    statement per chunk, which SQLAlchemy and psycopg had to compile and convert afresh for every batch.
    """
    if not rows:
        return
    pk = [c.name for c in table.primary_key.columns]
    columns = [k for k in rows[0] if k not in pk and k not in keep]
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(index_elements=pk, set_={c: stmt.excluded[c] for c in columns})
    session.execute(stmt, rows)


def _on_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _insert(session: Session, table: Any) -> Any:
    return (postgresql.insert if _on_pg(session) else sqlite.insert)(table)


def _existing(session: Session, column: Any, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = list(dict.fromkeys(ids))
    for part in chunks(unique, 5000):
        found.update(session.scalars(select(column).where(among(session, column, part))))
    return found


def _claim(
    session: Session, model: type[Employee] | type[Client], values: list[dict[str, Any]], column: Any
) -> tuple[set[str], dict[str, Any]]:
    """Creates the rows nobody has yet and locks the others, so that concurrent writers of the same ids neither both
    create a row nor act on an owner or manager that another one is replacing.

    Returns the ids this transaction created and the committed `column` of every other row. The new rows are inserted
    ON CONFLICT DO NOTHING: a concurrent creator of the same id makes the insert wait, then skip the row. Then every
    row is read FOR NO KEY UPDATE (weak enough for other rows' foreign keys to them to be checked): a concurrent writer
    of one waits for this commit and then reads what it wrote. Whether a row is this transaction's comes from that read,
    `xmin` being the inserting transaction (a plain executemany; RETURNING would make SQLAlchemy send multi-VALUES
    statements, 3-4x slower for a 1,000-row batch); inside a savepoint, where rows carry the subtransaction's id, the
    insert RETURNs them instead. Locks are taken in external-id order (Python's order is PostgreSQL's "C" collation),
    so two batches of the same ids in different orders cannot deadlock. SQLite writers are serial (BEGIN IMMEDIATE).
    """
    key = model.__table__.c.external_id
    ordered = sorted(values, key=lambda v: str(v["external_id"]))
    ids = [v["external_id"] for v in ordered]
    absent = set(ids) - _existing(session, key, ids)
    on_pg = _on_pg(session)
    by_xmin = on_pg and not session.in_nested_transaction()
    created: set[str] = set()
    if absent:
        stmt = _insert(session, model.__table__).on_conflict_do_nothing(index_elements=[key.name])
        new = [v for v in ordered if v["external_id"] in absent]
        if on_pg and not by_xmin:
            created = set(session.scalars(stmt.returning(key), new))
        else:
            session.execute(stmt, new)
            created = set() if by_xmin else absent
    # Only a row absent before the insert counts: one this transaction updated earlier has its xmin too.
    mine = literal_column(f"{model.__tablename__}.xmin = pg_current_xact_id()::xid") if by_xmin and absent else false()
    order = key.collate("C") if on_pg else key
    stored: dict[str, Any] = {}
    for part in chunks(ids, 5000):
        stmt = select(key, column, mine).where(among(session, key, part)).order_by(order)
        for external_id, value, ours in session.execute(stmt.with_for_update(key_share=True)):
            if ours and external_id in absent:
                created.add(external_id)
            elif external_id not in created:
                stored[external_id] = value
    return created, stored


# ---- writes the workflow asks for (the directory's rows are written here only) ----------------------


def set_exit(session: Session, employee: str, exit_at: dt.datetime, *, now: dt.datetime, leaving: bool) -> None:
    """The employee's exit time (and, with `leaving`, the status that says an exit is under way)."""
    values: dict[str, Any] = {"exit_at": exit_at, "updated_at": now}
    if leaving:
        values["status"] = "leaving"
    session.execute(update(Employee).where(Employee.external_id == employee).values(**values))


def clear_exit(session: Session, employee: str, *, status: str, only_if_leaving: bool, now: dt.datetime) -> None:
    """The exit is off: back to `status` with no exit time (with `only_if_leaving`, only while still leaving)."""
    where = [Employee.external_id == employee]
    if only_if_leaving:
        where.append(Employee.status == "leaving")
    session.execute(update(Employee).where(*where).values(status=status, exit_at=None, updated_at=now))


def mark_departed(session: Session, employees: Sequence[str], *, now: dt.datetime) -> None:
    """These employees have left (one statement for a batch of exits)."""
    session.execute(
        update(Employee)
        .where(Employee.external_id.in_(list(employees)))
        .values(status="departed", updated_at=now)
        .execution_options(synchronize_session=False)
    )


def move_owners(session: Session, moves: AnySelect, *, now: dt.datetime, remember_former: bool) -> None:
    """Owner changes from a statement of (client_id, from_owner, to_owner) rows, in one UPDATE … FROM: a client
    moves only while `from_owner` still owns it (anything the CRM moved meanwhile stays put). With
    `remember_former`, the client keeps who owned it before (shown as `former_owner`), else that is cleared."""
    m = moves.subquery()
    c = Client
    session.execute(
        update(c)
        .where(c.external_id == m.c.client_id, c.owner_id == m.c.from_owner)
        .values(owner_id=m.c.to_owner, former_owner_id=c.owner_id if remember_former else None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def remove_team_seats(session: Session, seats: AnySelect) -> int:
    """Account-team seats from a statement of (client_id, employee_id) rows leave their teams, in one DELETE;
    returns the number removed. The caller keeps what it needs to give them back (`restore_team_seats`)."""
    s = seats.subquery()
    m = AccountTeamMember
    result = session.execute(
        delete(m)
        .where(
            exists().where(s.c.client_id == m.client_id, s.c.employee_id == m.employee_id),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def restore_team_seats(session: Session, seats: AnySelect) -> None:
    """Seats from a statement of (client_id, employee_id, role) rows come back, in one INSERT … SELECT: a seat
    the CRM gave back meanwhile, a client gone, or a client now owned by that employee (an owner sits on no team
    of their own client) is left as it is."""
    s = seats.subquery()
    m = AccountTeamMember
    rows = select(s.c.client_id, s.c.employee_id, s.c.role).where(
        ~exists().where(m.client_id == s.c.client_id, m.employee_id == s.c.employee_id),
        exists().where(Client.external_id == s.c.client_id, Client.owner_id != s.c.employee_id),
    )
    session.execute(insert(m).from_select(["client_id", "employee_id", "role"], rows))


def can_act(e: Employee | None, at: dt.datetime) -> bool:
    """Someone who can hold a client at `at`: active, or leaving before their exit time."""
    if e is None:
        return False
    if e.status == "active":
        return True
    return e.status == "leaving" and (e.exit_at is None or e.exit_at > at)


def first_acting_manager(session: Session, employee: str, at: dt.datetime, *, max_depth: int = 64) -> str | None:
    """Walks up the manager chain from `employee` past anyone who cannot act at `at` (a cycle stops the walk)."""
    seen = {employee}
    current = session.get(Employee, employee)
    for _ in range(max_depth):
        if current is None or current.manager_id is None or current.manager_id in seen:
            return None
        seen.add(current.manager_id)
        current = session.get(Employee, current.manager_id)
        if can_act(current, at):
            return current.external_id if current is not None else None
    return None


# ---- visibility -------------------------------------------------------------------------------


def subtree(root: str | Sequence[str], *, name: str = "subtree") -> Any:
    """The employee (or employees) and everyone below them (UNION, so a manager cycle still terminates); `name`
    names the CTE, so that one statement can hold two trees."""
    roots = [root] if isinstance(root, str) else list(root)
    base = select(Employee.external_id.label("id")).where(Employee.external_id.in_(roots))
    tree = base.cte(name, recursive=True)
    tree = tree.union(select(Employee.external_id).where(Employee.manager_id == tree.c.id))
    return select(tree.c.id)


def employee_visibility(principal: Principal) -> ColumnElement[bool]:
    if principal.unrestricted:
        return true()
    if principal.employee is None:
        return false()
    if principal.role == "manager":
        return Employee.external_id.in_(subtree(principal.employee))
    own = select(Employee.manager_id).where(Employee.external_id == principal.employee).scalar_subquery()
    return or_(Employee.external_id == principal.employee, Employee.external_id == own)


def client_visibility(principal: Principal) -> ColumnElement[bool]:
    if principal.unrestricted:
        return true()
    if principal.employee is None:
        return false()
    if principal.role == "manager":
        tree = subtree(principal.employee)
        on_team = exists().where(
            AccountTeamMember.client_id == Client.external_id,
            AccountTeamMember.employee_id.in_(tree),
        )
        return or_(Client.owner_id.in_(tree), on_team)
    on_team = exists().where(
        AccountTeamMember.client_id == Client.external_id,
        AccountTeamMember.employee_id == principal.employee,
    )
    return or_(Client.owner_id == principal.employee, on_team)


# ---- employees --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """What messages say about an employee: who, how to reach them, in which languages."""

    name: str
    email: str | None
    title: str | None
    manager_id: str | None
    languages: list[str]


def people(session: Session, ids: Iterable[str]) -> dict[str, Person]:
    """These employees (the ones that exist), by external id, in one query per 5,000."""
    e = Employee
    out: dict[str, Person] = {}
    for part in chunks(sorted(set(ids)), 5000):
        rows = session.execute(
            select(e.external_id, e.name, e.email, e.title, e.manager_id, e.languages).where(
                among(session, e.external_id, part)
            )
        )
        out.update({r[0]: Person(r[1], r[2], r[3], r[4], list(r[5] or [])) for r in rows})
    return out


def employee_out(e: Employee) -> schemas.EmployeeOut:
    return schemas.EmployeeOut(
        external_id=e.external_id,
        name=e.name,
        email=e.email,
        title=e.title,
        seniority=e.seniority,
        manager=e.manager_id,
        skills=list(e.skills or []),
        regions=list(e.regions or []),
        languages=list(e.languages or []),
        clearance=e.clearance,
        capacity=float(e.capacity),
        status=e.status,
        exit_at=e.exit_at,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def _row_loc(loc_prefix: Sequence[str | int], i: int, row_index: bool) -> list[str | int]:
    """Where row i is: a batch names the row's index, a single PUT's body is the row itself."""
    return [*loc_prefix, i] if row_index else list(loc_prefix)


# Where the employee is in their exit: set by the handover workflow (exit announced, cancelled, executed). A row
# that omits both keeps the stored values, so a routine HR update of a leaver's title cannot make them active
# again (and a candidate successor for their own clients' colleagues); a row that gives either sets both.
LIFECYCLE = frozenset({"status", "exit_at"})
# The transaction-level advisory lock that serialises manager changes on PostgreSQL (see `_cycle_errors`).
MANAGER_LOCK_KEY = 0x4D475253  # "MGRS"


def upsert_employees(
    session: Session,
    rows: Sequence[tuple[str, schemas.EmployeeIn]],
    *,
    actor: str,
    now: dt.datetime,
    loc_prefix: Sequence[str | int] = ("body", "items"),
    row_index: bool = True,
) -> tuple[int, int]:
    """All-or-nothing: every row is validated before anything is written."""
    ids = [external_id for external_id, _ in rows]
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, external_id in enumerate(ids):
        if external_id in seen:
            errors.append(
                {
                    "loc": [*_row_loc(loc_prefix, i, row_index), "external_id"],
                    "msg": "duplicate external_id in batch",
                    "type": "duplicate",
                }
            )
        seen.add(external_id)
    managers = {m.manager for _, m in rows if m.manager}
    known = _existing(session, Employee.external_id, list(managers - seen)) | seen
    for i, (external_id, row) in enumerate(rows):
        if row.manager is None:
            continue
        if row.manager == external_id:
            errors.append(
                {
                    "loc": [*_row_loc(loc_prefix, i, row_index), "manager"],
                    "msg": "an employee cannot manage themselves",
                    "type": "self_reference",
                }
            )
        elif row.manager not in known:
            errors.append(
                {
                    "loc": [*_row_loc(loc_prefix, i, row_index), "manager"],
                    "msg": f"no employee {row.manager!r}",
                    "type": "unknown_reference",
                }
            )
    if errors:
        raise EmployeeRecordsInvalid("Some rows are not valid; nothing was written.", errors=errors)

    values = {
        external_id: {
            "external_id": external_id,
            "name": row.name,
            "email": str(row.email).lower(),
            "title": row.title,
            "seniority": row.seniority,
            "manager_id": None,
            "skills": sorted(set(row.skills)),
            "regions": sorted(set(row.regions)),
            "languages": list(dict.fromkeys(row.languages)),
            "clearance": row.clearance,
            "capacity": row.capacity,
            "status": row.status,
            "exit_at": row.exit_at,
            "created_at": now,
            "updated_at": now,
        }
        for external_id, row in rows
    }
    # New rows are written here, managers still unset (rows may reference each other in any order).
    created, old_managers = _claim(session, Employee, list(values.values()), Employee.manager_id)
    proposed = {external_id: row.manager for external_id, row in rows}
    changed = {eid for eid, manager in proposed.items() if manager != old_managers.get(eid)}
    errors = _cycle_errors(session, rows, proposed, changed, loc_prefix=loc_prefix, row_index=row_index)
    if errors:
        raise ManagementCycle("Some rows would make a management cycle; nothing was written.", errors=errors)
    keeps = {eid for eid, row in rows if eid not in created and not (row.model_fields_set & LIFECYCLE)}
    replaced = [values[eid] for eid, _ in rows if eid not in created and eid not in keeps]
    kept = [values[eid] for eid, _ in rows if eid in keeps]
    _upsert(session, Employee.__table__, replaced, keep=("created_at", "manager_id"))
    _upsert(session, Employee.__table__, kept, keep=("created_at", "manager_id", *sorted(LIFECYCLE)))
    _upsert_managers(session, [{"external_id": eid, "manager_id": proposed[eid]} for eid, _ in rows if eid in changed])
    audit.record_many(
        session,
        [
            audit.Change(
                actor,
                "employee.created" if eid in created else "employee.updated",
                "employee",
                eid,
                row.model_dump(mode="json", exclude=set(LIFECYCLE) if eid in keeps else None),
            )
            for eid, row in rows
        ],
        at=now,
    )
    return len(created), len(ids) - len(created)


def _upsert_managers(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        stmt = (
            update(Employee).where(Employee.external_id == bindparam("b_id")).values(manager_id=bindparam("b_manager"))
        )
        session.connection().execute(stmt, [{"b_id": r["external_id"], "b_manager": r["manager_id"]} for r in rows])


def _cycle_errors(
    session: Session,
    rows: Sequence[tuple[str, schemas.EmployeeIn]],
    proposed: dict[str, str | None],
    changed: set[str],
    *,
    loc_prefix: Sequence[str | int],
    row_index: bool,
) -> list[dict[str, Any]]:
    """A manager change that closes a loop (A under B, B under A) would let each approve the other's exit: every
    changed row on such a loop is an error. Set-based: one recursive read of the stored managers above the proposed
    ones, then a walk up from each changed row. A loop of unchanged stored rows (written before this rule) is left.

    On PostgreSQL manager changes are serialised by a transaction-level advisory lock, taken only when a batch gives
    someone a new manager: two concurrent changes (A under B, B under A) cannot each pass against the other's old
    state. Unchanged rows were read under their row locks (`_claim`), so "unchanged" is against the committed value.
    """
    moved = {eid for eid in changed if proposed[eid] is not None}
    if not moved:
        return []
    if _on_pg(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MANAGER_LOCK_KEY})
    stored = _ancestry(session, sorted({m for m in proposed.values() if m is not None and m not in proposed}))

    def up(node: str) -> str | None:
        return proposed[node] if node in proposed else stored.get(node)

    index = {eid: i for i, (eid, _) in enumerate(rows)}
    done: set[str] = set()
    errors: list[tuple[int, dict[str, Any]]] = []
    for start in (eid for eid, _ in rows if eid in moved):
        path: dict[str, int] = {}
        node: str | None = start
        while node is not None and node not in done and node not in path:
            path[node] = len(path)
            node = up(node)
        done.update(path)
        if node is None or node not in path:
            continue
        loop = list(path)[path[node] :]
        for pos, member in enumerate(loop):
            if member in moved:
                chain = loop[pos:] + loop[:pos]
                error = {
                    "loc": [*_row_loc(loc_prefix, index[member], row_index), "manager"],
                    "msg": f"would make a management cycle: {_chain(chain)}",
                    "type": "cycle",
                }
                errors.append((index[member], error))
    return [error for _, error in sorted(errors, key=lambda e: e[0])]


def _chain(loop: list[str]) -> str:
    """`a → b → a`; a long loop shows its first and last steps and its length."""
    if len(loop) <= 6:
        return " → ".join([*loop, loop[0]])
    return " → ".join([*loop[:3], "…", *loop[-2:], loop[0]]) + f" ({len(loop)} employees)"


def _ancestry(session: Session, roots: Sequence[str]) -> dict[str, str | None]:
    """The stored manager of each root and of everyone above them (UNION, so a stored cycle still terminates)."""
    if not roots:
        return {}
    base = select(Employee.external_id, Employee.manager_id).where(among(session, Employee.external_id, roots))
    tree = base.cte("ancestry", recursive=True)
    tree = tree.union(
        select(Employee.external_id, Employee.manager_id).join(tree, Employee.external_id == tree.c.manager_id)
    )
    return {r[0]: r[1] for r in session.execute(select(tree.c.external_id, tree.c.manager_id))}


def get_employee(session: Session, principal: Principal, external_id: str) -> Employee:
    row = session.scalar(select(Employee).where(Employee.external_id == external_id, employee_visibility(principal)))
    if row is None:
        raise EmployeeNotFound(f"No employee {external_id!r}.")
    return row


@dataclass(frozen=True)
class EmployeeFilter:
    status: str | None = None
    manager: str | None = None
    q: str | None = None


def list_employees(
    session: Session, principal: Principal, flt: EmployeeFilter, *, limit: int, offset: int
) -> list[Employee]:
    stmt = select(Employee).where(employee_visibility(principal))
    if flt.status:
        stmt = stmt.where(Employee.status == flt.status)
    if flt.manager:
        stmt = stmt.where(Employee.manager_id == flt.manager)
    if flt.q:
        pattern = f"%{_escape_like(flt.q.lower())}%"
        stmt = stmt.where(
            or_(
                Employee.name.ilike(pattern, escape="\\"),
                Employee.email.ilike(pattern, escape="\\"),
            )
        )
    return list(session.scalars(stmt.order_by(Employee.external_id).limit(limit).offset(offset)))


def _escape_like(text: str) -> str:
    if "\x00" in text:  # PostgreSQL refuses NUL in text: a 422 here, not a 500 there
        raise SearchTextInvalid(
            "q must not contain NUL characters.",
            errors=[{"loc": ["query", "q"], "msg": "must not contain NUL (U+0000)", "type": "value_error"}],
        )
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# ---- clients ----------------------------------------------------------------------------------


class ClientsWritten(NamedTuple):
    created: int
    updated: int
    owner_changes: list[tuple[str, str | None, str]]  # (client, owner before or None if new, owner now)


def upsert_clients(
    session: Session,
    rows: Sequence[tuple[str, schemas.ClientIn]],
    *,
    actor: str,
    now: dt.datetime,
    loc_prefix: Sequence[str | int] = ("body", "items"),
    row_index: bool = True,
) -> ClientsWritten:
    """Creates or replaces clients with their contacts and account teams; the caller keeps grants in step with the
    owner changes it returns (the directory knows no grants)."""
    ids = [external_id for external_id, _ in rows]
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, external_id in enumerate(ids):
        if external_id in seen:
            errors.append(
                {
                    "loc": [*_row_loc(loc_prefix, i, row_index), "external_id"],
                    "msg": "duplicate external_id in batch",
                    "type": "duplicate",
                }
            )
        seen.add(external_id)
    referenced = {r.owner for _, r in rows} | {m.employee for _, r in rows for m in r.account_team}
    known = _existing(session, Employee.external_id, list(referenced))
    for i, (_, row) in enumerate(rows):
        if row.owner not in known:
            errors.append(
                {
                    "loc": [*_row_loc(loc_prefix, i, row_index), "owner"],
                    "msg": f"no employee {row.owner!r}",
                    "type": "unknown_reference",
                }
            )
        for j, member in enumerate(row.account_team):
            if member.employee not in known:
                errors.append(
                    {
                        "loc": [*_row_loc(loc_prefix, i, row_index), "account_team", j, "employee"],
                        "msg": f"no employee {member.employee!r}",
                        "type": "unknown_reference",
                    }
                )
    if errors:
        raise ClientRecordsInvalid("Some rows are not valid; nothing was written.", errors=errors)

    values = [
        {
            "external_id": eid,
            "name": r.name,
            "tier": r.tier,
            "annual_value": r.annual_value,
            "industry": r.industry,
            "region": r.region,
            "language": r.language,
            "sensitivity": r.sensitivity,
            "owner_id": r.owner,
            "relationship_since": r.relationship_since,
            "last_contact_at": r.last_contact_at,
            "satisfaction": r.satisfaction,
            "renewal_at": r.renewal_at,
            "open_issues": r.open_issues,
            "status": r.status,
            "created_at": now,
            "updated_at": now,
        }
        for eid, r in rows
    ]
    created, old_owners = _claim(session, Client, values, Client.owner_id)
    _upsert(session, Client.__table__, [v for v in values if v["external_id"] not in created], keep=("created_at",))
    for part in chunks(ids, 5000):
        session.execute(delete(ClientContact).where(among(session, ClientContact.client_id, part)))
        session.execute(delete(AccountTeamMember).where(among(session, AccountTeamMember.client_id, part)))
    contacts = [
        {
            "client_id": eid,
            "position": pos,
            "name": c.name,
            "email": str(c.email).lower() if c.email else None,
            "phone": c.phone,
            "locale": c.locale,
            "preferred_channel": c.preferred_channel,
            "is_primary": c.primary,
        }
        for eid, r in rows
        for pos, c in enumerate(r.contacts)
    ]
    team = [
        {"client_id": eid, "employee_id": m.employee, "role": m.role}
        for eid, r in rows
        for m in r.account_team
        if m.employee != r.owner
    ]
    # Core executemany, every key in every row: one statement (the ORM's bulk insert would start a new INSERT
    # each time the set of NULL columns changes, i.e. for most contacts).
    if contacts:
        session.execute(insert(cast(Table, ClientContact.__table__)), contacts)
    if team:
        session.execute(insert(cast(Table, AccountTeamMember.__table__)), team)
    audit.record_many(
        session,
        [
            audit.Change(
                actor,
                "client.created" if eid in created else "client.updated",
                "client",
                eid,
                row.model_dump(mode="json"),
            )
            for eid, row in rows
        ],
        at=now,
    )
    # The old owners were read under lock, so the caller's grants follow the owner whatever the interleaving.
    changes = [(eid, old_owners.get(eid), r.owner) for eid, r in rows]
    return ClientsWritten(len(created), len(ids) - len(created), changes)


def clients_out(session: Session, clients: Sequence[Client]) -> list[schemas.ClientOut]:
    """Contacts and teams for a page of clients in two queries, not two per client."""
    ids = [c.external_id for c in clients]
    contacts: dict[str, list[schemas.ContactOut]] = defaultdict(list)
    team: dict[str, list[schemas.TeamMemberOut]] = defaultdict(list)
    if ids:
        for c in session.scalars(
            select(ClientContact)
            .where(ClientContact.client_id.in_(ids))
            .order_by(ClientContact.client_id, ClientContact.position)
        ):
            contacts[c.client_id].append(
                schemas.ContactOut(
                    name=c.name,
                    email=c.email,
                    phone=c.phone,
                    locale=c.locale,
                    preferred_channel=c.preferred_channel,
                    primary=c.is_primary,
                )
            )
        for m in session.scalars(
            select(AccountTeamMember)
            .where(AccountTeamMember.client_id.in_(ids))
            .order_by(AccountTeamMember.client_id, AccountTeamMember.employee_id)
        ):
            team[m.client_id].append(schemas.TeamMemberOut(employee=m.employee_id, role=m.role))
    return [
        schemas.ClientOut(
            external_id=c.external_id,
            name=c.name,
            tier=c.tier,
            annual_value=float(c.annual_value),
            industry=c.industry,
            region=c.region,
            language=c.language,
            sensitivity=c.sensitivity,
            owner=c.owner_id,
            former_owner=c.former_owner_id,
            relationship_since=c.relationship_since,
            last_contact_at=c.last_contact_at,
            satisfaction=float(c.satisfaction) if c.satisfaction is not None else None,
            renewal_at=c.renewal_at,
            open_issues=c.open_issues,
            status=c.status,
            contacts=contacts[c.external_id],
            account_team=team[c.external_id],
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in clients
    ]


def get_client(session: Session, principal: Principal, external_id: str) -> Client:
    row = session.scalar(select(Client).where(Client.external_id == external_id, client_visibility(principal)))
    if row is None:
        raise ClientNotFound(f"No client {external_id!r}.")
    return row


@dataclass(frozen=True)
class ClientFilter:
    status: str | None = None
    owner: str | None = None
    manager: str | None = None
    tier: str | None = None
    q: str | None = None


def list_clients(session: Session, principal: Principal, flt: ClientFilter, *, limit: int, offset: int) -> list[Client]:
    stmt = select(Client).where(client_visibility(principal))
    if flt.status:
        stmt = stmt.where(Client.status == flt.status)
    if flt.owner:
        stmt = stmt.where(Client.owner_id == flt.owner)
    if flt.tier:
        stmt = stmt.where(Client.tier == flt.tier)
    if flt.manager:
        stmt = stmt.where(Client.owner_id.in_(select(Employee.external_id).where(Employee.manager_id == flt.manager)))
    if flt.q:
        stmt = stmt.where(Client.name.ilike(f"%{_escape_like(flt.q.lower())}%", escape="\\"))
    return list(session.scalars(stmt.order_by(Client.external_id).limit(limit).offset(offset)))
