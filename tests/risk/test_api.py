"""The risk endpoints: explained scores, reach, batch limits, model versions, validation, fitting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.clock import ManualClock
from app.core.db import Database
from app.risk import model as rm
from app.risk.models import RiskModelVersion
from app.risk.router import get_outcome_source
from tests.support.outcomes import synthetic_outcomes

PROBLEM = "application/problem+json"


def _sequential(body: dict[str, Any]) -> float:
    total = body["intercept"]
    for c in body["contributions"]:
        total += c["contribution"]
    return float(total)


def test_client_risk_explains_itself(client: TestClient, auth: Any, company: Any) -> None:
    r = client.get("/v1/clients/c0/risk", headers=auth("hr"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["client"], body["owner"], body["model_version"]) == ("c0", "e0", 1)
    assert [c["name"] for c in body["contributions"]] == list(rm.FEATURE_NAMES)
    assert _sequential(body) == body["logit"]
    for c in body["contributions"]:
        assert c["contribution"] == c["weight"] * c["value"] + 0.0
    assert body["score"] == round(body["probability"] * 100, 2)
    assert body["exposure"] == round(body["probability"] * body["factors"]["annual_value"], 2)
    assert body["factors"]["tier"] == "strategic" and body["factors"]["reason"] == "resignation"
    assert body["factors"]["single_threaded"] is True
    assert {"action": "add_second_contact", "text": rm.DEFAULT_MODEL.mitigations[3].text} in body["mitigations"]
    thresholds = rm.DEFAULT_MODEL.thresholds
    expected = "low"
    for band in rm.THRESHOLD_BANDS:
        if body["probability"] >= thresholds[band]:
            expected = band
    assert body["band"] == expected


@pytest.mark.parametrize(
    ("role", "emp", "status"),
    [("account_manager", "e0", 200), ("account_manager", "e1", 404), ("manager", "m1", 200), ("manager", "m2", 404)],
)
def test_client_risk_only_within_reach(
    client: TestClient, auth: Any, company: Any, role: str, emp: str, status: int
) -> None:
    r = client.get("/v1/clients/c1/risk", headers=auth(role, emp=emp))
    assert r.status_code == status, r.text
    if status == 404:
        assert r.headers["content-type"].startswith(PROBLEM)


def test_unknown_client_is_404(client: TestClient, auth: Any, company: Any) -> None:
    assert client.get("/v1/clients/nobody/risk", headers=auth("hr")).status_code == 404
    assert client.get("/v1/clients/bad%20id/risk", headers=auth("hr")).status_code == 422


def test_batch_scores_in_request_order(client: TestClient, auth: Any, company: Any) -> None:
    ids = ["c3", "c1", "c3", "c0"]
    r = client.post("/v1/risk/score", json={"clients": ids}, headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["client"] for s in body["scores"]] == ["c3", "c1", "c0"]
    assert sum(body["bands"].values()) == 3 and set(body["bands"]) == set(rm.BANDS)
    assert body["total_exposure"] == pytest.approx(sum(s["exposure"] for s in body["scores"]))
    single = client.get("/v1/clients/c1/risk", headers=auth("hr")).json()
    assert body["scores"][1]["probability"] == single["probability"]


def test_batch_what_if_departure(client: TestClient, auth: Any, company: Any) -> None:
    ids = [f"c{i}" for i in range(8)]
    base = client.post("/v1/risk/score", json={"clients": ids}, headers=auth("hr")).json()["scores"]
    worse = client.post(
        "/v1/risk/score",
        json={"clients": ids, "reason": "termination", "destination_competitor": True},
        headers=auth("hr"),
    ).json()["scores"]
    for a, b in zip(base, worse, strict=True):
        assert b["probability"] > a["probability"]
        assert b["factors"]["reason"] == "termination"
        assert "retention_offer_review" in [m["action"] for m in b["mitigations"]]


def test_batch_refuses_unknown_and_unreachable_clients(client: TestClient, auth: Any, company: Any) -> None:
    r = client.post("/v1/risk/score", json={"clients": ["c0", "ghost", "c1", "phantom"]}, headers=auth("hr"))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert "ghost" in problem["detail"] and "phantom" in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [["body", "clients", 1], ["body", "clients", 3]]
    outsider = client.post("/v1/risk/score", json={"clients": ["c0"]}, headers=auth("account_manager", emp="e1"))
    assert outsider.status_code == 422 and "c0" in outsider.json()["detail"]


@pytest.mark.parametrize("clients", [[], [f"c{i}" for i in range(1001)], ["bad id"]])
def test_batch_size_and_ids_are_validated(client: TestClient, auth: Any, clients: list[str]) -> None:
    r = client.post("/v1/risk/score", json={"clients": clients}, headers=auth("hr"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"][:2] == ["body", "clients"]


def test_batch_accepts_1000(client: TestClient, auth: Any, company: Any) -> None:
    from tests.support.company import clients as make_clients

    rows = make_clients(1000)
    assert client.post("/v1/clients/batch", json={"items": rows}, headers=auth("hr")).status_code == 200
    r = client.post("/v1/risk/score", json={"clients": [row["external_id"] for row in rows]}, headers=auth("hr"))
    assert r.status_code == 200 and len(r.json()["scores"]) == 1000


# ---- the model ---------------------------------------------------------------------------------------


def _model(**changes: Any) -> dict[str, Any]:
    data = rm.DEFAULT_MODEL.as_dict()
    data.update(changes)
    return data


def test_get_model_describes_every_feature(client: TestClient, auth: Any) -> None:
    r = client.get("/v1/risk/model", headers=auth("auditor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["version"], body["status"]) == (1, "active")
    assert body["weights"] == rm.DEFAULT_MODEL.as_dict()["weights"]
    assert [f["name"] for f in body["features"]] == list(rm.FEATURE_NAMES)
    assert next(f for f in body["features"] if f["name"] == "exfiltration_alert")["nonnegative"] is True
    assert client.get("/v1/risk/model?version=7", headers=auth("hr")).status_code == 404


def test_put_saves_a_draft_that_only_activation_makes_active(client: TestClient, auth: Any, company: Any) -> None:
    """PUT used to activate the new weights at once; now it stores a draft that scores nothing until activated."""
    weights = {**rm.DEFAULT_MODEL.as_dict()["weights"], "single_threaded": 2.0}
    r = client.put("/v1/risk/model", json=_model(weights=weights, note="single-threading hurts"), headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["version"], body["status"], body["source"], body["note"]) == (
        2,
        "draft",
        "manual",
        "single-threading hurts",
    )
    assert (body["created_by"], body["activated_by"], body["activated_at"]) == ("admin:test-admin", None, None)
    active = client.get("/v1/risk/model", headers=auth("hr")).json()
    assert (active["version"], active["status"], active["weights"]["single_threaded"]) == (1, "active", 0.8)
    assert client.get("/v1/clients/c0/risk", headers=auth("hr")).json()["model_version"] == 1
    again = client.put("/v1/risk/model", json=_model(weights=weights, note="retried"), headers=auth())
    assert (again.status_code, again.json()["version"], again.json()["note"]) == (200, 2, "single-threading hurts")
    assert again.json()["status"] == "draft"
    versions = client.get("/v1/risk/model/versions", headers=auth("hr")).json()
    assert [(v["version"], v["status"]) for v in versions["items"]] == [(2, "draft"), (1, "active")]
    assert "weights" not in versions["items"][0]
    r = client.post("/v1/risk/model/versions/2/activate", headers=auth())
    assert r.status_code == 200 and (r.json()["status"], r.json()["activated_by"]) == ("active", "admin:test-admin")
    assert client.get("/v1/risk/model", headers=auth("hr")).json()["weights"]["single_threaded"] == 2.0
    versions = client.get("/v1/risk/model/versions", headers=auth("hr")).json()
    assert [(v["version"], v["status"]) for v in versions["items"]] == [(2, "active"), (1, "retired")]
    old = client.get("/v1/risk/model?version=1", headers=auth("hr")).json()
    assert old["status"] == "retired" and old["weights"]["single_threaded"] == 0.8
    assert client.get("/v1/clients/c0/risk", headers=auth("hr")).json()["model_version"] == 2
    same = client.put("/v1/risk/model", json=_model(weights=weights), headers=auth())
    assert (same.status_code, same.json()["version"], same.json()["status"]) == (200, 2, "active")
    audit = client.get("/v1/audit", params={"entity_type": "risk_model"}, headers=auth("auditor")).json()["items"]
    assert sorted(a["action"] for a in audit) == ["risk_model.activated", "risk_model.created"]
    page = client.get("/v1/risk/model/versions?limit=1", headers=auth("hr")).json()
    assert len(page["items"]) == 1 and page["next_offset"] == 1


def test_weights_up_to_the_bound_are_saved(client: TestClient, auth: Any, company: Any) -> None:
    w = rm.DEFAULT_MODEL.as_dict()["weights"]
    body = _model(intercept=-rm.WEIGHT_LIMIT, weights={**w, "exfiltration_alert": rm.WEIGHT_LIMIT, "tier_key": -20})
    r = client.put("/v1/risk/model", json=body, headers=auth())
    assert r.status_code == 200 and r.json()["status"] == "draft", r.text
    assert client.post(f"/v1/risk/model/versions/{r.json()['version']}/activate", headers=auth()).status_code == 200


def _bad_puts() -> list[tuple[dict[str, Any], list[Any]]]:
    w = rm.DEFAULT_MODEL.as_dict()["weights"]
    return [
        (_model(weights={**w, "exfiltration_alert": -1.0}), ["body", "weights", "exfiltration_alert"]),
        (_model(weights={**w, "mood": 1.0}), ["body", "weights", "mood"]),
        (_model(weights={k: v for k, v in w.items() if k != "open_issues"}), ["body", "weights", "open_issues"]),
        (_model(weights={**w, "reason_other": 2.0}), ["body", "weights", "reason_other"]),
        (_model(thresholds={"medium": 0.5, "high": 0.3, "critical": 0.9}), ["body", "thresholds"]),
        (_model(thresholds={"medium": 0.2, "high": 0.4, "critical": 1.5}), ["body", "thresholds", "critical"]),
        (
            _model(mitigations=[{"when": {"factor": "mood", "op": "==", "value": 1}, "action": "a", "text": "t"}]),
            ["body", "mitigations", 0, "when", "factor"],
        ),
        (_model(weights={**w, "open_issues": "lots"}), ["body", "weights", "open_issues"]),
        # Finite but absurd: saved and activated at once before weights were bounded.
        (_model(weights={**w, "single_threaded": 1e308}), ["body", "weights", "single_threaded"]),
        (_model(weights={**w, "tier_key": -20.5}), ["body", "weights", "tier_key"]),
        (_model(intercept=-1e300), ["body", "intercept"]),
        (_model(intercept=21.0), ["body", "intercept"]),
        (_model(surprise=1), ["body", "surprise"]),
    ]


@pytest.mark.parametrize(("body", "loc"), _bad_puts())
def test_bad_models_are_refused_and_change_nothing(
    client: TestClient, auth: Any, company: Any, body: dict[str, Any], loc: list[Any]
) -> None:
    before = client.get("/v1/risk/model", headers=auth("hr")).json()
    r = client.put("/v1/risk/model", json=body, headers=auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert loc in [e["loc"] for e in r.json()["errors"]]
    assert client.get("/v1/risk/model", headers=auth("hr")).json() == before
    assert len(client.get("/v1/risk/model/versions", headers=auth("hr")).json()["items"]) == 1


def test_non_finite_weights_are_refused(client: TestClient, auth: Any, company: Any) -> None:
    w = rm.DEFAULT_MODEL.as_dict()["weights"]
    for value in ("NaN", "Infinity"):
        raw = json.dumps(_model(weights={**w, "single_threaded": 12345.5})).replace("12345.5", value)
        r = client.put("/v1/risk/model", content=raw, headers={**auth(), "Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert ["body", "weights", "single_threaded"] in [e["loc"][:3] for e in r.json()["errors"]]
    assert client.get("/v1/risk/model", headers=auth("hr")).json()["version"] == 1


def test_only_admins_change_the_model(client: TestClient, auth: Any) -> None:
    for role in ("hr", "manager", "auditor"):
        assert client.put("/v1/risk/model", json=_model(), headers=auth(role)).status_code == 403
        assert client.post("/v1/risk/model/fit", headers=auth(role)).status_code == 403
        assert client.post("/v1/risk/model/versions/1/activate", headers=auth(role)).status_code == 403


def test_activate_rolls_back(client: TestClient, auth: Any, company: Any) -> None:
    assert client.put("/v1/risk/model", json=_model(intercept=-3.0), headers=auth()).json()["status"] == "draft"
    assert client.post("/v1/risk/model/versions/2/activate", headers=auth()).json()["status"] == "active"
    r = client.post("/v1/risk/model/versions/1/activate", headers=auth())
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["status"]) == (1, "active")
    assert client.get("/v1/risk/model?version=2", headers=auth("hr")).json()["status"] == "retired"
    again = client.post("/v1/risk/model/versions/1/activate", headers=auth())
    assert again.status_code == 200 and again.json()["activated_at"] == r.json()["activated_at"]
    assert client.post("/v1/risk/model/versions/9/activate", headers=auth()).status_code == 404


def test_a_version_stored_beyond_the_bound_reads_but_does_not_activate(
    client: TestClient, auth: Any, company: Any, db: Database, clock: ManualClock
) -> None:
    """A version saved before the bound (weights up to 1e308) stays readable; activating it answers 409."""
    assert client.put("/v1/risk/model", json=_model(intercept=-3.0), headers=auth()).json()["version"] == 2
    with db.session() as s:
        data = rm.DEFAULT_MODEL.as_dict()
        data["weights"]["single_threaded"] = 1e308
        s.add(
            RiskModelVersion(
                version=3,
                weights=data,
                status="retired",
                source="manual",
                created_by="admin:legacy",
                created_at=clock.now(),
            )
        )
        s.commit()
    r = client.get("/v1/risk/model?version=3", headers=auth("hr"))
    assert r.status_code == 200 and r.json()["weights"]["single_threaded"] == 1e308, r.text
    r = client.post("/v1/risk/model/versions/3/activate", headers=auth())
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM), r.text
    assert "weights.single_threaded" in r.json()["detail"]
    assert client.get("/v1/risk/model", headers=auth("hr")).json()["version"] == 1


# ---- fitting -----------------------------------------------------------------------------------------


def test_fit_without_outcomes_says_how_many_are_missing(client: TestClient, auth: Any) -> None:
    r = client.post("/v1/risk/model/fit", headers=auth())
    assert r.status_code == 409
    problem = r.json()
    assert (problem["required"], problem["available"], problem["missing"]) == (200, 0, 200)
    assert "need 200 more completed outcomes" in problem["detail"]


@pytest.fixture
def outcomes(app: FastAPI) -> Iterator[None]:
    rows = synthetic_outcomes(3000, seed=9)
    app.dependency_overrides[get_outcome_source] = lambda: lambda session: rows
    try:
        yield
    finally:
        app.dependency_overrides.pop(get_outcome_source, None)


def test_fit_stores_a_draft_that_can_be_activated(client: TestClient, auth: Any, company: Any, outcomes: None) -> None:
    r = client.post("/v1/risk/model/fit", json={"l2": 2.0, "seed": 4, "note": "first fit"}, headers=auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["version"], body["status"], body["source"]) == (2, "draft", "fit")
    assert body["metrics"]["auc"] > 0.7 and body["metrics"]["l2"] == 2.0 and body["metrics"]["seed"] == 4
    assert client.get("/v1/risk/model", headers=auth("hr")).json()["version"] == 1
    draft = client.post("/v1/risk/score", json={"clients": ["c0"], "model_version": 2}, headers=auth("hr"))
    assert draft.status_code == 200 and draft.json()["model_version"] == 2
    missing = client.post("/v1/risk/score", json={"clients": ["c0"], "model_version": 99}, headers=auth("hr"))
    assert missing.status_code == 422 and missing.json()["errors"][0]["loc"] == ["body", "model_version"]
    assert client.post("/v1/risk/model/versions/2/activate", headers=auth()).json()["status"] == "active"
    assert client.post("/v1/risk/model/fit", json={"holdout": 0.9}, headers=auth()).status_code == 422
