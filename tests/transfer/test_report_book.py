"""The handover document's records sections (issue 16 points 4 and 5) in JSON and CSV: each client's book as of the
report's reference time, set-based, and the confidentiality steps in the CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select

from app.core.clock import ManualClock
from app.core.db import Database
from app.transfer.models import Handover
from app.transfer.report import CSV_COLUMNS, HandoverReport, build_report
from tests.support.book import LEFT_OUT, LISTED, book, load_book, set_confidentiality
from tests.support.company import EFFECTIVE, approve, plan

FORMULA = '=HYPERLINK("http://evil.example")'


def _c1_book(http: TestClient, auth: Any) -> None:
    rows = [
        {"kind": "deal", "external_id": "d-c1", "title": "Treasury", "owner": "e0", "client": "c1", "amount": 10}
        | {"currency": "GBP", "stage": "qualified"},
        {"kind": "project", "external_id": "p-c1", "title": FORMULA, "owner": "e0", "client": "c1", "progress": 10},
        # Another owner's open deal on the same client: the client's book, listed whoever holds it.
        {"kind": "deal", "external_id": "d-c1-e1", "title": "FX desk", "owner": "e1", "client": "c1", "amount": 5}
        | {"currency": "GBP", "stage": "proposal"},
        # A client outside the handover: never listed.
        {"kind": "deal", "external_id": "d-x", "title": "Elsewhere", "owner": "x1", "client": None, "amount": 1}
        | {"currency": "GBP"},
    ]
    r = http.post("/v1/records/batch", json={"items": rows}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def _sections(item: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in item["records"]:
        out.setdefault(r["section"], []).append(r["external_id"])
    return out


def test_each_clients_book_as_of_the_effective_time(
    client: TestClient, auth: Any, clock: ManualClock, open_handover: int
) -> None:
    load_book(client, auth, "c0")
    _c1_book(client, auth)
    plan(client, auth, open_handover)
    body = client.get(f"/v1/handovers/{open_handover}/report", headers=auth()).json()
    HandoverReport.model_validate(body)
    # Before the effective time the book is as the successor finds it on their first day.
    assert body["records_at"] == EFFECTIVE.isoformat().replace("+00:00", "Z")
    items = {i["client"]: i for i in body["items"]}
    c0 = items["c0"]
    assert _sections(c0) == LISTED
    listed = {r["external_id"] for r in c0["records"]}
    assert not listed & set(LEFT_OUT)
    assert c0["open_deal_value"] == {"EUR": 50000.0, "USD": 700.0}
    assert c0["outstanding"] == {"EUR": 1250.5}
    late = next(r for r in c0["records"] if r["external_id"] == "i-late")
    assert late | {"days_overdue": 10, "amount": 1250.5, "currency": "EUR", "kind": "invoice", "owner": "e0"} == late
    deal = c0["records"][0]
    assert deal["external_id"] == "d-big" and deal["stage"] == "negotiation" and deal["amount"] == 50000.0
    project = next(r for r in c0["records"] if r["section"] == "project")
    assert project["progress"] == 40 and project["url"] == "https://crm.example.com/p/roll"
    assert _sections(items["c1"]) == {"deal": ["d-c1", "d-c1-e1"], "project": ["p-c1"]}
    assert items["c1"]["open_deal_value"] == {"GBP": 15.0} and items["c1"]["outstanding"] == {}
    assert c0["contacts"] == [{"name": "Contact 0", "email": "c0@client.example", "phone": None, "primary": False}]
    assert all(items[c]["records"] == [] for c in items if c not in ("c0", "c1"))
    assert body["counts"]["records"] == {
        "deal": 4,
        "renewal": 1,
        "overdue_invoice": 1,
        "case": 1,
        "meeting": 1,
        "project": 2,
    }

    # Weeks after the effective time the book is as of now: the meeting is past, another invoice is overdue, the
    # far contract is still beyond 90 days.
    later = EFFECTIVE + dt.timedelta(days=25)
    clock.set(later)
    body = client.get(f"/v1/handovers/{open_handover}/report", headers=auth()).json()
    assert body["records_at"] == later.isoformat().replace("+00:00", "Z")
    c0 = next(i for i in body["items"] if i["client"] == "c0")
    sections = _sections(c0)
    assert sections["overdue_invoice"] == ["i-late", "i-future"] and "meeting" not in sections
    assert sections["renewal"] == ["k-renew"]
    assert c0["outstanding"] == {"EUR": 1550.5}
    assert [r["days_overdue"] for r in c0["records"] if r["section"] == "overdue_invoice"] == [35, 5]


def test_a_participant_sees_the_book_of_their_own_clients_only(
    client: TestClient, auth: Any, open_handover: int
) -> None:
    load_book(client, auth, "c0")
    _c1_book(client, auth)
    plan(client, auth, open_handover)
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    c1 = next(i for i in items if i["client"] == "c1")
    other = next(i["successor"] for i in items if i["client"] == "c0")
    assert c1["successor"] and c1["successor"] != other, "the test wants c0 and c1 with different successors"
    # The successor, a participant who does not manage the handover, sees their own items and only their books.
    mine = auth("account_manager", sub="succ", emp=c1["successor"])
    body = client.get(f"/v1/handovers/{open_handover}/report", headers=mine).json()
    assert body["view"] == "own" and "c0" not in {i["client"] for i in body["items"]}
    shown = {r["external_id"] for i in body["items"] for r in i["records"]}
    assert "d-big" not in shown and {"d-c1", "p-c1"} <= shown
    assert "deal" in body["counts"]["records"] and "renewal" not in body["counts"]["records"]


def test_the_csv_has_each_clients_book_and_the_confidentiality_steps(
    client: TestClient, auth: Any, open_handover: int
) -> None:
    load_book(client, auth, "c0")
    _c1_book(client, auth)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    set_confidentiality(client, auth, open_handover)
    url = f"/v1/handovers/{open_handover}/report"
    raw = client.get(url, params={"format": "csv"}, headers=auth()).content
    assert raw == client.get(url, params={"format": "csv", "locale": "zh-CN"}, headers=auth()).content
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    by_client = {r["client_id"]: r for r in rows}
    c0 = by_client["c0"]
    assert {k: c0[k] for k in CSV_COLUMNS if k.startswith(("open_", "renewals", "next_", "overdue", "outst"))} == {
        "open_deals": "2",
        "open_deal_value": "EUR 50000.00; USD 700.00",
        "renewals_90d": "1",
        "next_renewal_at": (EFFECTIVE + dt.timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        "overdue_invoices": "1",
        "outstanding": "EUR 1250.50",
        "open_cases": "1",
        "next_meeting_at": (EFFECTIVE + dt.timedelta(days=3)).isoformat().replace("+00:00", "Z"),
    }
    assert c0["projects"] == "Branch roll-out: 40%"
    assert c0["key_contacts"] == "Contact 0 <c0@client.example>"
    # A CRM title that a spreadsheet would run as a formula is neutralised.
    assert by_client["c1"]["projects"] == "'" + FORMULA + ": 10%"
    assert by_client["c1"]["open_deal_value"] == "GBP 15.00" and by_client["c1"]["overdue_invoices"] == "0"
    assert by_client["c2"]["open_deals"] == "0" and by_client["c2"]["projects"] == ""
    # The confidentiality steps, per handover, on every row.
    for row in rows:
        assert row["nda_reminder_acknowledged"] == "done" and row["nda_reminder_acknowledged_at"]
        assert row["company_data_returned"] == "" and row["company_data_returned_at"]
        assert row["non_compete_notice_given"] == "" and row["non_compete_notice_given_at"] == ""


def test_one_query_reads_the_book_of_every_client(
    client: TestClient, auth: Any, open_handover: int, db: Database
) -> None:
    for c in ("c0", "c1", "c2", "c3", "c4"):
        rows = [r | {"external_id": f"{r['external_id']}-{c}"} for r in book(c)]
        assert client.post("/v1/records/batch", json={"items": rows}, headers=auth("hr")).status_code == 200
    plan(client, auth, open_handover)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.session() as s:
            h = s.scalars(select(Handover).where(Handover.id == open_handover)).one()
            statements.clear()
            report = build_report(s, h, now=EFFECTIVE)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    on_records = [q for q in statements if "FROM record" in q]
    assert len(on_records) == 1, on_records
    assert len(statements) <= 5, statements  # items with clients, people, records, key contacts
    assert sum(len(i["records"]) for i in report["items"]) == 5 * 7


def test_key_contacts_the_primary_first_at_most_three(client: TestClient, auth: Any, open_handover: int) -> None:
    from tests.support.company import clients

    c1 = next(c for c in clients() if c["external_id"] == "c1")
    c1["contacts"] = [
        {"name": f"P{n}", "email": f"p{n}@client.example", "primary": n == 2, "phone": "+86 21 5555 0100"}
        for n in range(5)
    ]
    assert client.post("/v1/clients/batch", json={"items": [c1]}, headers=auth("hr")).status_code == 200
    plan(client, auth, open_handover)
    url = f"/v1/handovers/{open_handover}/report"
    item = next(i for i in client.get(url, headers=auth()).json()["items"] if i["client"] == "c1")
    assert [(c["name"], c["primary"]) for c in item["contacts"]] == [("P2", True), ("P0", False), ("P1", False)]
    html = client.get(url, params={"format": "html", "locale": "zh-CN"}, headers=auth()).text
    assert "主要联系人" in html and "P2 &lt;p2@client.example&gt;, +86 21 5555 0100" in html and "P3" not in html
