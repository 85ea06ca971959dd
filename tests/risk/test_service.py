"""Risk over the database: factors from the directory, set-based scoring, model versions, fitting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.access.models import Alert
from app.audit.models import AuditEntry
from app.core.db import Database
from app.core.errors import Conflict, Unprocessable
from app.risk import model as rm
from app.risk import service
from app.risk.models import RiskModelVersion
from app.transfer.planning import open_departures
from tests.conftest import START
from tests.support.company import EFFECTIVE, clients
from tests.support.outcomes import TRUE_MODEL, synthetic_outcomes


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.session() as s:
        yield s
        s.rollback()


def _put_client(client: TestClient, auth: Any, external_id: str, **fields: Any) -> None:
    body = {"name": external_id, "tier": "key", "owner": "e0", **fields}
    r = client.put(f"/v1/clients/{external_id}", json=body, headers=auth("hr"))
    assert r.status_code in (200, 201), r.text


def test_factors_come_from_the_directory(client: TestClient, auth: Any, company: Any, db: Database) -> None:
    _put_client(
        client,
        auth,
        "rich",
        tier="strategic",
        annual_value=2_000_000,
        relationship_since=(START - dt.timedelta(days=730)).date().isoformat(),
        last_contact_at=(START - dt.timedelta(days=45)).isoformat(),
        satisfaction=4,
        renewal_at=(START + dt.timedelta(days=30)).date().isoformat(),
        open_issues=3,
        contacts=[{"name": "A", "email": "a@rich.example"}, {"name": "B", "email": "b@rich.example"}],
        account_team=[{"employee": "e1", "role": "support"}],
    )
    _put_client(client, auth, "thin", renewal_at=(START + dt.timedelta(days=120)).date().isoformat())
    with db.session() as s:
        f = service.factors_for_clients(s, ["rich", "thin", "nope"], now=START)
    assert set(f) == {"rich", "thin"}
    rich = f["rich"]
    assert rich.years_with_leaver == pytest.approx(730 / 365.25)
    assert rich.single_threaded is False
    assert (rich.tier, rich.annual_value, rich.satisfaction, rich.open_issues) == ("strategic", 2e6, 4.0, 3)
    assert rich.renewal_within_90d is True
    assert rich.days_since_last_contact == pytest.approx(45)
    assert (rich.reason, rich.destination_competitor, rich.exfiltration_alert) == ("resignation", False, False)
    assert (rich.seniority_gap, rich.skill_mismatch, rich.language_mismatch) == (0, False, False)
    thin = f["thin"]
    assert thin.single_threaded is True  # no one else on the team, no contacts
    assert thin.renewal_within_90d is False
    assert thin.satisfaction is None and thin.days_since_last_contact is None and thin.years_with_leaver == 0


def test_open_handover_and_alert_raise_the_risk(client: TestClient, auth: Any, company: Any, db: Database) -> None:
    with db.session() as s:
        before = service.score(s, ["c1", "c2"], now=START)
    r = client.post(
        "/v1/handovers",
        json={
            "leaver": "e0",
            "reason": "termination",
            "destination_competitor": True,
            "effective_at": EFFECTIVE.isoformat(),
        },
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    with db.session() as s:
        s.add(
            Alert(
                employee_id="e0",
                kind="exfiltration",
                status="open",
                score=9,
                window_start=START - dt.timedelta(days=3),
                window_end=START,
                clients=["c1"],
                details={},
                created_at=START,
                updated_at=START,
            )
        )
        s.commit()
        # The workflow's open handovers, as app.main binds them for risk.
        after = service.score(s, ["c1", "c2"], context=service.RiskContext(departures=open_departures), now=START)
    c1, c2 = after["c1"], after["c2"]
    assert (c1.factors.reason, c1.factors.destination_competitor, c1.factors.exfiltration_alert) == (
        "termination",
        True,
        True,
    )
    assert c2.factors.exfiltration_alert is False
    assert c1.risk.probability > c2.risk.probability > before["c2"].risk.probability
    actions = {m.action for m in c1.risk.mitigations}
    assert {"security_review", "retention_offer_review", "add_second_contact"} <= actions
    assert "security_review" not in {m.action for m in c2.risk.mitigations}


def test_context_sets_the_departure_and_successor_fit(company: Any, session: Session) -> None:
    ctx = service.RiskContext(
        reason="retirement",
        destination_competitor=True,
        successors={"c0": "e3", "c1": "e3", "c2": "ghost"},
        successor_fit={"c3": rm.SuccessorFit(seniority_gap=1, skill_mismatch=True)},
        min_seniority={"strategic": 3, "key": 2, "standard": 1, "prospect": 1},
    )
    f = service.factors_for_clients(session, ["c0", "c1", "c2", "c3"], context=ctx, now=START)
    # c0: strategic, retail, en; e3: seniority 1, banking, zh
    assert (f["c0"].seniority_gap, f["c0"].skill_mismatch, f["c0"].language_mismatch) == (2, True, True)
    # c1: key, banking, zh-CN
    assert (f["c1"].seniority_gap, f["c1"].skill_mismatch, f["c1"].language_mismatch) == (1, False, False)
    assert f["c2"].seniority_gap == 0  # unknown successor: no fit known
    assert (f["c3"].seniority_gap, f["c3"].skill_mismatch) == (1, True)
    assert all(x.reason == "retirement" and x.destination_competitor for x in f.values())
    with pytest.raises(ValueError):
        service.RiskContext(reason="fired")


def test_with_successors_gives_what_reading_the_factors_with_successors_gives(company: Any, session: Session) -> None:
    """Planning reads the factors once and adds the fit afterwards; it must score exactly as a full second read."""
    ids = ["c0", "c1", "c2", "c3", "nobody"]
    mins = {"strategic": 3, "key": 2, "standard": 1, "prospect": 1}
    base = service.RiskContext(reason="termination", destination_competitor=True, min_seniority=mins)
    successors = {"c0": "e3", "c1": "e3", "c2": "ghost"}  # c3 gets none; ghost is unknown
    full = service.factor_batch(
        session,
        ids,
        context=service.RiskContext(
            reason="termination", destination_competitor=True, min_seniority=mins, successors=successors
        ),
        now=START,
    )
    first = service.factor_batch(session, ids, context=base, now=START)
    assert first.table.numbers["seniority_gap"].tolist() == [0, 0, 0, 0]
    added = service.with_successors(session, first, successors, min_seniority=mins)
    assert added.client_ids == full.client_ids == ["c0", "c1", "c2", "c3"]
    for name, column in full.table.numbers.items():
        assert added.table.numbers[name].tolist() == pytest.approx(column.tolist(), nan_ok=True), name
    for name, column in full.table.categories.items():
        assert added.table.categories[name].tolist() == column.tolist(), name
    assert added.table.numbers["seniority_gap"].tolist() == [2, 1, 0, 0]
    assert first.table.numbers["seniority_gap"].tolist() == [0, 0, 0, 0]  # the first batch is left as it was
    version = service.active_model(session)
    assert {k: v.as_json() for k, v in service.score_batch(added, version).items()} == {
        k: v.as_json() for k, v in service.score_batch(full, version).items()
    }


def test_scoring_is_set_based(client: TestClient, auth: Any, company: Any, db: Database) -> None:
    rows = clients(600)
    for row in rows:
        row["account_team"] = [{"employee": "e1", "role": "support"}]
    assert client.post("/v1/clients/batch", json={"items": rows}, headers=auth("hr")).status_code == 200
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.session() as s:
            s.execute(select(1))  # the transaction has begun
            statements.clear()
            few = service.score(s, [f"c{i}" for i in range(3)], now=START)
            n_few = len(statements)
            statements.clear()
            many = service.score(s, [f"c{i}" for i in range(600)], now=START)
            n_many = len(statements)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(few) == 3 and len(many) == 600
    assert n_many == n_few <= 5  # model, clients with counts, the book, alerts, open handovers
    assert list(many)[:3] == ["c0", "c1", "c2"]
    assert many["c1"].risk.probability == few["c1"].risk.probability
    stored = many["c5"].as_json()
    assert stored["model_version"] == 1
    assert service.factors_from_json(stored["factors"]) == many["c5"].factors
    assert set(stored["contributions"]) == set(rm.FEATURE_NAMES)


def test_versions_are_kept_activated_and_audited(company: Any, session: Session) -> None:
    assert service.active_model(session).version == 1
    data = rm.DEFAULT_MODEL.as_dict()
    data["weights"]["exfiltration_alert"] = 3.0
    v2 = service.put_model(session, data, actor="admin:a", now=START, note="alerts matter more")
    assert (v2.version, v2.status, v2.source, v2.note) == (2, "draft", "manual", "alerts matter more")
    assert service.active_model(session).version == 1  # a saved model is a draft until activated
    assert service.put_model(session, data, actor="admin:a", now=START).version == 2  # a retry adds nothing
    assert [v.status for v in service.list_versions(session, limit=10, offset=0)] == ["draft", "active"]
    assert service.activate(session, 2, actor="admin:a", now=START).status == "active"
    assert service.active_model(session).model.weights["exfiltration_alert"] == 3.0
    assert [v.status for v in service.list_versions(session, limit=10, offset=0)] == ["active", "retired"]
    bad = {**data, "weights": {**data["weights"], "satisfaction_deficit": -1}}
    with pytest.raises(Unprocessable) as info:
        service.put_model(session, bad, actor="admin:a", now=START)
    assert info.value.errors == [
        {
            "loc": ["body", "weights", "satisfaction_deficit"],
            "msg": "must be >= 0: this factor may never lower risk",
            "type": "value_error",
        }
    ]
    assert service.active_model(session).version == 2
    back = service.activate(session, 1, actor="admin:b", now=START + dt.timedelta(hours=1))
    assert (back.version, back.status, back.activated_by) == (1, "active", "admin:b")
    assert service.get_version(session, 2).status == "retired"
    assert service.activate(session, 1, actor="admin:b", now=START).status == "active"  # idempotent
    actions = session.scalars(
        select(AuditEntry.action).where(AuditEntry.entity_type == "risk_model").order_by(AuditEntry.seq)
    ).all()
    assert actions == ["risk_model.created", "risk_model.activated", "risk_model.activated"]
    active = session.scalars(select(RiskModelVersion.version).where(RiskModelVersion.status == "active")).all()
    assert active == [1]


def test_fit_refuses_too_few_outcomes(company: Any, session: Session) -> None:
    with pytest.raises(Conflict) as info:
        service.fit_model(session, actor="admin:a", now=START, source=lambda s: synthetic_outcomes(150, seed=1))
    assert info.value.extra == {"required": 200, "available": 150, "missing": 50}
    assert "need 50 more completed outcomes" in info.value.detail
    with pytest.raises(Conflict, match="need 200 more"):
        service.fit_model(session, actor="admin:a", now=START, source=lambda s: [])  # no outcomes yet
    one_sided = [(f, False) for f, _ in synthetic_outcomes(300, seed=2)]
    with pytest.raises(Conflict, match="both churned and retained"):
        service.fit_model(session, actor="admin:a", now=START, source=lambda s: one_sided)
    assert session.scalar(select(RiskModelVersion.version).where(RiskModelVersion.status == "draft")) is None


def test_fit_stores_a_draft_with_its_figures(company: Any, session: Session) -> None:
    rows = synthetic_outcomes(4000, seed=5)
    fitted = service.fit_model(session, actor="admin:a", now=START, source=lambda s: rows, note="q3 outcomes")
    assert (fitted.status, fitted.source, fitted.version) == ("draft", "fit", 2)
    assert fitted.metrics is not None
    assert fitted.metrics["auc"] > 0.7 and fitted.metrics["baseline_version"] == 1
    assert fitted.metrics["rows"] == 4000 and fitted.metrics["test_rows"] == 1000
    assert service.active_model(session).version == 1  # not activated
    for name in ("satisfaction_deficit", "exfiltration_alert", "destination_competitor"):
        assert fitted.model.weights[name] == pytest.approx(TRUE_MODEL.weights[name], rel=0.5)
    audit_rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "risk_model.fitted")).all()
    assert len(audit_rows) == 1 and audit_rows[0].data["metrics"]["auc"] == fitted.metrics["auc"]
    active = service.activate(session, 2, actor="admin:a", now=START)
    assert active.status == "active" and service.active_model(session).version == 2


def test_concurrent_changes_leave_exactly_one_active_version(company: Any, db: Database) -> None:
    """Two admins PUT at once: both drafts are kept, numbered apart; then both activate theirs at once: one of them is
    active, the other and the first version retired."""
    import threading

    def together(work: Any, args: list[Any]) -> None:
        barrier = threading.Barrier(len(args))
        errors: list[BaseException] = []

        def run(arg: Any) -> None:
            try:
                with db.session() as s:
                    barrier.wait(timeout=10)
                    work(s, arg)
                    s.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(a,)) for a in args]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []

    def put(s: Session, intercept: float) -> None:
        service.put_model(s, {**rm.DEFAULT_MODEL.as_dict(), "intercept": intercept}, actor="admin:x", now=START)

    def activate(s: Session, version: int) -> None:
        service.activate(s, version, actor="admin:x", now=START)

    def statuses() -> list[tuple[int, str]]:
        with db.session() as s:
            v = RiskModelVersion
            return [(int(n), str(st)) for n, st in s.execute(select(v.version, v.status).order_by(v.version))]

    together(put, [-4.0, -3.0])
    assert statuses() == [(1, "active"), (2, "draft"), (3, "draft")]
    together(activate, [2, 3])
    after = statuses()
    assert after[0] == (1, "retired") and sorted(st for _, st in after[1:]) == ["active", "retired"]
