"""`handover demo`: a synthetic company, one leaver, a plan and an approval, explained on the terminal.

It runs the real services against a real database (migrated by Alembic) so what it prints is what the API
would do; nothing here is mocked.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.book import service as book
from app.book.models import Record
from app.core.auth import Principal
from app.core.config import Settings
from app.core.db import Database, transaction
from app.core.migrate import upgrade
from app.demo import company as synthetic
from app.directory.models import Client, Employee
from app.intake import service as intake
from app.transfer import planning, service
from app.transfer.models import Handover, HandoverItem

TIER_ORDER = {"strategic": 0, "key": 1, "standard": 2, "prospect": 3}
SAMPLE_SIZE = 15
FACTORS = ("skill", "region", "language", "continuity", "pool", "load")


def run_demo(database_url: str, *, seed: int = 7, out: TextIO = sys.stdout) -> None:
    """Builds the demo company, opens, plans and approves one handover, and prints why each client went where."""
    started = time.perf_counter()
    _fresh_sqlite(database_url)
    upgrade(database_url)
    settings = Settings(database_url=database_url)
    now = dt.datetime.now(dt.UTC)
    effective_at = (now + dt.timedelta(days=14)).replace(microsecond=0)
    company = synthetic.generate(seed=seed, now=now)
    db = Database(settings)
    try:
        with transaction(db) as session:
            for people in synthetic.chunks(company.employee_items()):
                intake.put_employees(session, [(e.external_id, e) for e in people], actor="demo", now=now)
            for batch in synthetic.chunks(company.client_items()):
                intake.put_clients(session, [(c.external_id, c) for c in batch], actor="demo", now=now)
            for records in synthetic.chunks(company.record_items()):
                book.upsert_records(session, [(r.kind, r.external_id, r) for r in records], actor="demo", now=now)
        loaded = time.perf_counter()
        with transaction(db) as session:
            h = service.create_handover(
                session,
                leaver=company.leavers[0],
                reason="resignation",
                effective_at=effective_at,
                destination_competitor=None,
                source="api",
                actor="demo",
                now=now,
                settings=settings,
            )
            session.flush()
            plan, _ = planning.plan(session, h, pool=None, dry_run=False, actor="demo", now=now, settings=settings)
            service.approve(
                session, h, Principal(sub="demo", role="admin", scopes=frozenset()), now=now, settings=settings
            )
            session.flush()
            summary = _summarise(session, h, plan, company, database_url)
            before = _book(session, h)
        planned = time.perf_counter()
        # The effective time comes: the clients move, and their open records with them (closed ones stay).
        with transaction(db) as session:
            h = session.get_one(Handover, summary.handover_id)
            service.execute(session, h, actor="demo", now=effective_at, settings=settings)
            session.flush()
            summary.executed = _executed(session, h, before)
        summary.timings = {
            "load": loaded - started,
            "plan": planned - loaded,
            "execute": time.perf_counter() - planned,
        }
    finally:
        db.dispose()
    _print(summary, out)


def _fresh_sqlite(database_url: str) -> None:
    """The demo starts from nothing: remove the SQLite file and its WAL companions."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)


# ---- gathering --------------------------------------------------------------------------------


@dataclass
class _Person:
    id: str
    name: str
    title: str | None
    capacity: float


@dataclass
class _Row:
    client_id: str
    client_name: str
    tier: str
    annual_value: float
    industry: str | None
    region: str | None
    language: str | None
    successor: str | None
    interim: str | None
    attention: str | None
    reasons: dict[str, Any]


@dataclass
class _Summary:
    handover_id: int
    status: str
    approved_by: str | None
    leaver: _Person
    manager: _Person | None
    effective_at: dt.datetime
    now: dt.datetime
    company: str
    database: str
    rows: list[_Row]
    people: dict[str, _Person]
    loads_before: dict[str, float]
    loads_after: dict[str, float]
    capacities: dict[str, float]
    solver_status: str
    timings: dict[str, float] = field(default_factory=dict)
    executed: _Executed | None = None


@dataclass
class _Executed:
    """What the execution moved: the records per kind, those that stayed, and what each successor now holds."""

    status: str
    executed_at: dt.datetime | None
    clients_moved: int
    moved: Counter[str]
    stayed_closed: Counter[str]
    held: dict[str, Counter[str]]
    samples: list[tuple[str, str, str, str, str]]  # kind, record, client, from, to


def _book(session: Session, h: Handover) -> Counter[tuple[str, str]]:
    """The leaver's records on the handover's clients, by (kind, status): one grouped query."""
    clients = select(HandoverItem.client_id).where(HandoverItem.handover_id == h.id)
    rows = session.execute(
        select(Record.kind, Record.status, func.count())
        .where(Record.owner_id == h.leaver_id, Record.client_id.in_(clients))
        .group_by(Record.kind, Record.status)
    )
    return Counter({(kind, status): n for kind, status, n in rows})


def _executed(session: Session, h: Handover, before: Counter[tuple[str, str]]) -> _Executed:
    assert h.executed_at is not None
    moves = book.moves_of(session, [h.id], back=False, at=h.executed_at).get(h.id, [])
    after = _book(session, h)
    receivers = select(HandoverItem.transferred_to_id).where(
        HandoverItem.handover_id == h.id, HandoverItem.transferred_to_id.is_not(None)
    )
    clients = select(HandoverItem.client_id).where(HandoverItem.handover_id == h.id)
    held: dict[str, Counter[str]] = defaultdict(Counter)
    for owner, kind, n in session.execute(
        select(Record.owner_id, Record.kind, func.count())
        .where(Record.owner_id.in_(receivers), Record.client_id.in_(clients), Record.status == "open")
        .group_by(Record.owner_id, Record.kind)
    ):
        held[owner][kind] += n
    moved_clients = session.scalar(
        select(func.count()).where(HandoverItem.handover_id == h.id, HandoverItem.transferred_to_id.is_not(None))
    )
    return _Executed(
        status=h.status,
        executed_at=h.executed_at,
        clients_moved=int(moved_clients or 0),
        moved=Counter(m["kind"] for m in moves),
        stayed_closed=Counter({k: n for (k, st), n in after.items() if st == "closed" and before[(k, st)]}),
        held=dict(held),
        samples=[(m["kind"], m["record"], m["client"], m["from"], m["to"]) for m in moves[:5]],
    )


def _summarise(
    session: Session, h: Handover, plan: planning.Plan, company: synthetic.Company, database_url: str
) -> _Summary:
    items = session.execute(
        select(HandoverItem, Client)
        .join(Client, Client.external_id == HandoverItem.client_id)
        .where(HandoverItem.handover_id == h.id)
    ).all()
    rows = [
        _Row(
            client_id=c.external_id,
            client_name=c.name,
            tier=c.tier,
            annual_value=float(c.annual_value),
            industry=c.industry,
            region=c.region,
            language=c.language,
            successor=i.successor_id,
            interim=i.interim_owner_id,
            attention=i.attention_reason,
            reasons=i.reasons or {},
        )
        for i, c in items
    ]
    rows.sort(key=lambda r: (TIER_ORDER.get(r.tier, 9), -r.annual_value, r.client_id))
    wanted = {h.leaver_id, *(x for x in (h.manager_id,) if x)}
    for r in rows:
        wanted.update(x for x in (r.successor, r.interim) if x)
        for side in ("chosen", "runner_up"):
            entry = r.reasons.get(side)
            if entry and entry.get("employee"):
                wanted.add(entry["employee"])
    people = {
        e.external_id: _Person(e.external_id, e.name, e.title, float(e.capacity))
        for e in session.scalars(select(Employee).where(Employee.external_id.in_(wanted)))
    }
    stats = company.stats
    described = (
        f"{len(company.employees)} employees ({int(stats['heads'])} heads of sales, {int(stats['teams'])} teams, "
        f"{int(stats['account_managers'])} account managers), {len(company.clients):,} clients"
    )
    return _Summary(
        handover_id=h.id,
        status=h.status,
        approved_by=h.approved_by,
        leaver=people[h.leaver_id],
        manager=people.get(h.manager_id) if h.manager_id else None,
        effective_at=h.effective_at,
        now=company.now,
        company=described,
        database=make_url(database_url).render_as_string(hide_password=True),
        rows=rows,
        people=people,
        loads_before=plan.loads_before,
        loads_after=plan.loads_after,
        capacities=plan.capacities,
        solver_status=plan.status,
    )


# ---- explaining -------------------------------------------------------------------------------


def _why(row: _Row, people: dict[str, _Person]) -> str:
    """The factors where the chosen successor beat the runner-up, in words."""
    chosen = (row.reasons.get("chosen") or {}).get("costs") or {}
    runner = row.reasons.get("runner_up") or {}
    other = runner.get("costs") or {}
    praise = {
        "skill": f"knows {row.industry}",
        "region": f"covers {row.region}",
        "language": f"speaks {row.language}",
        "continuity": "already on the account team",
        "pool": "in the leaver's team",
        "load": "has more room",
    }
    total = sum(chosen.get(f, 0.0) for f in FACTORS)
    if not other:
        return f"cost {total:.2f}; the only eligible candidate with room"
    better = [
        f"{praise[f]} ({chosen.get(f, 0.0):.1f} vs {other.get(f, 0.0):.1f})"
        for f in FACTORS
        if chosen.get(f, 0.0) + 1e-9 < other.get(f, 0.0)
    ]
    rival = people.get(runner.get("employee") or "")
    rival_total = sum(other.get(f, 0.0) for f in FACTORS)
    name = rival.name if rival else runner.get("employee")
    if better:
        reasons = "; ".join(better)
    elif abs(total - rival_total) < 1e-9:
        reasons = "as good a fit as the runner-up"
    else:  # the optimum is for the whole portfolio: the runner-up's room went to clients that need it more
        reasons = "the runner-up's room serves other clients better"
    return f"{reasons} — cost {total:.2f} vs runner-up {name} {rival_total:.2f}"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    """Pads by display width, so Chinese names line up with Latin ones."""
    if _width(text) > width:
        while text and _width(text + "…") > width:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _width(text))


def _print(s: _Summary, out: TextIO) -> None:
    def say(line: str = "") -> None:
        print(line, file=out)

    rows = s.rows
    tiers = Counter(r.tier for r in rows)
    assigned = [r for r in rows if r.successor]
    interim = [r for r in rows if not r.successor]
    days = (s.effective_at - s.now).total_seconds() / 86400
    say("Handover demo")
    say("=============")
    say(f"Company:    {s.company}")
    say(f"Database:   {s.database}")
    say(f"Leaver:     {s.leaver.name} ({s.leaver.id}), {s.leaver.title or 'account manager'}")
    if s.manager:
        say(f"Manager:    {s.manager.name} ({s.manager.id})")
    say(f"Effective:  {s.effective_at.isoformat()} (in {days:.0f} days)")
    say(f"Handover:   #{s.handover_id}, {s.status} by {s.approved_by}; solver {s.solver_status}")
    tier_text = ", ".join(f"{t} {tiers[t]}" for t in TIER_ORDER if tiers[t])
    say(f"Clients:    {len(rows)} by tier: {tier_text}")
    say(f"Result:     {len(assigned)} to successors, {len(interim)} to an interim owner")
    say()

    say(f"Who gets which client and why (sample of {min(SAMPLE_SIZE, len(assigned))}, most valuable first)")
    say("-" * 100)
    for r in assigned[:SAMPLE_SIZE]:
        successor = s.people.get(r.successor or "")
        say(
            f"{r.client_id}  {_pad(r.client_name, 34)} {r.tier:<9} → {successor.name if successor else r.successor}"
            f" ({r.successor})"
        )
        say(f"{'':14}why: {_why(r, s.people)}")
    say()

    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in assigned:
        per[r.successor or ""][r.tier] += 1
    say("Per successor")
    say("-" * 100)
    say(f"{_pad('successor', 28)} {'clients':>7}  {'strategic':>9} {'key':>4} {'standard':>8} {'prospect':>8}")
    for emp, counts in sorted(per.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        person = s.people.get(emp)
        label = f"{person.name} ({emp})" if person else emp
        say(
            f"{_pad(label, 28)} {sum(counts.values()):>7}  {counts['strategic']:>9} {counts['key']:>4}"
            f" {counts['standard']:>8} {counts['prospect']:>8}"
        )
    say()

    say("Interim owners (clients without a successor)")
    say("-" * 100)
    if not interim:
        say("none: every client has a successor")
    for r in interim:
        owner = s.people.get(r.interim or "")
        who = f"{owner.name} ({r.interim})" if owner else (r.interim or "nobody")
        say(f"{r.client_id}  {_pad(r.client_name, 34)} {r.tier:<9} → {who}; attention: {r.attention}")
    say()

    say("Load per successor (load points: before → after / capacity)")
    say("-" * 100)
    say(f"{_pad('successor', 28)} {'before':>8} {'after':>8} {'capacity':>9} {'use before':>10} {'use after':>9}")
    for emp in sorted(per, key=lambda e: -s.loads_after.get(e, 0.0) / max(s.capacities.get(e, 1.0), 1e-9)):
        before, after = s.loads_before.get(emp, 0.0), s.loads_after.get(emp, 0.0)
        cap = s.capacities.get(emp, 0.0)
        person = s.people.get(emp)
        label = f"{person.name} ({emp})" if person else emp
        use_before = f"{100 * before / cap:.0f}%" if cap else "-"
        use_after = f"{100 * after / cap:.0f}%" if cap else "-"
        say(f"{_pad(label, 28)} {before:>8.1f} {after:>8.1f} {cap:>9.1f} {use_before:>10} {use_after:>9}")
    say()
    if s.executed is not None:
        _print_executed(s, s.executed, say)
    if s.timings:
        say(
            f"Done: company written in {s.timings['load']:.1f} s, planned and approved in {s.timings['plan']:.1f} s,"
            f" executed in {s.timings.get('execute', 0.0):.1f} s."
        )


def _print_executed(s: _Summary, e: _Executed, say: Any) -> None:
    kinds = ("deal", "task", "invoice")
    when = e.executed_at.isoformat() if e.executed_at else "-"
    say(f"At the effective time: the handover is {e.status} ({when}); {e.clients_moved} clients moved")
    say("-" * 100)
    moved = ", ".join(f"{k} {e.moved[k]}" for k in kinds if e.moved[k])
    say(f"Records moved:  {sum(e.moved.values())} open records went with their clients ({moved or 'none'})")
    kept = ", ".join(f"{k} {e.stayed_closed[k]}" for k in kinds if e.stayed_closed[k])
    say(f"Records kept:   {sum(e.stayed_closed.values())} closed records stay with the leaver ({kept or 'none'})")
    for kind, record, client, before, after in e.samples:
        giver, who = s.people.get(before), s.people.get(after)
        say(
            f"{'':16}{kind:<8} {record:<22} client {client}: {giver.name if giver else before} → "
            f"{who.name if who else after} ({after})"
        )
    say()
    say("Records now owned by the receivers (successors and interim owners: open, on the clients they received)")
    say("-" * 100)
    say(f"{_pad('successor', 28)} {'records':>7}  {'deals':>6} {'tasks':>6} {'invoices':>8}")
    for emp, counts in sorted(e.held.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:SAMPLE_SIZE]:
        person = s.people.get(emp)
        label = f"{person.name} ({emp})" if person else emp
        say(
            f"{_pad(label, 28)} {sum(counts.values()):>7}  {counts['deal']:>6} {counts['task']:>6}"
            f" {counts['invoice']:>8}"
        )
    say()
