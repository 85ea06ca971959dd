"""Issue 16 point 4: checklist templates per tier, evidence on entries, sign-off waits for the required entries, and
a handover's confidentiality steps. Over HTTP, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.core.db import Database
from app.transfer.models import ChecklistTemplate, Handover, HandoverItem
from tests.support.checklist import complete_checklist, open_required, optional_templates
from tests.support.company import approve, plan

KEYS = ("client_profile", "contacts", "open_projects", "contracts_financials", "open_issues", "handover_meeting")
PROBLEM = "urn:handover:problem:"


def audits(db: Database, action: str) -> list[AuditEntry]:
    with db.session(write=False) as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def templates(db: Database) -> int:
    with db.session(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(ChecklistTemplate)) or 0)


def approved_items(client: TestClient, auth: Any, hid: int) -> list[dict[str, Any]]:
    plan(client, auth, hid)
    approve(client, auth, hid)
    return list(client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"])


# ---- templates -----------------------------------------------------------------------------


def test_every_tier_has_the_default_until_configured(client: TestClient, auth: Any, db: Database) -> None:
    r = client.get("/v1/checklist-templates", headers=auth("account_manager", emp="e0"))
    assert r.status_code == 200, r.text
    page = r.json()
    assert (page["limit"], page["offset"], page["next_offset"]) == (50, 0, None)
    body = page["items"]
    assert [t["tier"] for t in body] == ["strategic", "key", "standard", "prospect"]
    for t in body:
        assert t["default"] is True and t["version"] == 0 and t["updated_by"] is None
        assert [e["key"] for e in t["entries"]] == list(KEYS)
        assert {e["key"] for e in t["entries"] if e["required"]} == {"client_profile", "contacts", "handover_meeting"}
    r = client.get("/v1/checklist-templates/key", headers=auth("auditor"))
    assert r.status_code == 200 and r.headers["etag"] == '"checklist-template-key-v0"'
    assert templates(db) == 0


def test_the_template_list_is_paged(client: TestClient, auth: Any) -> None:
    body = {"entries": [{"key": "contacts", "label": "Contacts met", "required": True}]}
    assert client.put("/v1/checklist-templates/standard", json=body, headers=auth("hr")).status_code == 200
    first = client.get("/v1/checklist-templates", params={"limit": 2}, headers=auth()).json()
    assert ([t["tier"] for t in first["items"]], first["next_offset"]) == (["strategic", "key"], 2)
    second = client.get("/v1/checklist-templates", params={"limit": 2, "offset": 2}, headers=auth()).json()
    assert ([t["tier"] for t in second["items"]], second["next_offset"]) == (["standard", "prospect"], None)
    assert [t["default"] for t in second["items"]] == [False, True]
    assert second["items"][0]["entries"] == body["entries"]
    past = client.get("/v1/checklist-templates", params={"offset": 4}, headers=auth()).json()
    assert (past["items"], past["next_offset"]) == ([], None)
    for params in ({"limit": 201}, {"limit": 0}, {"offset": -1}):  # 201: over the configured maximum (200)
        r = client.get("/v1/checklist-templates", params=params, headers=auth())
        assert r.status_code == 422, params
        assert r.json()["type"] == PROBLEM + "validation-error"


def test_put_replaces_a_tier_is_audited_and_honours_if_match(client: TestClient, auth: Any, db: Database) -> None:
    body = {"entries": [{"key": "contacts", "label": "Contacts met", "required": True}]}
    r = client.put("/v1/checklist-templates/strategic", json=body, headers=auth("hr"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["default"] is False and out["version"] == 1 and out["updated_by"].startswith("hr:")
    assert out["entries"] == [{"key": "contacts", "label": "Contacts met", "required": True}]
    assert r.headers["etag"] == '"checklist-template-strategic-v1"'
    got = client.get("/v1/checklist-templates/strategic", headers=auth()).json()
    assert got["entries"] == out["entries"]
    # The other tiers keep the default.
    assert client.get("/v1/checklist-templates/key", headers=auth()).json()["default"] is True
    (entry,) = audits(db, "checklist_template.put")
    assert entry.entity_id == "strategic" and entry.data["after"] == out["entries"]
    assert len(entry.data["before"]) == 6
    # A stale If-Match is refused and writes nothing; the current one passes.
    stale = {**auth("admin"), "If-Match": '"checklist-template-strategic-v0"'}
    r = client.put("/v1/checklist-templates/strategic", json={"entries": []}, headers=stale)
    assert r.status_code == 412, r.text
    assert len(audits(db, "checklist_template.put")) == 1
    current = {**auth("admin"), "If-Match": '"checklist-template-strategic-v1"'}
    r = client.put("/v1/checklist-templates/strategic", json={"entries": []}, headers=current)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["entries"] == []


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/checklist-templates/gold", {"entries": []}),
        (
            "/v1/checklist-templates/key",
            {"entries": [{"key": k, "label": k, "required": True} for k in (*KEYS, KEYS[0])]},
        ),
        ("/v1/checklist-templates/key", {"entries": [{"key": "contacts", "label": "a", "required": True}] * 2}),
        ("/v1/checklist-templates/key", {"entries": [{"key": "coffee", "label": "a", "required": True}]}),
        ("/v1/checklist-templates/key", {"entries": [{"key": "contacts", "label": "", "required": True}]}),
        ("/v1/checklist-templates/key", {"entries": [{"key": "contacts", "label": "a", "required": "yes"}]}),
        ("/v1/checklist-templates/key", {"entries": [], "extra": 1}),
        ("/v1/checklist-templates/key", {}),
    ],
    ids=["unknown-tier", "too-many", "repeated", "unknown-key", "empty-label", "not-bool", "extra-field", "missing"],
)
def test_a_bad_template_is_422_and_writes_nothing(
    client: TestClient, auth: Any, db: Database, path: str, body: dict[str, Any]
) -> None:
    r = client.put(path, json=body, headers=auth("admin"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert templates(db) == 0 and not audits(db, "checklist_template.put")


def test_who_may_configure_templates(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    body = {"entries": [{"key": "contacts", "label": "Contacts", "required": False}]}
    for headers in (auth("manager", emp="m1"), auth("account_manager", emp="e0"), auth("auditor")):
        r = client.put("/v1/checklist-templates/key", json=body, headers=headers)
        assert r.status_code == 403, r.text
        assert client.get("/v1/checklist-templates/key", headers=headers).status_code == 200
    assert templates(db) == 0
    for role in ("hr", "admin"):
        assert client.put("/v1/checklist-templates/key", json=body, headers=auth(role)).status_code == 200


# ---- sign-off waits for the required entries -------------------------------------------------------


def test_sign_off_is_refused_naming_the_open_required_entries(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    items = approved_items(client, auth, open_handover)
    item = items[0]
    leaver = auth("account_manager", emp="e0")
    base = f"/v1/handovers/{open_handover}/items/{item['id']}"
    wanted = open_required(client, auth(), open_handover, item["id"])
    assert {"client_profile", "contacts", "handover_meeting"} <= set(wanted)
    r = client.post(f"{base}/sign-off", json={"side": "outgoing"}, headers=leaver)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["type"] == PROBLEM + "checklist-incomplete" and problem["open_items"] == wanted
    assert all(k in problem["detail"] for k in wanted)
    # The incoming side is refused the same way; nothing was written.
    receiver = item["successor"] or item["interim_owner"]
    incoming = auth("manager" if receiver == "m1" else "account_manager", emp=receiver)
    r = client.post(f"{base}/sign-off", json={"side": "incoming"}, headers=incoming)
    assert r.status_code == 409 and r.json()["open_items"] == wanted, r.text
    with db.session(write=False) as s:
        row = s.get(HandoverItem, item["id"])
        assert row is not None and row.outgoing_signed_at is None and row.incoming_signed_at is None
    assert not audits(db, "handover.item.signed_outgoing")
    # All but the last one done: still refused, naming only that one.
    for key in wanted[:-1]:
        assert client.put(f"{base}/checklist/{key}", json={"done": True}, headers=leaver).status_code == 200
    r = client.post(f"{base}/sign-off", json={"side": "outgoing"}, headers=leaver)
    assert r.status_code == 409 and r.json()["open_items"] == wanted[-1:], r.text
    # An entry marked done and then undone is open again.
    assert client.put(f"{base}/checklist/{wanted[-1]}", json={"done": True}, headers=leaver).status_code == 200
    assert client.put(f"{base}/checklist/{wanted[0]}", json={"done": False}, headers=leaver).status_code == 200
    r = client.post(f"{base}/sign-off", json={"side": "outgoing"}, headers=leaver)
    assert r.status_code == 409 and r.json()["open_items"] == wanted[:1], r.text
    assert client.put(f"{base}/checklist/{wanted[0]}", json={"done": True}, headers=leaver).status_code == 200
    r = client.post(f"{base}/sign-off", json={"side": "outgoing"}, headers=leaver)
    assert r.status_code == 200 and r.json()["outgoing_signed_by"], r.text
    r = client.post(f"{base}/sign-off", json={"side": "incoming"}, headers=incoming)
    assert r.status_code == 200 and r.json()["incoming_signed_by"], r.text


def test_optional_entries_do_not_block_and_a_template_decides(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    optional_templates(client, auth("hr"))  # nothing required by the templates; mitigations still are
    items = approved_items(client, auth, open_handover)
    leaver = auth("account_manager", emp="e0")
    first, second = items[0], items[1]
    url = f"/v1/handovers/{open_handover}/items/{first['id']}/sign-off"
    mitigations = [k for k in first["checklist"] if k.startswith("mitigation:")]
    if mitigations:
        r = client.post(url, json={"side": "outgoing"}, headers=leaver)
        assert r.status_code == 409 and r.json()["open_items"] == mitigations, r.text
    assert complete_checklist(client, leaver, open_handover, first["id"]) == mitigations
    r = client.post(url, json={"side": "outgoing"}, headers=leaver)
    assert r.status_code == 200, r.text  # every template entry open, none required
    got = client.get(f"/v1/handovers/{open_handover}/items/{first['id']}", headers=leaver).json()
    assert not any((got["checklist"].get(k) or {}).get("done") for k in KEYS)
    # Requiring open_projects for the next item's tier blocks it until it is done.
    body = {"entries": [{"key": "open_projects", "label": "Open projects", "required": True}]}
    assert client.put(f"/v1/checklist-templates/{second['tier']}", json=body, headers=auth()).status_code == 200
    url = f"/v1/handovers/{open_handover}/items/{second['id']}/sign-off"
    r = client.post(url, json={"side": "outgoing"}, headers=leaver)
    mitigations = [k for k in second["checklist"] if k.startswith("mitigation:")]
    assert r.status_code == 409 and r.json()["open_items"] == ["open_projects", *mitigations], r.text
    assert complete_checklist(client, leaver, open_handover, second["id"]) == ["open_projects", *mitigations]
    assert client.post(url, json={"side": "outgoing"}, headers=leaver).status_code == 200


# ---- evidence ----------------------------------------------------------------------------------


def test_entries_carry_evidence_links_and_records(client: TestClient, auth: Any, open_handover: int) -> None:
    item = approved_items(client, auth, open_handover)[0]
    url = f"/v1/handovers/{open_handover}/items/{item['id']}/checklist/contracts_financials"
    leaver = auth("account_manager", emp="e0")
    evidence = [
        {"url": "https://docs.example.com/contract/42"},
        {"record": {"kind": "contract", "external_id": "ctr-42"}},
    ]
    r = client.put(url, json={"done": True, "note": "signed copy", "evidence": evidence}, headers=leaver)
    assert r.status_code == 200, r.text
    assert r.json()["checklist"]["contracts_financials"]["evidence"] == evidence
    version = r.json()["version"]
    for bad in (
        [{"url": "ftp://docs.example.com/x"}],
        [{"url": "javascript:alert(1)"}],
        [{"url": "https://"}],
        [{"url": "https://docs.example.com/a b"}],
        [{"url": "https://docs.example.com/x", "record": {"kind": "contract", "external_id": "c"}}],
        [{}],
        [{"record": {"kind": "Contract!", "external_id": "c"}}],
        [{"url": f"https://docs.example.com/{i}"} for i in range(11)],
    ):
        r = client.put(url, json={"done": True, "evidence": bad}, headers=leaver)
        assert r.status_code == 422, (bad, r.text)
        assert all({"loc", "msg", "type"} <= set(e) for e in r.json()["errors"]), r.text
    got = client.get(f"/v1/handovers/{open_handover}/items/{item['id']}", headers=leaver).json()
    assert got["version"] == version and got["checklist"]["contracts_financials"]["evidence"] == evidence
    # A replacement without evidence clears it (the entry is replaced whole).
    r = client.put(url, json={"done": True}, headers=leaver)
    assert r.status_code == 200 and r.json()["checklist"]["contracts_financials"]["evidence"] == []


# ---- confidentiality -------------------------------------------------------------------------------


def test_confidentiality_steps_are_recorded_audited_and_on_the_document(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    base = f"/v1/handovers/{open_handover}/confidentiality"
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["confidentiality"] == {}
    r = client.put(f"{base}/nda_reminder_acknowledged", json={"done": True, "note": "signed"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    step = r.json()["confidentiality"]["nda_reminder_acknowledged"]
    assert step["done"] is True and step["note"] == "signed" and step["by"].startswith("hr:") and step["at"]
    r = client.put(f"{base}/company_data_returned", json={"done": False}, headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    got = client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["confidentiality"]
    assert set(got) == {"nda_reminder_acknowledged", "company_data_returned"}
    report = client.get(f"/v1/handovers/{open_handover}/report", headers=auth()).json()
    assert report["confidentiality"]["nda_reminder_acknowledged"]["done"] is True
    assert report["confidentiality"]["company_data_returned"]["done"] is False
    entries = audits(db, "handover.confidentiality")
    assert [(e.entity_id, e.data["step"], e.data["done"]) for e in entries] == [
        (str(open_handover), "nda_reminder_acknowledged", True),
        (str(open_handover), "company_data_returned", False),
    ]
    # The leaver, an auditor and another team's manager record nothing; an unknown step is 422.
    before = client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["version"]
    for headers, status in (
        (auth("account_manager", emp="e0"), 403),
        (auth("auditor"), 403),
        (auth("manager", emp="m2"), 404),
    ):
        r = client.put(f"{base}/non_compete_notice_given", json={"done": True}, headers=headers)
        assert r.status_code == status, r.text
    assert client.put(f"{base}/coffee", json={"done": True}, headers=auth()).status_code == 422
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["version"] == before
    # A cancelled handover's steps are closed (409).
    assert client.post(f"/v1/handovers/{open_handover}/cancel", json={"reason": "x"}, headers=auth()).status_code == 200
    r = client.put(f"{base}/non_compete_notice_given", json={"done": True}, headers=auth())
    assert r.status_code == 409 and r.json()["type"] == PROBLEM + "confidentiality-locked", r.text
    with db.session(write=False) as s:
        h = s.get(Handover, open_handover)
        assert h is not None and set(h.confidentiality or {}) == {"nda_reminder_acknowledged", "company_data_returned"}
