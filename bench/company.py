"""The synthetic company: generate it, write it through the directory service, or write the same rows raw."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

from app.book import service as book
from app.book.schemas import RecordIn
from app.core.db import Database, make_engine, transaction
from app.demo import company as synthetic
from app.directory.schemas import ClientBatchItem, ContactIn, EmployeeBatchItem, TeamMemberIn
from app.intake import service as intake
from bench.common import SEED, Scale, settings_for
from bench.raw import RawWriter

CHUNK = 1000  # the directory batch size


def generate(scale: Scale, now: dt.datetime) -> synthetic.Company:
    return synthetic.generate(
        seed=SEED, employees=scale.employees, clients=scale.clients, leavers=scale.leavers, now=now
    )


# A client's book of business (issue 16 point 7): five records each, most of them still open.
RECORD_MIX = ("deal", "deal", "task", "case", "invoice")
OPEN_SHARE = 0.7
CLOSED_STAGE = {"deal": "won", "task": "done", "case": "closed", "invoice": "paid"}
OPEN_STAGE = {"deal": "negotiation", "task": None, "case": "waiting on customer", "invoice": "sent"}


def records(clients: Sequence[dict[str, Any]], now: dt.datetime, seed: int = SEED) -> list[dict[str, Any]]:
    """Record rows for `POST /v1/records/batch` (with `kind` and `external_id`): RECORD_MIX per client, owned by the
    client's owner, OPEN_SHARE of them open; deterministic for a seed. Open ones follow the client at execution."""
    rng = random.Random(seed * 7919 + len(clients))
    out: list[dict[str, Any]] = []
    for c in clients:
        for n, kind in enumerate(RECORD_MIX):
            is_open = rng.random() < OPEN_SHARE
            money = kind in ("deal", "invoice")
            out.append(
                {
                    "kind": kind,
                    "external_id": f"{c['external_id']}-{kind[0]}{n}",
                    "title": f"{kind} {n} of {c['name']}"[:300],
                    "owner": c["owner"],
                    "client": c["external_id"],
                    "status": "open" if is_open else "closed",
                    "stage": (OPEN_STAGE if is_open else CLOSED_STAGE)[kind],
                    "due_at": now + dt.timedelta(days=rng.randint(-30, 180)),
                    "amount": round(rng.uniform(1_000, 250_000), 2) if money else None,
                    "currency": "EUR" if money else None,
                    "progress": rng.randint(0, 100) if kind == "task" else None,
                    "url": None,
                    "attributes": {},
                }
            )
    return out


def construct_record(row: dict[str, Any]) -> tuple[str, str, RecordIn]:
    body = {k: v for k, v in row.items() if k not in ("kind", "external_id")}
    return row["kind"], row["external_id"], RecordIn.model_construct(**body)


def load_records_via_service(database_url: str, rows: Sequence[dict[str, Any]], now: dt.datetime) -> float:
    """Writes the records through `book.service.upsert_records` (set-based, 1,000 per call as the batch endpoint
    allows, ten calls per transaction); returns the seconds it took."""
    import time

    db = Database(settings_for(database_url))
    try:
        start = time.perf_counter()
        items = [construct_record(r) for r in rows]
        for part in synthetic.chunks(items, CHUNK * 10):
            with transaction(db) as session:
                for batch in synthetic.chunks(part, CHUNK):
                    book.upsert_records(session, list(batch), actor="bench", now=now)
        return time.perf_counter() - start
    finally:
        db.dispose()


def construct_employee(row: dict[str, Any]) -> EmployeeBatchItem:
    """An item without validation: the generator's rows are valid by construction (checked on a sample)."""
    return EmployeeBatchItem.model_construct(**row)


def construct_client(row: dict[str, Any]) -> ClientBatchItem:
    return ClientBatchItem.model_construct(
        **{
            **row,
            "contacts": [ContactIn.model_construct(**c) for c in row["contacts"]],
            "account_team": [TeamMemberIn.model_construct(**m) for m in row["account_team"]],
        }
    )


def load_via_service(database_url: str, company: synthetic.Company, now: dt.datetime) -> dict[str, float]:
    """Writes the company through `intake.service.put_*` (model_construct items, 1,000 per call)."""
    import time

    db = Database(settings_for(database_url))
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        employees = [construct_employee(r) for r in company.employees]
        clients = [construct_client(r) for r in company.clients]
        timings["construct"] = time.perf_counter() - start
        start = time.perf_counter()
        with transaction(db) as session:
            for part in synthetic.chunks(employees, CHUNK):
                intake.put_employees(session, [(e.external_id, e) for e in part], actor="bench", now=now)
        for part in synthetic.chunks(clients, CHUNK * 10):
            with transaction(db) as session:
                for batch in synthetic.chunks(part, CHUNK):
                    intake.put_clients(session, [(c.external_id, c) for c in batch], actor="bench", now=now)
        timings["write"] = time.perf_counter() - start
    finally:
        db.dispose()
    return timings


# ---- the raw floor for ingest ----------------------------------------------------------------

EMPLOYEE_COLS = (
    "external_id", "name", "email", "title", "seniority", "manager_id", "skills", "regions", "languages",
    "clearance", "capacity", "status", "exit_at", "created_at", "updated_at",
)  # fmt: skip
CLIENT_COLS = (
    "external_id", "name", "tier", "annual_value", "industry", "region", "language", "sensitivity", "owner_id",
    "relationship_since", "last_contact_at", "satisfaction", "renewal_at", "open_issues", "status",
    "created_at", "updated_at",
)  # fmt: skip
CONTACT_COLS = ("client_id", "position", "name", "email", "phone", "locale", "preferred_channel", "is_primary")
TEAM_COLS = ("client_id", "employee_id", "role")
GRANT_COLS = ("employee_id", "client_id", "level", "valid_from", "valid_until", "reason", "created_by", "created_at")
AUDIT_COLS = ("seq", "occurred_at", "actor", "action", "entity_type", "entity_id", "data", "prev_hash", "hash")


class _Chain:
    """A minimal hash chain for the floor: sha256 over the previous hash and the entry's JSON."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.prev = "0" * 64

    def entry(self, at: dt.datetime, action: str, kind: str, ident: str, data: dict[str, Any]) -> tuple[Any, ...]:
        self.seq += 1
        body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        digest = hashlib.sha256((self.prev + body).encode()).hexdigest()
        row = (self.seq, at, "bench", action, kind, ident, body, self.prev, digest)
        self.prev = digest
        return row


def raw_insert_company(
    database_url: str, employees: Sequence[dict[str, Any]], clients: Sequence[dict[str, Any]], now: dt.datetime
) -> dict[str, int]:
    """The same rows the directory service writes (employees, clients, contacts, account teams, owner grants,
    one audit entry per record), written with COPY / executemany in one transaction."""
    engine = make_engine(settings_for(database_url))
    writer = RawWriter(engine)
    counts: dict[str, int] = {}
    chain = _Chain()
    try:
        writer.begin()
        counts["employee"] = writer.copy(
            "employee",
            EMPLOYEE_COLS,
            (
                (
                    e["external_id"],
                    e["name"],
                    e["email"].lower(),
                    e.get("title"),
                    e["seniority"],
                    e.get("manager"),
                    sorted(set(e.get("skills", []))),
                    sorted(set(e.get("regions", []))),
                    list(e.get("languages", [])),
                    e.get("clearance", 1),
                    e.get("capacity", 20),
                    e.get("status", "active"),
                    e.get("exit_at"),
                    now,
                    now,
                )
                for e in employees
            ),
        )
        counts["client"] = writer.copy(
            "client",
            CLIENT_COLS,
            (
                (
                    c["external_id"],
                    c["name"],
                    c["tier"],
                    c["annual_value"],
                    c["industry"],
                    c["region"],
                    c["language"],
                    c["sensitivity"],
                    c["owner"],
                    c["relationship_since"],
                    c["last_contact_at"],
                    c["satisfaction"],
                    c["renewal_at"],
                    c["open_issues"],
                    c["status"],
                    now,
                    now,
                )
                for c in clients
            ),
        )
        counts["client_contact"] = writer.copy(
            "client_contact",
            CONTACT_COLS,
            (
                (
                    c["external_id"],
                    pos,
                    k["name"],
                    k["email"].lower() if k["email"] else None,
                    k["phone"],
                    k["locale"],
                    k["preferred_channel"],
                    k["primary"],
                )
                for c in clients
                for pos, k in enumerate(c["contacts"])
            ),
        )
        counts["account_team_member"] = writer.copy(
            "account_team_member",
            TEAM_COLS,
            (
                (c["external_id"], m["employee"], m["role"])
                for c in clients
                for m in c["account_team"]
                if m["employee"] != c["owner"]
            ),
        )
        counts["access_grant"] = writer.copy(
            "access_grant",
            GRANT_COLS,
            ((c["owner"], c["external_id"], "owner", now, None, "directory owner", "bench", now) for c in clients),
        )
        counts["audit_entry"] = writer.copy(
            "audit_entry",
            AUDIT_COLS,
            [
                chain.entry(now, "employee.created", "employee", e["external_id"], synthetic.jsonable(e))
                for e in employees
            ]
            + [chain.entry(now, "client.created", "client", c["external_id"], synthetic.jsonable(c)) for c in clients],
        )
        writer.commit()
    finally:
        writer.close()
        engine.dispose()
    return counts
