"""A client's book for the handover document's tests: what the document lists (open deals, a renewal, an overdue
invoice, a case, a meeting to come, a project) and what it must leave out (closed, far off, past)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from tests.support.company import EFFECTIVE

DEAL_TITLE = "Core banking upgrade"
INVOICE_TITLE = "Invoice 2026-117"
# Listed for the client (section → external ids), as of a report generated in the first hours after EFFECTIVE.
LISTED = {
    "deal": ["d-big", "d-usd"],
    "renewal": ["k-renew"],
    "overdue_invoice": ["i-late"],
    "case": ["s-open"],
    "meeting": ["m-next"],
    "project": ["p-roll"],
}
LEFT_OUT = ["d-won", "k-far", "i-future", "i-paid", "m-past", "s-closed"]


def book(client: str, owner: str = "e0") -> list[dict[str, Any]]:
    def at(days: int) -> str:
        return (EFFECTIVE + dt.timedelta(days=days)).isoformat()

    def rec(kind: str, eid: str, title: str, **extra: Any) -> dict[str, Any]:
        return {"kind": kind, "external_id": eid, "title": title, "owner": owner, "client": client} | extra

    return [
        rec("deal", "d-big", DEAL_TITLE, amount=50000, currency="EUR", stage="negotiation", due_at=at(40)),
        rec("deal", "d-usd", "Card terminals", amount=700, currency="USD", stage="proposal"),
        rec("deal", "d-won", "Last year's licence", amount=9000, currency="EUR", stage="won", status="closed"),
        rec("contract", "k-renew", "Service agreement", amount=120000, currency="EUR", due_at=at(30)),
        rec("contract", "k-far", "Data centre lease", amount=80000, currency="EUR", due_at=at(200)),
        rec("invoice", "i-late", INVOICE_TITLE, amount=1250.5, currency="EUR", due_at=at(-10)),
        rec("invoice", "i-future", "Invoice 2026-130", amount=300, currency="EUR", due_at=at(20)),
        rec("invoice", "i-paid", "Invoice 2026-090", amount=800, currency="EUR", due_at=at(-40), status="closed"),
        rec("case", "s-open", "Statement export fails", stage="escalated"),
        rec("case", "s-closed", "Login issue", status="closed", stage="resolved"),
        rec("meeting", "m-next", "Quarterly review", due_at=at(3)),
        rec("meeting", "m-past", "Kick-off", due_at=at(-3)),
        rec("project", "p-roll", "Branch roll-out", progress=40, url="https://crm.example.com/p/roll"),
    ]


def load_book(http: TestClient, auth: Any, client: str, owner: str = "e0") -> None:
    r = http.post("/v1/records/batch", json={"items": book(client, owner)}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def set_confidentiality(http: TestClient, auth: Any, hid: int) -> None:
    """The NDA reminder acknowledged (with a note), company data not returned yet, the non-compete notice unrecorded."""
    hr = auth("hr")
    r = http.put(
        f"/v1/handovers/{hid}/confidentiality/nda_reminder_acknowledged",
        json={"done": True, "note": "signed copy on file"},
        headers=hr,
    )
    assert r.status_code == 200, r.text
    r = http.put(f"/v1/handovers/{hid}/confidentiality/company_data_returned", json={"done": False}, headers=hr)
    assert r.status_code == 200, r.text
