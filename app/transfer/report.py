"""The handover report: one JSON document, rendered as CSV for spreadsheets or as a printable HTML to sign.

No FastAPI here: the router negotiates the format, this module builds and renders it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import jinja2
from pydantic import BaseModel, Field
from sqlalchemy import select, true
from sqlalchemy.orm import Session

from app.book import service as book
from app.core.bulk import chunks
from app.directory.models import Client, ClientContact, Employee
from app.transfer.models import CHECKLIST_KEYS, Handover, HandoverItem
from app.transfer.reporttexts import ReportLocale, Texts
from app.transfer.schemas import (
    ConfidentialityStep,
    ConfidentialityStepOut,
    HandoverStatus,
    ItemStatus,
    StoredReason,
    View,
)

CONFIDENTIALITY_STEPS: tuple[str, ...] = get_args(ConfidentialityStep)
TIER_ORDER = {"strategic": 0, "key": 1, "standard": 2, "prospect": 3}
CHECKLIST_LABELS = {
    "client_profile": "Client profile",
    "contacts": "Contacts",
    "open_projects": "Open projects and their progress",
    "contracts_financials": "Contracts and financials",
    "open_issues": "Open issues and complaints",
    "handover_meeting": "Handover meeting held",
}
TEMPLATES = Path(__file__).parent / "templates"
# The printed columns of each records section after the title (message keys in reporttexts.py).
RECORD_COLUMNS = (
    ("deal", ("amount", "stage", "due")),
    ("renewal", ("amount", "renewal_date", "stage")),
    ("overdue_invoice", ("outstanding", "due", "overdue")),
    ("case", ("stage", "due")),
    ("meeting", ("when", "stage")),
    ("project", ("progress", "stage", "due")),
)
# Characters that make a spreadsheet treat a cell as a formula (OWASP: CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# ---- the document -----------------------------------------------------------------------------


class PersonRef(BaseModel):
    id: str = Field(description="The employee's external id.")
    name: str | None = Field(description="Their name (null if the employee no longer exists).")
    email: str | None
    title: str | None = None


class ChecklistEntry(BaseModel):
    key: str
    label: str
    done: bool
    note: str | None = None
    by: str | None = Field(None, description="Who last set it (role:subject).")
    at: dt.datetime | None = None


class SignOffRecord(BaseModel):
    side: Literal["outgoing", "incoming"] = Field(description="outgoing: the leaver (or their manager); incoming.")
    signed: bool
    by: str | None = Field(None, description="The signing token's role:subject.")
    name: str | None = Field(None, description="The person the sign-off rules require for this signature.")
    at: dt.datetime | None = None
    reason: str | None = Field(None, description="Why a manager signed for the leaver.")


RecordSection = Literal["deal", "renewal", "overdue_invoice", "case", "meeting", "project"]


class ReportRecord(BaseModel):
    """A record of the client's book as the document lists it."""

    section: RecordSection = Field(
        description="deal: an open deal; renewal: an open contract whose `due_at` (renewal date) is within 90 days; "
        "overdue_invoice: an open invoice past `due_at` (`amount` is outstanding); case: an open case; meeting: an "
        "open meeting still to come; project: an open project (`progress` in percent)."
    )
    kind: str
    external_id: str
    title: str
    owner: str = Field(description="Who holds it now (the leaver's open records move at execution).")
    stage: str | None
    due_at: dt.datetime | None
    amount: float | None
    currency: str | None
    progress: int | None
    url: str | None
    days_overdue: int | None = Field(None, description="overdue_invoice only: whole days past `due_at`.")


KEY_CONTACTS = 3  # per client in the document: the primary contact first, then in the CRM's order


class ReportContact(BaseModel):
    name: str
    email: str | None
    phone: str | None
    primary: bool


class ReportItem(BaseModel):
    id: int
    client: str = Field(description="The client's external id.")
    client_name: str
    tier: str
    annual_value: float
    status: ItemStatus
    successor: PersonRef | None
    interim_owner: PersonRef | None
    transferred_to: PersonRef | None
    needs_attention: bool
    attention_reason: str | None
    risk_band: str | None
    risk_score: float | None
    checklist: list[ChecklistEntry] = Field(description="Every checklist entry, done or not, in a fixed order.")
    checklist_done: int
    sign_offs: list[SignOffRecord] = Field(description="The outgoing and the incoming sign-off.")
    transferred_at: dt.datetime | None
    contacts: list[ReportContact] = Field(
        default_factory=list,
        description=f"The client's key contacts: at most {KEY_CONTACTS}, the primary one first, then in the CRM's "
        "order.",
    )
    records: list[ReportRecord] = Field(
        default_factory=list,
        description="The client's book at the report's `records_at` (app/book): open deals, contracts renewing "
        "within 90 days, overdue invoices, open cases, meetings to come and open projects, by section, then due "
        "time. Whoever owns them: what the successor takes on. The HTML shows them in the client's section.",
    )
    open_deal_value: dict[str, float] = Field(
        default_factory=dict, description="The sum of the open deals' amounts, per currency."
    )
    outstanding: dict[str, float] = Field(
        default_factory=dict, description="The overdue invoices' outstanding amounts, per currency."
    )


class ReportCounts(BaseModel):
    items: int
    by_status: dict[str, int]
    by_tier: dict[str, int]
    by_risk_band: dict[str, int]
    needs_attention: int
    with_successor: int
    interim: int
    checklist_complete: int = Field(description="Items whose every checklist entry is done.")
    signed_both: int = Field(description="Items signed by both sides.")
    records: dict[str, int] = Field(
        default_factory=dict, description="The records listed over all items, per section (sections with none absent)."
    )


class SuccessorSummary(BaseModel):
    employee: PersonRef
    clients: int
    by_tier: dict[str, int]


class HandoverReport(BaseModel):
    """Everything a person needs to check and sign a handover, in one document."""

    id: int
    status: HandoverStatus
    reason: StoredReason
    destination_competitor: bool | None
    effective_at: dt.datetime
    source: str
    created_by: str
    created_at: dt.datetime
    planned_at: dt.datetime | None
    approved_by: str | None
    approved_at: dt.datetime | None
    executed_at: dt.datetime | None
    completed_at: dt.datetime | None
    cancelled_by: str | None
    cancelled_at: dt.datetime | None
    cancel_reason: str | None
    undone_at: dt.datetime | None
    leaver: PersonRef
    manager: PersonRef | None
    counts: ReportCounts
    successors: list[SuccessorSummary] = Field(description="Who receives clients, most clients first.")
    items: list[ReportItem] = Field(description="One per client: strategic first, then by client name.")
    view: View = Field(
        "all",
        description="all: every client of the handover; own: only the caller's clients (a participant who receives "
        "some of them and does not manage the handover); counts and successors cover the same items.",
    )
    confidentiality: dict[ConfidentialityStep, ConfidentialityStepOut] = Field(
        default_factory=dict, description="The handover's confidentiality steps recorded so far (done, note, by, at)."
    )
    generated_at: dt.datetime | None = None
    records_at: dt.datetime | None = Field(
        None,
        description="The time the records sections are as of: the later of the effective time and the report's "
        "generation time (before the handover, what the successor finds on the first day; after, what is due now). "
        "Renewals are within 90 days of it, overdue invoices were due before it.",
    )
    locale: ReportLocale = Field(
        "en",
        description="The language of the printable HTML: the `locale` parameter, else the leaver's manager's first "
        "language that the document is written in (zh → zh-CN), else the service default, else en. JSON and CSV "
        "values are the same in every locale.",
    )


def confidentiality(h: Handover) -> dict[str, ConfidentialityStepOut]:
    """The handover's confidentiality steps (app/transfer/checklists.py), for the document."""
    return {k: ConfidentialityStepOut.model_validate(v) for k, v in (h.confidentiality or {}).items()}


def build_report(
    session: Session,
    h: Handover,
    *,
    now: dt.datetime | None = None,
    only: Any = None,
    view: View = "all",
    locale: ReportLocale = "en",
) -> dict[str, Any]:
    """The JSON-ready report: four queries (items with clients, the people named, the clients' records and key
    contacts), whatever the size; with
    `only` (SQL on HandoverItem), only those items, and everything counted over them."""
    pairs = list(
        session.execute(
            select(HandoverItem, Client)
            .join(Client, Client.external_id == HandoverItem.client_id)
            .where(HandoverItem.handover_id == h.id, true() if only is None else only)
        ).all()
    )
    pairs.sort(key=lambda p: (TIER_ORDER.get(p[1].tier, 9), p[1].name, p[0].id))
    wanted = {h.leaver_id} | ({h.manager_id} if h.manager_id else set())
    for item, _ in pairs:
        wanted.update(x for x in (item.successor_id, item.interim_owner_id, item.transferred_to_id) if x)
    people: dict[str, PersonRef] = {}
    ids = sorted(wanted)
    for part in chunks(ids, 5000):
        for e in session.scalars(select(Employee).where(Employee.external_id.in_(part))):
            people[e.external_id] = PersonRef(id=e.external_id, name=e.name, email=e.email, title=e.title)

    def ref(emp: str | None) -> PersonRef | None:
        if emp is None:
            return None
        return people.get(emp) or PersonRef(id=emp, name=None, email=None)

    at = max(h.effective_at, now) if now is not None else h.effective_at
    clients = select(HandoverItem.client_id).where(HandoverItem.handover_id == h.id, true() if only is None else only)
    book_of = book.document_records(session, clients, at=at)
    contacts = _key_contacts(session, clients)
    items = [
        _item(item, client, h, ref, book_of.get(client.external_id, []), at).model_copy(
            update={"contacts": contacts.get(client.external_id, [])}
        )
        for item, client in pairs
    ]
    successors: dict[str, Counter[str]] = {}
    for r in items:
        if r.successor is not None:
            successors.setdefault(r.successor.id, Counter())[r.tier] += 1
    tiers = Counter(r.tier for r in items)
    leaver = ref(h.leaver_id)
    assert leaver is not None
    report = HandoverReport(
        id=h.id,
        status=h.status,
        reason=h.reason,
        destination_competitor=h.destination_competitor,
        effective_at=h.effective_at,
        source=h.source,
        created_by=h.created_by,
        created_at=h.created_at,
        planned_at=h.planned_at,
        approved_by=h.approved_by,
        approved_at=h.approved_at,
        executed_at=h.executed_at,
        completed_at=h.completed_at,
        cancelled_by=h.cancelled_by,
        cancelled_at=h.cancelled_at,
        cancel_reason=h.cancel_reason,
        undone_at=h.undone_at,
        leaver=leaver,
        manager=ref(h.manager_id),
        counts=ReportCounts(
            items=len(items),
            by_status=dict(Counter(r.status for r in items)),
            by_tier={t: tiers[t] for t in TIER_ORDER if tiers[t]},
            by_risk_band=dict(Counter(r.risk_band or "unscored" for r in items)),
            needs_attention=sum(1 for r in items if r.needs_attention),
            with_successor=sum(1 for r in items if r.successor is not None),
            interim=sum(1 for r in items if r.successor is None and r.interim_owner is not None),
            checklist_complete=sum(1 for r in items if r.checklist_done == len(CHECKLIST_KEYS)),
            signed_both=sum(1 for r in items if all(s.signed for s in r.sign_offs)),
            records=dict(Counter(rec.section for r in items for rec in r.records)),
        ),
        successors=[
            SuccessorSummary(employee=people[emp], clients=sum(tiers.values()), by_tier=dict(tiers))
            for emp, tiers in sorted(successors.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
            if emp in people
        ],
        items=items,
        view=view,
        confidentiality=confidentiality(h),
        generated_at=now,
        records_at=at,
        locale=locale,
    )
    return report.model_dump(mode="json")


def _key_contacts(session: Session, clients: Any) -> dict[str, list[ReportContact]]:
    """Every client's key contacts in one query (the directory's, which every module may read)."""
    c = ClientContact
    out: dict[str, list[ReportContact]] = {}
    stmt = select(c).where(c.client_id.in_(clients)).order_by(c.client_id, c.is_primary.desc(), c.position, c.id)
    for row in session.scalars(stmt):
        shown = out.setdefault(row.client_id, [])
        if len(shown) < KEY_CONTACTS:
            shown.append(ReportContact(name=row.name, email=row.email, phone=row.phone, primary=row.is_primary))
    return out


def _record(d: book.DocumentRecord, at: dt.datetime) -> ReportRecord:
    r = d.record
    overdue = None
    if d.section == "overdue_invoice" and r.due_at is not None:
        overdue = (at - r.due_at).days
    return ReportRecord(
        section=d.section,  # book.DOCUMENT_SECTIONS: the same values as RecordSection
        kind=r.kind,
        external_id=r.external_id,
        title=r.title,
        owner=r.owner_id,
        stage=r.stage,
        due_at=r.due_at,
        amount=float(r.amount) if r.amount is not None else None,
        currency=r.currency,
        progress=r.progress,
        url=r.url,
        days_overdue=overdue,
    )


def _sums(records: list[ReportRecord], section: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in records:
        if r.section == section and r.amount is not None and r.currency is not None:
            out[r.currency] = round(out.get(r.currency, 0.0) + r.amount, 2)
    return dict(sorted(out.items()))


def _item(
    item: HandoverItem,
    client: Client,
    h: Handover,
    ref: Callable[[str | None], PersonRef | None],
    book_records: list[book.DocumentRecord],
    at: dt.datetime,
) -> ReportItem:
    stored = item.checklist or {}
    checklist = []
    for key in CHECKLIST_KEYS:
        entry = stored.get(key) or {}
        checklist.append(
            ChecklistEntry(
                key=key,
                label=CHECKLIST_LABELS.get(key, key),
                done=bool(entry.get("done", False)),
                note=entry.get("note"),
                by=entry.get("by"),
                at=entry.get("at"),
            )
        )

    def name(emp: str | None) -> str | None:
        person = ref(emp)
        return person.name if person else None

    records = [_record(d, at) for d in book_records]
    receiver = item.transferred_to_id or item.successor_id or item.interim_owner_id
    outgoing_name = None
    if item.outgoing_signed_at is not None:
        # The sign-off rules say who may sign: the leaver before the effective time, their manager after.
        if item.outgoing_signed_at < h.effective_at:
            outgoing_name = name(h.leaver_id)
        elif (item.outgoing_signed_by or "").startswith("manager:"):
            outgoing_name = name(h.manager_id)
    incoming_name = name(receiver) if item.incoming_signed_at is not None else None
    return ReportItem(
        id=item.id,
        client=client.external_id,
        client_name=client.name,
        tier=client.tier,
        annual_value=float(client.annual_value),
        status=item.status,
        successor=ref(item.successor_id),
        interim_owner=ref(item.interim_owner_id),
        transferred_to=ref(item.transferred_to_id),
        needs_attention=item.needs_attention,
        attention_reason=item.attention_reason,
        risk_band=item.risk_band,
        risk_score=float(item.risk_score) if item.risk_score is not None else None,
        checklist=checklist,
        checklist_done=sum(1 for c in checklist if c.done),
        sign_offs=[
            SignOffRecord(
                side="outgoing",
                signed=item.outgoing_signed_at is not None,
                by=item.outgoing_signed_by,
                name=outgoing_name,
                at=item.outgoing_signed_at,
                reason=item.outgoing_signoff_reason,
            ),
            SignOffRecord(
                side="incoming",
                signed=item.incoming_signed_at is not None,
                by=item.incoming_signed_by,
                name=incoming_name,
                at=item.incoming_signed_at,
            ),
        ],
        transferred_at=item.transferred_at,
        records=records,
        open_deal_value=_sums(records, "deal"),
        outstanding=_sums(records, "overdue_invoice"),
    )


# ---- CSV --------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "handover_id",
    "leaver_id",
    "leaver_name",
    "effective_at",
    "item_id",
    "client_id",
    "client_name",
    "tier",
    "annual_value",
    "status",
    "successor_id",
    "successor_name",
    "successor_email",
    "interim_owner_id",
    "interim_owner_name",
    "transferred_to_id",
    "risk_band",
    "risk_score",
    "needs_attention",
    "attention_reason",
    "checklist_done",
    *(f"checklist_{key}" for key in CHECKLIST_KEYS),
    "outgoing_signed_by",
    "outgoing_signed_at",
    "incoming_signed_by",
    "incoming_signed_at",
    "transferred_at",
    # The client's key contacts as "Name <email>; …", and its book (see ReportRecord): counts, amounts as
    # "EUR 50000.00; USD 10.00", the next due times.
    "key_contacts",
    "open_deals",
    "open_deal_value",
    "renewals_90d",
    "next_renewal_at",
    "overdue_invoices",
    "outstanding",
    "open_cases",
    "next_meeting_at",
    "projects",
    # The handover's confidentiality steps (the same on every row): "done" or empty, and when.
    *(f"{step}{suffix}" for step in CONFIDENTIALITY_STEPS for suffix in ("", "_at")),
)


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _money(sums: dict[str, float]) -> str:
    return "; ".join(f"{currency} {amount:.2f}" for currency, amount in sorted(sums.items()))


def _book_cells(item: dict[str, Any]) -> list[Any]:
    records = item.get("records") or []

    def of(section: str) -> list[dict[str, Any]]:
        return [r for r in records if r["section"] == section]

    def first_due(section: str) -> str | None:
        return min((r["due_at"] for r in of(section) if r["due_at"]), default=None)

    projects = "; ".join(
        f"{r['title']}: {r['progress']}%" if r["progress"] is not None else r["title"] for r in of("project")
    )
    contacts = "; ".join(
        f"{c['name']} <{c['email']}>" if c.get("email") else c["name"] for c in item.get("contacts") or []
    )
    return [
        contacts,
        len(of("deal")),
        _money(item.get("open_deal_value") or {}),
        len(of("renewal")),
        first_due("renewal"),
        len(of("overdue_invoice")),
        _money(item.get("outstanding") or {}),
        len(of("case")),
        first_due("meeting"),
        projects,
    ]


def _confidentiality_cells(report: dict[str, Any]) -> list[Any]:
    steps = report.get("confidentiality") or {}
    cells: list[Any] = []
    for step in CONFIDENTIALITY_STEPS:
        entry = steps.get(step) or {}
        cells += ["done" if entry.get("done") else "", entry.get("at")]
    return cells


def _csv_rows(report: dict[str, Any]) -> Iterable[list[Any]]:
    leaver = report["leaver"]
    secret = _confidentiality_cells(report)
    for item in report["items"]:
        successor = item.get("successor") or {}
        interim = item.get("interim_owner") or {}
        moved = item.get("transferred_to") or {}
        signs = {s["side"]: s for s in item["sign_offs"]}
        done = {c["key"]: c for c in item["checklist"]}
        yield [
            report["id"],
            leaver["id"],
            leaver.get("name"),
            report["effective_at"],
            item["id"],
            item["client"],
            item["client_name"],
            item["tier"],
            item["annual_value"],
            item["status"],
            successor.get("id"),
            successor.get("name"),
            successor.get("email"),
            interim.get("id"),
            interim.get("name"),
            moved.get("id"),
            item["risk_band"],
            item["risk_score"],
            "yes" if item["needs_attention"] else "no",
            item["attention_reason"],
            f"{item['checklist_done']}/{len(item['checklist'])}",
            *("done" if done.get(key, {}).get("done") else "" for key in CHECKLIST_KEYS),
            signs.get("outgoing", {}).get("by"),
            signs.get("outgoing", {}).get("at"),
            signs.get("incoming", {}).get("by"),
            signs.get("incoming", {}).get("at"),
            item["transferred_at"],
            *_book_cells(item),
            *secret,
        ]


def to_csv(report: dict[str, Any]) -> str:
    """One row per item after a header (RFC 4180 quoting, CRLF line ends); safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in _csv_rows(report):
        writer.writerow(["" if v is None else neutralise(v) for v in row])
    return buffer.getvalue()


# ---- HTML -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # client names come from the CRM: never trust them as markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def manager_languages(session: Session, h: Handover) -> list[str]:
    """The languages of the leaver's manager (the handover's, else the leaver's line manager): the document's
    reader."""
    manager = h.manager_id or session.scalar(select(Employee.manager_id).where(Employee.external_id == h.leaver_id))
    if manager is None:
        return []
    languages = session.scalar(select(Employee.languages).where(Employee.external_id == manager))
    return list(languages or [])


def to_html(report: dict[str, Any]) -> str:
    """A printable handover document with signature lines for the leaver, the successors and the manager, in the
    report's locale (labels, values and dates; names and notes as recorded)."""
    successors = [s["employee"] for s in report["successors"]]
    interim_only = {
        item["interim_owner"]["id"]: item["interim_owner"]
        for item in report["items"]
        if item.get("interim_owner") and not item.get("successor")
    }
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            successors=successors,
            interim_owners=[p for key, p in interim_only.items() if key not in {s["id"] for s in successors}],
            texts=Texts(report.get("locale") or "en"),
            confidentiality_steps=CONFIDENTIALITY_STEPS,
            record_columns=RECORD_COLUMNS,
        )
    )
