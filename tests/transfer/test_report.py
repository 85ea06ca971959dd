"""GET /v1/handovers/{id}/report: JSON, CSV and printable HTML from one document, with object-level access."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.core.http import negotiate
from app.main import create_app
from app.transfer.report import CSV_COLUMNS, HandoverReport, neutralise, to_csv
from app.transfer.router import REPORT_FORMATS
from tests.support.checklist import complete_checklist, optional_templates
from tests.support.company import EFFECTIVE, employees

REPORT_PATH = "/v1/handovers/{handover_id}/report"
FORMULA = "=cmd|' /C calc'!A0"
CHINESE = "华东精密制造有限公司"
SCRIPT = "<script>alert('x')</script> Holdings"
QUOTED = 'Smith, Jones & "Partners"\nLtd'
NAMES = {
    "r-formula": FORMULA,
    "r-zh": CHINESE,
    "r-script": SCRIPT,
    "r-quoted": QUOTED,
    "r-plain": "Northwind Logistics",
}


def _clients() -> list[dict[str, Any]]:
    tiers = {"r-formula": "key", "r-zh": "strategic", "r-script": "standard", "r-quoted": "prospect", "r-plain": "key"}
    return [
        {
            "external_id": cid,
            "name": name,
            "tier": tiers[cid],
            "owner": "e0",
            "industry": "banking",
            "region": "cn-east",
            "language": "zh-CN" if cid == "r-zh" else "en",
            "sensitivity": 1,
        }
        for cid, name in NAMES.items()
    ]


@pytest.fixture(scope="module")
def report_app(settings: Settings, clock: ManualClock) -> Iterator[FastAPI]:
    app = create_app(settings, clock=clock)
    yield app
    app.state.db.dispose()


@pytest.fixture
def http(report_app: FastAPI, db: Database) -> Iterator[TestClient]:
    with TestClient(report_app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def case(http: TestClient, auth: Any) -> dict[str, Any]:
    """A planned and approved handover of e0's five clients; the Chinese client is checked and signed by both."""
    assert http.post("/v1/employees/batch", json={"items": employees()}, headers=auth("hr")).status_code == 200
    r = http.post("/v1/clients/batch", json={"items": _clients()}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    r = http.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    hid = r.json()["id"]
    # Only the profile is required here (sign-off waits for required entries): the report shows the rest open.
    optional_templates(http, auth("hr"), required=("client_profile",))
    assert http.post(f"/v1/handovers/{hid}/plan", headers=auth("hr")).status_code == 200
    r = http.post(f"/v1/handovers/{hid}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    items = http.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    by_client = {i["client"]: i for i in items}
    zh = by_client["r-zh"]
    assert zh["successor"], zh
    leaver = auth("account_manager", sub="leo", emp="e0")
    r = http.put(
        f"/v1/handovers/{hid}/items/{zh['id']}/checklist/client_profile",
        json={"done": True, "note": "profile reviewed"},
        headers=leaver,
    )
    assert r.status_code == 200, r.text
    complete_checklist(http, leaver, hid, zh["id"])  # its mitigations, if any
    r = http.post(f"/v1/handovers/{hid}/items/{zh['id']}/sign-off", json={"side": "outgoing"}, headers=leaver)
    assert r.status_code == 200, r.text
    successor = auth("account_manager", sub="succ", emp=zh["successor"])
    r = http.post(f"/v1/handovers/{hid}/items/{zh['id']}/sign-off", json={"side": "incoming"}, headers=successor)
    assert r.status_code == 200, r.text
    return {"id": hid, "items": by_client, "url": f"/v1/handovers/{hid}/report"}


def test_json_is_the_default(http: TestClient, auth: Any, case: dict[str, Any]) -> None:
    for accept in (None, "*/*", "application/json", "application/*"):
        headers = auth() | ({"Accept": accept} if accept else {})
        r = http.get(case["url"], headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.headers["vary"] == "Accept"
    body = r.json()
    HandoverReport.model_validate(body)
    assert body["id"] == case["id"] and body["status"] == "approved" and body["reason"] == "resignation"
    assert body["leaver"]["name"] == "Leo Leaver" and body["manager"]["name"] == "Mia Manager"
    assert body["approved_by"] == "manager:test-manager"
    assert body["counts"]["items"] == 5 and body["counts"]["with_successor"] == 5
    assert body["counts"]["by_tier"] == {"strategic": 1, "key": 2, "standard": 1, "prospect": 1}
    assert body["counts"]["signed_both"] == 1
    items = {i["client"]: i for i in body["items"]}
    assert {cid: i["client_name"] for cid, i in items.items()} == NAMES
    assert body["items"][0]["tier"] == "strategic"  # strategic first
    zh = items["r-zh"]
    planned = case["items"]["r-zh"]
    assert zh["successor"]["id"] == planned["successor"] and zh["successor"]["name"] and zh["successor"]["email"]
    assert zh["status"] == "approved" and zh["transferred_at"] is None
    assert [c["key"] for c in zh["checklist"]][:2] == ["client_profile", "contacts"] and len(zh["checklist"]) == 6
    profile = zh["checklist"][0]
    assert profile["done"] and profile["by"] == "account_manager:leo" and profile["at"] and profile["note"]
    assert zh["checklist_done"] == 1 and not zh["checklist"][1]["done"]
    outgoing, incoming = zh["sign_offs"]
    assert outgoing == outgoing | {
        "side": "outgoing",
        "signed": True,
        "by": "account_manager:leo",
        "name": "Leo Leaver",
    }
    assert (
        incoming["signed"] and incoming["by"] == "account_manager:succ" and incoming["name"] == zh["successor"]["name"]
    )
    assert outgoing["at"] and incoming["at"]
    assert not any(s["signed"] for s in items["r-plain"]["sign_offs"])
    assert sum(s["clients"] for s in body["successors"]) == 5


def test_csv_one_row_per_item_safe_for_spreadsheets(http: TestClient, auth: Any, case: dict[str, Any]) -> None:
    r = http.get(case["url"], headers=auth() | {"Accept": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="handover-{case["id"]}.csv"'
    text = r.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 1 + 5
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    names = {rec["client_id"]: rec["client_name"] for rec in records}
    assert names["r-formula"] == "'" + FORMULA  # neutralised: a spreadsheet shows it as text
    assert names["r-zh"] == CHINESE
    assert names["r-quoted"] == QUOTED  # commas, quotes and a newline survive the round trip
    assert names["r-script"] == SCRIPT
    zh = next(rec for rec in records if rec["client_id"] == "r-zh")
    assert zh["leaver_name"] == "Leo Leaver" and zh["successor_id"] == case["items"]["r-zh"]["successor"]
    assert zh["checklist_done"] == "1/6" and zh["checklist_client_profile"] == "done"
    assert zh["outgoing_signed_by"] == "account_manager:leo" and zh["incoming_signed_at"]
    assert not any(cell.startswith(("=", "+", "-", "@")) for rec in records for cell in rec.values())


def test_html_is_a_printable_document_to_sign(http: TestClient, auth: Any, case: dict[str, Any]) -> None:
    r = http.get(case["url"], headers=auth() | {"Accept": "text/html"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert page.startswith("<!doctype html>") and "@media print" in page
    assert "Leo Leaver" in page and "Mia Manager" in page and "resignation" in page
    for name in NAMES.values():
        assert str(escape(name)) in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Signatures" in page and "Signed by Leo Leaver" in page
    for role in ("<td>Leaver</td>", "<td>Successor</td>", "<td>Manager</td>"):
        assert role in page
    assert "✓" in page and "✗" in page


def test_browsers_get_html_and_text_star_prefers_html(http: TestClient, auth: Any, case: dict[str, Any]) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert http.get(case["url"], headers=auth() | {"Accept": browser}).headers["content-type"].startswith("text/html")
    r = http.get(case["url"], headers=auth() | {"Accept": "application/json;q=0.5, text/csv"})
    assert r.headers["content-type"].startswith("text/csv")


def test_format_parameter_chooses_without_accept_and_wins_over_it(
    http: TestClient, auth: Any, case: dict[str, Any]
) -> None:
    for fmt, media in (("json", "application/json"), ("csv", "text/csv"), ("html", "text/html")):
        r = http.get(case["url"], params={"format": fmt}, headers=auth() | {"Accept": "application/xml"})
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), (fmt, r.text)
    r = http.get(case["url"], params={"format": "pdf"}, headers=auth())
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "format"]


def test_unacceptable_media_type_is_406(http: TestClient, auth: Any, case: dict[str, Any]) -> None:
    for accept in ("application/xml", "text/csv;q=0, application/pdf"):
        r = http.get(case["url"], headers=auth() | {"Accept": accept})
        assert r.status_code == 406, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["type"] == "urn:handover:problem:report-format-not-acceptable" and body["status"] == 406
        assert set(body["allowed"]) == {"application/json", "text/csv", "text/html"}


def test_object_level_access(http: TestClient, auth: Any, case: dict[str, Any]) -> None:
    assert http.get(case["url"], headers=auth("manager", emp="m1")).status_code == 200
    assert http.get(case["url"], headers=auth("auditor")).status_code == 200
    successor = case["items"]["r-zh"]["successor"]
    assert http.get(case["url"], headers=auth("account_manager", emp=successor)).status_code == 200
    for headers in (auth("manager", emp="m2"), auth("account_manager", emp="x1")):
        r = http.get(case["url"], headers=headers | {"Accept": "text/csv"})
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert http.get("/v1/handovers/999999/report", headers=auth()).status_code == 404
    r = http.get(case["url"])
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    r = http.get(case["url"], headers=auth("integration", scope="directory:read"))
    assert r.status_code == 403


def test_after_execution_shows_transfers_and_the_managers_signature(
    http: TestClient, auth: Any, case: dict[str, Any], clock: ManualClock
) -> None:
    clock.set(EFFECTIVE + dt.timedelta(hours=1))
    r = http.post(f"/v1/handovers/{case['id']}/execute", headers=auth())
    assert r.status_code == 200, r.text
    plain = case["items"]["r-plain"]
    complete_checklist(http, auth(), case["id"], plain["id"])
    r = http.post(
        f"/v1/handovers/{case['id']}/items/{plain['id']}/sign-off",
        json={"side": "outgoing", "reason": "Leo left before signing"},
        headers=auth("manager", sub="mia", emp="m1"),
    )
    assert r.status_code == 200, r.text
    body = http.get(case["url"], headers=auth()).json()
    assert body["status"] == "executed" and body["executed_at"]
    items = {i["client"]: i for i in body["items"]}
    moved = items["r-plain"]
    assert moved["status"] == "transferred" and moved["transferred_at"]
    assert moved["transferred_to"]["id"] == plain["successor"]
    outgoing = moved["sign_offs"][0]
    assert outgoing["name"] == "Mia Manager" and outgoing["by"] == "manager:mia"
    assert outgoing["reason"] == "Leo left before signing"
    assert items["r-zh"]["status"] == "confirmed"  # signed by both sides during the transition
    page = http.get(case["url"], headers=auth() | {"Accept": "text/html"}).text
    assert "Signed by Mia Manager" in page and "Leo left before signing" in page and "Executed" in page
    text = http.get(case["url"], headers=auth() | {"Accept": "text/csv"}).content.decode("utf-8-sig")
    rows = {row[5]: row for row in csv.reader(io.StringIO(text, newline=""))}
    assert rows["r-plain"][list(CSV_COLUMNS).index("transferred_at")]


def test_unplanned_handover_reports_no_items(http: TestClient, auth: Any, db: Database) -> None:
    assert http.post("/v1/employees/batch", json={"items": employees()}, headers=auth("hr")).status_code == 200
    r = http.post(
        "/v1/handovers",
        json={"leaver": "e2", "reason": "retirement", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    hid = r.json()["id"]
    body = http.get(f"/v1/handovers/{hid}/report", headers=auth()).json()
    assert body["status"] == "draft" and body["items"] == [] and body["counts"]["items"] == 0
    csv_text = http.get(f"/v1/handovers/{hid}/report", headers=auth() | {"Accept": "text/csv"}).content
    assert len(list(csv.reader(io.StringIO(csv_text.decode("utf-8-sig"), newline="")))) == 1
    page = http.get(f"/v1/handovers/{hid}/report", headers=auth() | {"Accept": "text/html"}).text
    assert "not planned yet" in page and "Sam Senior" in page


def test_openapi_documents_three_media_types(report_app: FastAPI) -> None:
    op = report_app.openapi()["paths"][REPORT_PATH]["get"]
    content = op["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/csv", "text/html"}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/HandoverReport"}
    assert "application/problem+json" in op["responses"]["406"]["content"]
    assert op["operationId"] == "handovers-report"
    assert op["security"][0]["bearerAuth"] == ["handovers:read"]


@pytest.mark.parametrize(
    "accept,expected",
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("text/*", "text/html"),
        ("text/csv; charset=utf-8", "text/csv"),
        ("TEXT/HTML", "text/html"),
        ("text/html;q=0.2, text/csv;q=0.4", "text/csv"),
        ("*/*;q=0.1, application/json;q=0", "text/html"),
        ("application/xml", None),
        ("garbage", None),
        ("text/html;q=abc", None),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept, REPORT_FORMATS) == expected


def test_neutralise_only_touches_formula_text() -> None:
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=x"):
        assert neutralise(cell) == "'" + cell
    assert neutralise("Acme = good") == "Acme = good"
    assert neutralise(-3.5) == -3.5 and neutralise(None) is None
    report: dict[str, Any] = {
        "id": 1,
        "leaver": {"id": "e0", "name": "-leaver"},
        "effective_at": "2026-11-16T09:00:00Z",
        "items": [],
    }
    assert to_csv(report).count("\r\n") == 1
