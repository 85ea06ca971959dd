"""Scenario 2: a mass exit, end to end through the service layer, against the fastest raw writes of the same rows.

Runs in a child process (`python -m bench.mass_exit ARGS.json OUT.json`) so its peak memory is its own: the
parent holds the generated company, this process holds only what the services load.

Phases (each leaver's step in its own transaction, as the API would run it):
simulate (all leavers at once, nothing written) → create → plan → approve → execute (at the effective time).

Floor, in the same database right after: the rows those phases wrote (handovers, items, grants, the leaver's
grants cut, owner updates, the records' owner updates and record_move rows, employee status, audit entries; outbox
rows when app.notify is there) written by COPY / executemany and set-based UPDATE / INSERT … SELECT in one
transaction, timed, then rolled back.

Lean floor (issue 19 point 2), also rolled back: the least a handover must write, one narrow item row per client
(handover, client, from, to: what undo needs), the clients' owner UPDATE and the open records' owner UPDATE.

On PostgreSQL the service's own writes are measured per table: rows (pg_stat_user_tables), bytes
(pg_total_relation_size before and after) and WAL (pg_walinspect's records of this database's relations between the
LSNs before create and after execute; the cluster-wide LSN difference also counts other sessions on the server).
"""

from __future__ import annotations

import cProfile
import datetime as dt
import io
import json
import os
import pstats
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.engine import Engine

from app.audit.models import AuditEntry
from app.book.models import Record, RecordMove
from app.core.auth import Principal
from app.core.db import Database, make_engine, transaction
from app.directory.models import Client
from app.transfer import planning, service, solver, visibility
from app.transfer.models import Handover, HandoverItem
from bench.common import peak_rss_bytes, reset_peak_rss, settings_for, vm_hwm_bytes
from bench.raw import RawWriter


class SqlProfile:
    """Opt-in (HANDOVER_BENCH_SQL_PROFILE=1): seconds and calls per statement, per phase, to see what a phase spends."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.stats: dict[str, dict[str, list[float]]] = {}
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        spent = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
        key = " ".join(statement.split())[:160]
        entry = self.stats.setdefault(self.phase, {}).setdefault(key, [0.0, 0.0])
        entry[0] += spent
        entry[1] += 1

    def top(self, n: int = 12) -> dict[str, list[tuple[str, float, int]]]:
        return {
            phase: [(k, round(v[0], 3), int(v[1])) for k, v in sorted(rows.items(), key=lambda kv: -kv[1][0])[:n]]
            for phase, rows in self.stats.items()
        }


ADMIN = Principal(sub="bench", role="admin", scopes=frozenset())
HANDOVER_COLS = (
    "id", "leaver_id", "manager_id", "reason", "status", "effective_at", "source", "candidate_pool",
    "leaver_status_before", "version", "created_by", "created_at", "updated_at", "planned_at", "approved_by",
    "approved_at", "executed_at", "completed_by", "completed_at",
)  # fmt: skip
AUDIT_COLS = ("seq", "occurred_at", "actor", "action", "entity_type", "entity_id", "data", "prev_hash", "hash")


def _has_outbox(db: Database) -> bool:
    try:
        import app.notify.service  # noqa: F401
    except Exception:
        return False
    return "outbox_message" in inspect(db.engine).get_table_names()


def _outbox_max(db: Database) -> int | None:
    """The last outbox id before the run (None: no outbox in this schema)."""
    if not _has_outbox(db):
        return None
    from app.notify.models import OutboxMessage

    with transaction(db, write=False) as session:
        return int(session.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0))) or 0)


def _outbox_rows(db: Database, after: int | None) -> tuple[list[str], list[list[Any]]]:
    """Outbox rows the run wrote (all columns but the id), to be copied by the floor."""
    if after is None:
        return [], []
    from app.notify.models import OutboxMessage

    table = OutboxMessage.__table__
    cols = [c.name for c in table.columns if c.name != "id"]
    with transaction(db, write=False) as session:
        rows = session.execute(select(*[table.c[c] for c in cols]).where(table.c.id > after)).all()
    return cols, [list(r) for r in rows]


def _rows_of(session: Any, table_name: str, handover_ids: list[int]) -> tuple[list[str], list[list[Any]]]:
    """Rows of a per-handover table the run wrote (all columns but the id); empty if the table is not there."""
    from app.core.db import Base

    table = Base.metadata.tables.get(table_name)
    if table is None or "handover_id" not in table.c:
        return [], []
    cols = [c.name for c in table.columns if c.name != "id"]
    rows = session.execute(select(*[table.c[c] for c in cols]).where(table.c.handover_id.in_(handover_ids))).all()
    return cols, [list(r) for r in rows]


PG_TABLES = """
SELECT c.relname, pg_total_relation_size(c.oid), pg_indexes_size(c.oid),
       COALESCE(s.n_tup_ins, 0), COALESCE(s.n_tup_upd, 0), COALESCE(s.n_tup_del, 0), COALESCE(s.n_tup_hot_upd, 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = 'public' AND c.relkind = 'r'
"""


def pg_tables(db: Database) -> dict[str, list[int]]:
    """Per table: total bytes, index bytes, rows inserted, updated, deleted, HOT-updated (this database's counters).
    The pool is disposed first: a backend reports its counters when it ends, so the figures are complete once two
    reads agree."""
    db.engine.dispose()
    last: dict[str, list[int]] | None = None
    others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    for _ in range(50):
        seen: dict[str, list[int]] | None = None
        with db.engine.connect() as conn:
            if not conn.exec_driver_sql(others).scalar_one():
                seen = {r[0]: [int(v) for v in r[1:]] for r in conn.exec_driver_sql(PG_TABLES)}
        db.engine.dispose()
        if seen is not None and seen == last:
            return seen
        last = seen
        time.sleep(0.2)
    raise RuntimeError("the table counters did not settle in 10 s")


class WalHold:
    """Keeps the server from recycling the WAL the run writes until it has been read: a temporary physical
    replication slot reserving WAL from now, held by a connection to the `postgres` database (so this database
    shows no other backend); the slot goes when the connection closes, also if this process dies. Without it a
    busy server had removed the segments before the run ended."""

    def __init__(self, db: Database) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        url = make_url(db.settings.database_url).set(database="postgres")
        self.engine = create_engine(url)
        self.conn = self.engine.connect()
        name = f"bench_wal_{os.getpid()}_{secrets.token_hex(3)}"
        self.conn.exec_driver_sql("SELECT pg_create_physical_replication_slot(%(n)s, true, true)", {"n": name})
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def pg_lsn(db: Database) -> str:
    with db.engine.connect() as conn:
        return str(conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar_one())


WAL_BY_RELATION = """
SELECT m[1]::oid, m[2]::oid, count(*), sum(record_length), sum(fpi_length)
FROM (SELECT regexp_match(block_ref, 'rel [0-9]+/([0-9]+)/([0-9]+)') AS m, record_length, fpi_length
      FROM pg_get_wal_records_info(%(a)s::pg_lsn, %(b)s::pg_lsn)) w
WHERE m IS NOT NULL GROUP BY 1, 2
"""
RELATIONS = """
SELECT pg_relation_filenode(c.oid), c.oid, c.relname, c.relkind, c.reltoastrelid, i.indrelid
FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
WHERE pg_relation_filenode(c.oid) IS NOT NULL
"""


def pg_wal_by_table(db: Database, start: str, end: str) -> dict[str, Any]:
    """WAL bytes (and records) per table of this database between two LSNs, split into heap, index and TOAST, from
    pg_walinspect: a record counts for the relation of its first block reference. Other databases' WAL on the
    server is left out by the database OID in the reference."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        conn.commit()
        # Reading the window's WAL (other sessions' too, on a shared server) outlasts the service's statement timeout.
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        here = "SELECT oid FROM pg_database WHERE datname = current_database()"
        db_oid = int(conn.exec_driver_sql(here).scalar_one())
        rels = list(conn.exec_driver_sql(RELATIONS))
        wal = list(conn.exec_driver_sql(WAL_BY_RELATION, {"a": start, "b": end}))
        diff = "SELECT pg_wal_lsn_diff(%(b)s::pg_lsn, %(a)s::pg_lsn)"
        cluster = int(conn.exec_driver_sql(diff, {"a": start, "b": end}).scalar_one())
    by_oid = {oid: (name, kind, toast, parent) for _, oid, name, kind, toast, parent in rels}
    toast_owner = {toast: oid for _, oid, _, kind, toast, _ in rels if kind == "r" and toast}
    node = {filenode: oid for filenode, oid, *_ in rels}

    def owner(oid: int) -> tuple[str, str]:
        name, kind, _, parent = by_oid[oid]
        if kind == "i" and parent is not None:
            table, part = owner(parent)
            return table, "toast" if part == "toast" else "index"
        if kind == "t" and oid in toast_owner:
            return by_oid[toast_owner[oid]][0], "toast"
        return name, "heap"

    out: dict[str, dict[str, list[int]]] = {}
    other = [0, 0]
    for dboid, filenode, records, length, fpi in wal:
        if int(dboid) != db_oid:
            continue
        oid = node.get(int(filenode))
        if oid is None or oid not in by_oid:
            other[0] += int(records)
            other[1] += int(length)
            continue
        table, part = owner(oid)
        cell = out.setdefault(table, {}).setdefault(part, [0, 0, 0])
        cell[0] += int(records)
        cell[1] += int(length)
        cell[2] += int(fpi or 0)
    return {"tables": out, "unmapped": other, "cluster_bytes": cluster}


def run(args: dict[str, Any]) -> dict[str, Any]:
    url = args["database_url"]
    leavers: list[str] = args["leavers"]
    now = dt.datetime.fromisoformat(args["now"])
    effective_at = now + dt.timedelta(days=14)
    settings = settings_for(url)
    db = Database(settings)
    out: dict[str, Any] = {"phases": {}, "leavers": len(leavers)}
    profile = SqlProfile() if os.environ.get("HANDOVER_BENCH_SQL_PROFILE") else None

    # The exact solve's own time per phase, to tell deciding (the solver) from writing (everything else).
    solve_seconds: dict[str, float] = out.setdefault("solve_seconds", {})
    current = ["setup"]
    real_solve = solver.solve

    def timed_solve(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_solve(*a, **kw)
        finally:
            solve_seconds[current[0]] = solve_seconds.get(current[0], 0.0) + time.perf_counter() - t0

    solver.solve = timed_solve  # type: ignore[assignment]
    cprofiled = set(filter(None, os.environ.get("HANDOVER_BENCH_CPROFILE", "").split(",")))
    running: list[cProfile.Profile] = []

    def phase(name: str) -> float:
        """Marks the start of a phase (and the end of the one before) for the opt-in profiles."""
        # Each phase's own peak memory (VmHWM reset at its start), to see which phase the overall peak is.
        if reset_ok and current[0] != "setup":
            peaks[current[0]] = vm_hwm_bytes() or 0
        if reset_ok:
            reset_peak_rss()
        current[0] = name
        if profile is not None:
            profile.phase = name
        if running:
            running.pop().disable()
        if name in cprofiled:
            running.append(cProfile.Profile())
            running[-1].enable()
            out.setdefault("cprofile", {})[name] = running[-1]
        return time.perf_counter()

    reset_ok = reset_peak_rss()
    peaks: dict[str, int] = out.setdefault("phase_peak_rss", {})
    try:
        with transaction(db) as session:
            audit_before = session.scalar(select(func.coalesce(func.max(AuditEntry.seq), 0))) or 0
            h_before = session.scalar(select(func.coalesce(func.max(Handover.id), 0))) or 0
            # The book each moved client should take along: its open records held by its owner (a leaver).
            open_records = dict(
                session.execute(
                    select(Record.client_id, func.count())
                    .join(Client, Client.external_id == Record.client_id)
                    .where(Client.owner_id.in_(leavers), Record.status == "open", Record.owner_id == Client.owner_id)
                    .group_by(Record.client_id)
                ).all()
            )
        outbox_before = _outbox_max(db)
        on_pg = db.engine.dialect.name == "postgresql"

        start = phase("simulate")
        with transaction(db, write=False) as session:
            sim = planning.simulate(
                session, leavers=leavers, effective_at=effective_at, pool=None, settings=settings, include_items=False
            )
        out["phases"]["simulate"] = time.perf_counter() - start
        out["simulation"] = {
            k: sim[k] for k in ("clients", "assigned", "needs_attention", "total_cost", "solver_status")
        }

        hold: WalHold | None = None
        if on_pg:
            try:
                hold = WalHold(db)
            except Exception as exc:  # no free slot: the WAL may be recycled before it is read (then the row says so)
                print(f"WAL not held ({type(exc).__name__}: {exc})", file=sys.stderr)
            tables_before = pg_tables(db)
            lsn_before = pg_lsn(db)
        ids: list[int] = []
        start = phase("create")
        for leaver in leavers:
            with transaction(db) as session:
                h = service.create_handover(
                    session,
                    leaver=leaver,
                    reason="termination",
                    effective_at=effective_at,
                    destination_competitor=None,
                    source="api",
                    actor="bench",
                    now=now,
                )
                session.flush()
                ids.append(h.id)
        out["phases"]["create"] = time.perf_counter() - start

        # A layoff is planned as one reassignment (POST /v1/handover-plans): one joint solve, items in bulk.
        start = phase("plan")
        with transaction(db) as session:
            hs = visibility.get_handovers(session, ADMIN, ids, lock=True)
            plans, solves = planning.plan_many(session, hs, pool=None, actor="bench", now=now, settings=settings)
        out["phases"]["plan"] = time.perf_counter() - start
        out["planned"] = len(ids)
        out["plan_solves"] = solves
        out["plan_status"] = sorted({p.status for p in plans.values()})

        # Approved together too (POST /v1/handover-approvals): one transaction, each step once for all.
        start = phase("approve")
        with transaction(db) as session:
            service.approve_many(
                session, visibility.get_handovers(session, ADMIN, ids, lock=True), ADMIN, now=now, settings=settings
            )
        out["phases"]["approve"] = time.perf_counter() - start

        # At the effective time the worker executes what is due (`handover worker`: run_due, a batch per transaction).
        start = phase("execute")
        executed: list[int] = []
        while True:
            with transaction(db) as session:
                done = service.run_due(session, now=effective_at)
            if not done:
                break
            executed += done
        out["phases"]["execute"] = time.perf_counter() - start
        out["executed"] = len(executed)

        phase("after")
        if on_pg:
            lsn_after = pg_lsn(db)
            tables_after = pg_tables(db)
            out["pg_tables"] = {
                t: [a - b for a, b in zip(v, tables_before.get(t, [0] * len(v)), strict=True)]
                for t, v in tables_after.items()
            }
            try:
                out["pg_wal"] = pg_wal_by_table(db, lsn_before, lsn_after)
            except Exception as exc:  # e.g. the WAL was recycled already on a busy server: say so, measure the rest
                out["pg_wal"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            finally:
                if hold is not None:
                    hold.close()
        out["peak_rss"] = max(peaks.values(), default=0) if reset_ok else peak_rss_bytes()
        out["peak_rss_method"] = "VmHWM reset at each phase's start" if reset_ok else "ru_maxrss (process lifetime)"

        with transaction(db) as session:
            out["items"] = session.scalar(
                select(func.count()).select_from(HandoverItem).where(HandoverItem.handover_id.in_(ids))
            )
            out["moved"] = session.scalar(
                select(func.count())
                .select_from(HandoverItem)
                .where(HandoverItem.handover_id.in_(ids), HandoverItem.status == "transferred")
            )
            audit_after = session.scalar(select(func.max(AuditEntry.seq))) or 0
            arrived = session.scalars(
                select(HandoverItem.client_id).where(
                    HandoverItem.handover_id.in_(ids), HandoverItem.status.in_(("transferred", "confirmed"))
                )
            ).all()
            moved_records = session.scalar(
                select(func.count()).select_from(RecordMove).where(RecordMove.handover_id.in_(ids))
            )
            left_behind = session.scalar(
                select(func.count())
                .select_from(Record)
                .join(Client, Client.external_id == Record.client_id)
                .where(
                    Record.client_id.in_(select(HandoverItem.client_id).where(HandoverItem.handover_id.in_(ids))),
                    Record.status == "open",
                    Record.owner_id != Client.owner_id,
                )
            )
        out["records"] = {
            "expected": sum(open_records.get(c, 0) for c in arrived),
            "moved": int(moved_records or 0),
            "open_not_with_client_owner": int(left_behind or 0),
        }
        if profile is not None:
            out["sql_profile"] = profile.top()
        for name, prof in out.pop("cprofile", {}).items():
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(30)
            out.setdefault("cprofile_text", {})[name] = text.getvalue()
        out["has_outbox"] = _has_outbox(db)
        floors: list[tuple[str, Any]] = [
            (
                "floor",
                lambda: floor(db, ids, h_before, audit_before, audit_after, leavers, now, effective_at, outbox_before),
            ),
            ("lean_floor", lambda: lean_floor(db, ids)),
        ]
        if args.get("order", 0) % 2:  # alternate which floor runs first, so neither always gets the warmer cache
            floors.reverse()
        for key, fn in floors:
            out[key] = fn()
    finally:
        solver.solve = real_solve
        db.dispose()
    return out


def floor(
    db: Database,
    ids: list[int],
    h_before: int,
    audit_before: int,
    audit_after: int,
    leavers: list[str],
    now: dt.datetime,
    effective_at: dt.datetime,
    outbox_before: int | None,
) -> dict[str, Any]:
    """The same rows, written the fastest raw way; timed from the first write to the last, then rolled back."""
    # What the application holds in memory once it has solved: read back, not timed.
    with transaction(db, write=False) as session:
        handovers = session.scalars(select(Handover).where(Handover.id.in_(ids)).order_by(Handover.id)).all()
        item_table = HandoverItem.__table__
        item_cols = [c.name for c in item_table.columns]
        items = [list(r) for r in session.execute(select(item_table).where(item_table.c.handover_id.in_(ids))).all()]
        max_item = session.scalar(select(func.max(HandoverItem.id))) or 0
        followups = _rows_of(session, "follow_up", ids)
        moves = _rows_of(session, "record_move", ids)
        audits = session.execute(
            select(AuditEntry.occurred_at, AuditEntry.actor, AuditEntry.action, AuditEntry.entity_type,
                   AuditEntry.entity_id, AuditEntry.data)
            .where(AuditEntry.seq > audit_before, AuditEntry.seq <= audit_after)
            .order_by(AuditEntry.seq)
        ).all()  # fmt: skip
        # Only the handovers that went the whole way (see the plan budget): not the cancelled ones' entries.
        mine = {str(i) for i in ids}
        audits = [a for a in audits if a[3] != "handover" or a[4] in mine]
        max_id = session.scalar(select(func.max(Handover.id))) or 0
        max_seq = session.scalar(select(func.max(AuditEntry.seq))) or 0
    outbox_cols, outbox = _outbox_rows(db, outbox_before)
    if outbox:
        unique = outbox_cols.index("message_id")
        for row in outbox:
            row[unique] = secrets.token_hex(16)
    offset = max_id + 1 - ids[0]
    engine = make_engine(db.settings)
    writer = RawWriter(engine)
    steps: dict[str, float] = {}
    counts: dict[str, int] = {}

    def step(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        counts[name] = fn()
        steps[name] = time.perf_counter() - t0

    lo, hi = ids[0] + offset, ids[-1] + offset
    # Every row the floor copies is serialised here, before the clock starts (see raw.Prepared).
    prep_handovers = writer.prepare(
        "handover",
        HANDOVER_COLS,
        (
            (
                h.id + offset,
                h.leaver_id,
                h.manager_id,
                h.reason,
                "completed",
                effective_at,
                "api",
                {"kind": "organisation"},
                "active",
                5,
                "bench",
                now,
                now,
                now,
                "admin:bench",
                now,
                effective_at,
                "bench",
                effective_at,
            )
            for h in handovers
        ),
    )
    i_id, i_h = item_cols.index("id"), item_cols.index("handover_id")
    item_offset = max_item + 1 - min((r[i_id] for r in items), default=0)
    for r in items:
        r[i_id] += item_offset
        r[i_h] += offset
    prep_items = writer.prepare("handover_item", item_cols, items)
    prep_audit = writer.prepare(
        "audit_entry",
        AUDIT_COLS,
        (
            (max_seq + k + 1, a[0], a[1], a[2], a[3], a[4], a[5], secrets.token_hex(32), secrets.token_hex(32))
            for k, a in enumerate(audits)
        ),
    )
    prep_outbox = writer.prepare("outbox_message", outbox_cols, outbox) if outbox else None
    prep_moves = None
    if moves[1]:
        m_cols, m_rows = moves
        for r in m_rows:
            r[m_cols.index("handover_id")] += offset
        prep_moves = writer.prepare("record_move", m_cols, m_rows)
    prep_followups = None
    if followups[1]:
        f_cols, f_rows = followups
        for r in f_rows:
            r[f_cols.index("handover_id")] += offset
            r[f_cols.index("item_id")] += item_offset
        prep_followups = writer.prepare("follow_up", f_cols, f_rows)
    try:
        writer.begin()
        start = time.perf_counter()
        # 'completed' keeps the copies clear of the one-open-handover-per-leaver index.
        step("handovers (COPY)", lambda: writer.copy_prepared(prep_handovers))
        step("items (COPY)", lambda: writer.copy_prepared(prep_items))
        grant_select = (
            "INSERT INTO access_grant (employee_id, client_id, level, valid_from, valid_until, reason, handover_id, "
            "created_by, created_at) SELECT COALESCE(successor_id, interim_owner_id), client_id, {level}, "
            "{valid_from}, {valid_until}, 'handover', handover_id, 'bench', %s FROM handover_item "
            "WHERE handover_id BETWEEN %s AND %s{cond}"
        )
        step(
            "shadow grants (INSERT … SELECT)",
            lambda: writer.execute(
                grant_select.format(level="'shadow'", valid_from="%s", valid_until="%s", cond=""),
                (now, effective_at, now, lo, hi),
            ),
        )
        step(
            "owner/interim grants (INSERT … SELECT)",
            lambda: writer.execute(
                grant_select.format(
                    level="CASE WHEN successor_id IS NULL THEN 'interim' ELSE 'owner' END",
                    valid_from="%s",
                    valid_until="NULL",
                    cond="",
                ),
                (effective_at, now, lo, hi),
            ),
        )
        # The leavers' grants end at the effective time (the service already cut them: same rows, same work).
        step(
            "cut leavers' grants (UPDATE … FROM)",
            lambda: writer.execute(
                "UPDATE access_grant SET cut_by_handover_id = h.id, cut_from = access_grant.valid_until, "
                "valid_until = %s FROM handover h WHERE h.id BETWEEN %s AND %s "
                "AND access_grant.employee_id = h.leaver_id AND access_grant.revoked_at IS NULL "
                "AND access_grant.handover_id IS NULL",
                (effective_at, lo, hi),
            ),
        )
        # Owners change (back to the leavers here, so every row really changes, index entries included).
        step(
            "client owners (UPDATE … FROM)",
            lambda: writer.execute(
                "UPDATE client SET owner_id = i.previous_owner_id, former_owner_id = i.transferred_to_id, "
                "updated_at = %s FROM handover_item i WHERE i.handover_id BETWEEN %s AND %s "
                "AND client.external_id = i.client_id",
                (effective_at, lo, hi),
            ),
        )
        step(
            "leavers departed (UPDATE)",
            lambda: writer.execute(
                "UPDATE employee SET status = 'departed', exit_at = %s, updated_at = %s "
                "WHERE external_id IN (SELECT leaver_id FROM handover WHERE id BETWEEN %s AND %s)",
                (effective_at, effective_at, lo, hi),
            ),
        )
        if prep_moves is not None:
            step("record moves (COPY)", lambda: writer.copy_prepared(prep_moves))
            # The open records change owner (back to the leavers here, as the clients: every row really changes).
            step(
                "record owners (UPDATE … FROM)",
                lambda: writer.execute(
                    "UPDATE record SET owner_id = m.from_owner_id, updated_at = %s FROM record_move m "
                    "WHERE m.handover_id BETWEEN %s AND %s AND record.kind = m.kind "
                    "AND record.external_id = m.external_id",
                    (effective_at, lo, hi),
                ),
            )
        step("audit entries (COPY)", lambda: writer.copy_prepared(prep_audit))
        if prep_outbox is not None:
            step("outbox rows (COPY)", lambda: writer.copy_prepared(prep_outbox))
        if prep_followups is not None:
            step("follow-ups (COPY)", lambda: writer.copy_prepared(prep_followups))
        total = time.perf_counter() - start
    finally:
        writer.rollback()
        writer.close()
        engine.dispose()
    return {"seconds": total, "steps": steps, "counts": counts, "audit_entries": len(audits)}


LEAN_COLS = ("handover_id", "client_id", "from_owner_id", "to_owner_id")


def lean_floor(db: Database, ids: list[int]) -> dict[str, Any]:
    """The minimal rows a handover must write (issue 19 point 2): one narrow row per moved client, enough to undo
    (handover, client, from, to; no index, no foreign key), then the clients' owner UPDATE and the open records'
    owner UPDATE (back to the leavers, so every row really changes). Timed from the first write, rolled back."""
    with transaction(db, write=False) as session:
        rows = session.execute(
            select(
                HandoverItem.handover_id,
                HandoverItem.client_id,
                HandoverItem.previous_owner_id,
                HandoverItem.transferred_to_id,
            ).where(HandoverItem.handover_id.in_(ids), HandoverItem.transferred_to_id.is_not(None))
        ).all()
    engine = make_engine(db.settings)
    writer = RawWriter(engine)
    steps: dict[str, float] = {}
    counts: dict[str, int] = {}

    def step(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        counts[name] = fn()
        steps[name] = time.perf_counter() - t0

    prepared = writer.prepare("bench_lean_item", LEAN_COLS, rows)
    try:
        writer.begin()
        writer.execute(
            "CREATE TABLE bench_lean_item (handover_id INTEGER NOT NULL, client_id VARCHAR(100) NOT NULL, "
            "from_owner_id VARCHAR(100) NOT NULL, to_owner_id VARCHAR(100) NOT NULL)"
        )
        start = time.perf_counter()
        step("lean items (COPY)", lambda: writer.copy_prepared(prepared))
        step(
            "client owners (UPDATE … FROM)",
            lambda: writer.execute(
                "UPDATE client SET owner_id = li.from_owner_id FROM bench_lean_item li "
                "WHERE client.external_id = li.client_id"
            ),
        )
        step(
            "record owners (UPDATE … FROM)",
            lambda: writer.execute(
                "UPDATE record SET owner_id = li.from_owner_id FROM bench_lean_item li "
                "WHERE record.client_id = li.client_id AND record.status = 'open' "
                "AND record.owner_id = li.to_owner_id"
            ),
        )
        total = time.perf_counter() - start
    finally:
        writer.rollback()
        writer.close()
        engine.dispose()
    return {"seconds": total, "steps": steps, "counts": counts}


def main() -> int:
    args = json.loads(Path(sys.argv[1]).read_text())
    result = run(args)
    Path(sys.argv[2]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
