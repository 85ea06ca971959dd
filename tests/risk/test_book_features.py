"""Risk takes the book into account (issue 16 point 6): open deals, overdue invoices, open cases and the nearest
contract renewal come from the client's records when it has them, else from the client's own fields."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.risk import model as rm
from app.risk import service
from tests.conftest import START

Auth = Any


def _put_client(client: TestClient, auth: Auth, external_id: str, **fields: Any) -> None:
    body = {"name": external_id, "tier": "key", "owner": "e0", "annual_value": 50_000, "satisfaction": 7, **fields}
    r = client.put(f"/v1/clients/{external_id}", json=body, headers=auth("hr"))
    assert r.status_code in (200, 201), r.text


def _records(client: TestClient, auth: Auth, items: list[dict[str, Any]]) -> None:
    rows = [{"title": f"{i['kind']} {i['external_id']}", "owner": "e0", **i} for i in items]
    r = client.post("/v1/records/batch", json={"items": rows}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def _activate_default(client: TestClient, auth: Auth) -> int:
    """The code's default model, active whatever the database held (the migration's seed weighs the book 0)."""
    r = client.put("/v1/risk/model", json=rm.DEFAULT_MODEL.as_dict(), headers=auth())
    assert r.status_code in (200, 201), r.text
    version = int(r.json()["version"])
    r = client.post(f"/v1/risk/model/versions/{version}/activate", headers=auth())
    assert r.status_code == 200, r.text
    return version


def _scores(client: TestClient, auth: Auth, ids: list[str]) -> dict[str, dict[str, Any]]:
    r = client.post("/v1/risk/score", json={"clients": ids}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    return {s["client"]: s for s in r.json()["scores"]}


def _contribution(score: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in score["contributions"] if c["name"] == name)


def test_an_overdue_invoice_raises_the_risk_with_its_contribution(client: TestClient, auth: Auth, company: Any) -> None:
    _activate_default(client, auth)
    _put_client(client, auth, "late")
    _put_client(client, auth, "paid")
    overdue = (START - dt.timedelta(days=10)).isoformat()
    _records(
        client,
        auth,
        [
            {"kind": "invoice", "external_id": "i-late", "client": "late", "due_at": overdue, "amount": 9999,
             "currency": "EUR"},
            # Paid (closed), or not yet due: neither is overdue.
            {"kind": "invoice", "external_id": "i-paid", "client": "paid", "due_at": overdue, "amount": 9999,
             "currency": "EUR", "status": "closed"},
            {"kind": "invoice", "external_id": "i-later", "client": "paid",
             "due_at": (START + dt.timedelta(days=5)).isoformat(), "amount": 9999, "currency": "EUR"},
        ],
    )  # fmt: skip
    scores = _scores(client, auth, ["late", "paid"])
    late, paid = scores["late"], scores["paid"]
    assert late["score"] > paid["score"]
    assert (late["factors"]["overdue_invoices"], late["factors"]["overdue_amount"]) == (1, 9999.0)
    assert (paid["factors"]["overdue_invoices"], paid["factors"]["overdue_amount"]) == (0, 0.0)
    count = _contribution(late, "overdue_invoices")
    assert count["value"] == pytest.approx(math.log(2))
    assert count["contribution"] == pytest.approx(rm.DEFAULT_MODEL.weights["overdue_invoices"] * math.log(2))
    amount = _contribution(late, "overdue_amount")
    assert amount["value"] == pytest.approx(math.log10(10_000))
    assert _contribution(paid, "overdue_invoices")["contribution"] == 0
    assert _contribution(paid, "overdue_amount")["contribution"] == 0
    # The only difference between the two is the invoice: the logits differ by exactly its two contributions.
    assert late["logit"] - paid["logit"] == pytest.approx(count["contribution"] + amount["contribution"])
    assert "settle_overdue_invoices" in {m["action"] for m in late["mitigations"]}
    assert "settle_overdue_invoices" not in {m["action"] for m in paid["mitigations"]}
    r = client.get("/v1/clients/late/risk", headers=auth("hr"))
    assert r.status_code == 200 and r.json()["logit"] == pytest.approx(late["logit"])


def test_records_override_the_clients_fields(client: TestClient, auth: Auth, company: Any, db: Database) -> None:
    soon, far = (START + dt.timedelta(days=d) for d in (30, 200))
    # Fields say: no open issues, renewal far away. Records say: two open cases, a contract renewing in 30 days.
    _put_client(client, auth, "booked", open_issues=0, renewal_at=far.date().isoformat())
    # Fields say: 4 open issues, renewal soon. Records: cases and contracts all closed.
    _put_client(client, auth, "closed", open_issues=4, renewal_at=soon.date().isoformat())
    # No records: the fields as they are.
    _put_client(client, auth, "bare", open_issues=4, renewal_at=soon.date().isoformat())
    _records(
        client,
        auth,
        [
            {"kind": "case", "external_id": "k1", "client": "booked"},
            {"kind": "case", "external_id": "k2", "client": "booked"},
            {"kind": "case", "external_id": "k3", "client": "booked", "status": "closed"},
            {"kind": "contract", "external_id": "k-soon", "client": "booked", "due_at": soon.isoformat()},
            {"kind": "contract", "external_id": "k-far", "client": "booked", "due_at": far.isoformat()},
            {"kind": "deal", "external_id": "d-eur", "client": "booked", "amount": 100_000, "currency": "EUR"},
            {"kind": "deal", "external_id": "d-eur2", "client": "booked", "amount": 20_000.5, "currency": "EUR"},
            {"kind": "deal", "external_id": "d-usd", "client": "booked", "amount": 50_000, "currency": "USD"},
            {"kind": "deal", "external_id": "d-won", "client": "booked", "amount": 7, "currency": "EUR",
             "status": "closed"},
            {"kind": "case", "external_id": "k4", "client": "closed", "status": "closed"},
            {"kind": "contract", "external_id": "k-old", "client": "closed", "due_at": soon.isoformat(),
             "status": "closed"},
            {"kind": "deal", "external_id": "d-other", "client": None, "amount": 1e6, "currency": "EUR"},
        ],
    )  # fmt: skip
    with db.session() as s:
        f = service.factors_for_clients(s, ["booked", "closed", "bare"], now=START)
        usd = service.factors_for_clients(s, ["booked"], now=START, context=service.RiskContext(base_currency="USD"))
    booked, closed, bare = f["booked"], f["closed"], f["bare"]
    assert (booked.open_issues, booked.renewal_within_90d) == (2, True)
    assert booked.open_deal_value == pytest.approx(120_000.5)  # EUR only: the USD deal is not added, the won one closed
    assert usd["booked"].open_deal_value == 50_000
    assert (closed.open_issues, closed.renewal_within_90d) == (0, False)
    assert (bare.open_issues, bare.renewal_within_90d) == (4, True)
    assert (bare.open_deal_value, bare.overdue_invoices, bare.overdue_amount) == (0, 0, 0)


def test_without_records_the_score_is_what_it_was(client: TestClient, auth: Auth, company: Any, db: Database) -> None:
    """A client without records scores with the new default exactly as with the model the migration seeded (the old
    default, without the book's weights)."""
    _put_client(client, auth, "bare", open_issues=2, renewal_at=(START + dt.timedelta(days=20)).date().isoformat())
    old = {**rm.DEFAULT_MODEL.as_dict()}
    old["weights"] = {n: w for n, w in old["weights"].items() if n not in rm.OPTIONAL_FEATURES}
    old["mitigations"] = [m for m in old["mitigations"] if m["when"].get("factor") not in rm.OPTIONAL_FEATURES]
    old_model = rm.validate_model(old)
    assert all(old_model.weights[n] == 0 for n in rm.OPTIONAL_FEATURES)
    with db.session() as s:
        new = service.score(s, ["bare", "c1"], now=START, model=service._builtin_default())
        before = service.score(s, ["bare", "c1"], now=START, model=replace(service._builtin_default(), model=old_model))
    for cid in ("bare", "c1"):
        assert new[cid].risk.logit == before[cid].risk.logit
        assert new[cid].risk.probability == before[cid].risk.probability
        assert [m.action for m in new[cid].risk.mitigations] == [m.action for m in before[cid].risk.mitigations]
        assert all(new[cid].risk.contributions[n] == 0 for n in rm.OPTIONAL_FEATURES)


def test_models_without_the_book_weights_are_accepted(client: TestClient, auth: Auth) -> None:
    data = rm.DEFAULT_MODEL.as_dict()
    data["weights"] = {n: w for n, w in data["weights"].items() if n not in rm.OPTIONAL_FEATURES}
    data["intercept"] = -4.0
    r = client.put("/v1/risk/model", json=data, headers=auth())
    assert r.status_code in (200, 201), r.text
    assert all(r.json()["weights"][n] == 0 for n in rm.OPTIONAL_FEATURES)
    names = {f["name"] for f in r.json()["features"]}
    assert names >= rm.OPTIONAL_FEATURES
    # The book's features are weighted like any other: overdue invoices may never lower risk.
    data["weights"] = {**data["weights"], "overdue_invoices": -0.5, "open_deal_value": 0.2}
    r = client.put("/v1/risk/model", json=data, headers=auth())
    assert r.status_code == 422, r.text
    assert any(e["loc"][-1] == "overdue_invoices" for e in r.json()["errors"])
    data["weights"]["overdue_invoices"] = 0.5
    r = client.put("/v1/risk/model", json=data, headers=auth())
    assert r.status_code in (200, 201), r.text
    assert r.json()["weights"]["overdue_invoices"] == 0.5 and r.json()["weights"]["open_deal_value"] == 0.2
