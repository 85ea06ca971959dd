"""The retention report on a crafted history, every number checked in JSON and CSV; outcomes feed the risk fit."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from app.core.db import Database, transaction
from app.directory.models import Client, Employee
from app.risk.model import Factors
from app.transfer import retention
from app.transfer.followups.models import FollowUp
from app.transfer.models import Handover, HandoverItem
from app.transfer.retention import csv_columns
from tests.conftest import START
from tests.support.outcomes import synthetic_outcomes

URL = "/v1/reports/retention"
EFF_A = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
EFF_B = dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC)
WINDOW = {"from": "2026-05-01T00:00:00Z", "to": "2026-08-01T00:00:00Z"}
EVIL = '=HYPERLINK("http://x")'


def _handover(s: Session, leaver: str, status: str, effective_at: dt.datetime) -> int:
    h = Handover(
        leaver_id=leaver,
        manager_id="m1",
        reason="resignation",
        status=status,
        effective_at=effective_at,
        source="api",
        candidate_pool={},
        version=1,
        created_by="test",
        created_at=effective_at - dt.timedelta(days=14),
        updated_at=effective_at,
    )
    s.add(h)
    s.flush()
    return h.id


def _item(
    s: Session,
    hid: int,
    client: str,
    *,
    to: str | None,
    successor: str | None = None,
    interim: str | None = None,
    band: str | None = None,
    score: float | None = None,
    status: str = "transferred",
    factors: dict[str, Any] | None = None,
) -> int:
    item = HandoverItem(
        handover_id=hid,
        client_id=client,
        previous_owner_id="e0",
        successor_id=successor if successor is not None else (None if interim else to),
        interim_owner_id=interim,
        status=status,
        needs_attention=False,
        risk_score=score,
        risk_band=band,
        risk_factors={"factors": factors} if factors else {},
        reasons={},
        manual=False,
        forced=False,
        checklist={},
        transferred_to_id=to,
        transferred_at=None,
        version=1,
        updated_at=START,
    )
    s.add(item)
    s.flush()
    return item.id


def _follow_up(
    s: Session,
    hid: int,
    item: int,
    client: str,
    assignee: str,
    kind: str,
    eff: dt.datetime,
    *,
    done_after: float | None = None,
    outcome: str | None = None,
    contact_after: float | None = None,
    satisfaction: float | None = None,
    before: float | None = None,
    status: str | None = None,
) -> None:
    s.add(
        FollowUp(
            handover_id=hid,
            item_id=item,
            client_id=client,
            assignee_id=assignee,
            kind=kind,
            due_at=eff + dt.timedelta(days={"first_contact": 7, "check_in": 30, "satisfaction_survey": 90}[kind]),
            status=status or ("completed" if done_after is not None else "open"),
            outcome=outcome,
            satisfaction=satisfaction,
            satisfaction_before=before,
            first_contact_at=eff + dt.timedelta(days=contact_after) if contact_after is not None else None,
            completed_at=eff + dt.timedelta(days=done_after) if done_after is not None else None,
            created_at=eff - dt.timedelta(days=14),
        )
    )


@pytest.fixture
def history(client: TestClient, company: Any, db: Database) -> None:
    """Two handovers in the window (A completed, B executed), one before it, one undone in it.

    A (effective 2026-06-01): c0 → e1 (high, 70): retained at 5 d, at_risk at 40 d, churned at 100 d (survey 3);
    c1 → e2 (low, 10): retained at 10 d; c2 → x1 (medium, 40): at_risk at 31 d; c3 → interim m1 (critical, 90):
    nothing; c4 went elsewhere (closed, not handed over). B (2026-07-01): c5 → e1 (high, 60): retained at 8 d,
    survey retained at 95 d (9); c6 → e2 (unscored): churned at 3 d.
    """
    with transaction(db) as s:
        s.execute(update(Employee).where(Employee.external_id == "m2").values(name=EVIL))
        a = _handover(s, "e0", "completed", EFF_A)
        b = _handover(s, "e3", "executed", EFF_B)
        before = _handover(s, "e4", "completed", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        undone = _handover(s, "e2", "undone", EFF_A)

        i = _item(s, a, "c0", to="e1", band="high", score=70)
        _follow_up(
            s, a, i, "c0", "e1", "first_contact", EFF_A, done_after=5, outcome="retained", contact_after=2, before=8
        )
        _follow_up(s, a, i, "c0", "e1", "check_in", EFF_A, done_after=40, outcome="at_risk", before=8)
        _follow_up(
            s,
            a,
            i,
            "c0",
            "e1",
            "satisfaction_survey",
            EFF_A,
            done_after=100,
            outcome="churned",
            satisfaction=3,
            before=8,
        )
        i = _item(s, a, "c1", to="e2", band="low", score=10)
        _follow_up(
            s, a, i, "c1", "e2", "first_contact", EFF_A, done_after=10, outcome="retained", contact_after=1.5, before=6
        )
        _follow_up(s, a, i, "c1", "e2", "check_in", EFF_A, before=6)
        _follow_up(s, a, i, "c1", "e2", "satisfaction_survey", EFF_A, before=6)
        i = _item(s, a, "c2", to="x1", band="medium", score=40)
        _follow_up(s, a, i, "c2", "x1", "first_contact", EFF_A, done_after=31, outcome="at_risk", contact_after=30)
        _item(s, a, "c3", to="m1", interim="m1", band="critical", score=90)
        i = _item(s, a, "c4", to=None, successor="e4", band="low", score=5, status="closed")
        _follow_up(s, a, i, "c4", "e4", "first_contact", EFF_A, done_after=1, outcome="churned", contact_after=1)

        i = _item(s, b, "c5", to="e1", band="high", score=60)
        _follow_up(
            s, b, i, "c5", "e1", "first_contact", EFF_B, done_after=8, outcome="retained", contact_after=7, before=7
        )
        _follow_up(
            s,
            b,
            i,
            "c5",
            "e1",
            "satisfaction_survey",
            EFF_B,
            done_after=95,
            outcome="retained",
            satisfaction=9,
            before=7,
        )
        i = _item(s, b, "c6", to="e2")
        _follow_up(
            s, b, i, "c6", "e2", "first_contact", EFF_B, done_after=3, outcome="churned", contact_after=3, before=5
        )
        i = _item(s, b, "c7", to="e1", band="low", score=20, status="reverted")  # not handed over after all
        _follow_up(s, b, i, "c7", "e1", "first_contact", EFF_B, status="cancelled")

        for hid in (before, undone):
            i = _item(s, hid, "c7", to="e1", band="low", score=20)
            _follow_up(s, hid, i, "c7", "e1", "first_contact", EFF_A, done_after=2, outcome="churned", contact_after=1)


def horizons(**by_days: tuple[int, int, int, int, int, float | None]) -> list[dict[str, Any]]:
    return [
        {"days": int(d[1:]), "retained": r, "at_risk": a, "churned": c, "unknown": u, "reached": n, "retention_rate": q}
        for d, (r, a, c, u, n, q) in by_days.items()
    ]


def band(name: str, clients: int, with_outcome: int, churned: int, rate: float | None, mean: float | None) -> Any:
    return {
        "band": name,
        "clients": clients,
        "with_outcome": with_outcome,
        "churned": churned,
        "churn_rate": rate,
        "mean_predicted": mean,
    }


TOTAL = {
    "key": None,
    "name": None,
    "handed_over": 6,
    "horizons": horizons(d30=(3, 0, 1, 2, 6, 0.75), d90=(2, 2, 1, 1, 6, 0.4), d180=(2, 1, 2, 1, 0, 0.4)),
    "median_days_to_first_contact": 3.0,  # 1.5, 2, 3, 7, 30
    "first_contacts": 5,
    "satisfaction_before": 6.5,  # 8, 6, 7, 5
    "satisfaction_before_n": 4,
    "satisfaction_after": 6.0,  # 3, 9
    "satisfaction_after_n": 2,
    "calibration": [
        band("low", 1, 1, 0, 0.0, 0.1),
        band("medium", 1, 1, 0, 0.0, 0.4),
        band("high", 2, 2, 1, 0.5, 0.65),
        band("critical", 1, 0, 0, None, 0.9),
        band("unscored", 1, 1, 1, 1.0, None),
    ],
}
BY_TEAM = [
    {
        "key": "ceo",
        "name": "CEO",
        "handed_over": 1,
        "horizons": horizons(d30=(0, 0, 0, 1, 1, None), d90=(0, 0, 0, 1, 1, None), d180=(0, 0, 0, 1, 0, None)),
        "median_days_to_first_contact": None,
        "first_contacts": 0,
        "satisfaction_before": None,
        "satisfaction_before_n": 0,
        "satisfaction_after": None,
        "satisfaction_after_n": 0,
        "calibration": [band("critical", 1, 0, 0, None, 0.9)],
    },
    {
        "key": "m1",
        "name": "Mia Manager",
        "handed_over": 4,
        "horizons": horizons(d30=(3, 0, 1, 0, 4, 0.75), d90=(2, 1, 1, 0, 4, 0.5), d180=(2, 0, 2, 0, 0, 0.5)),
        "median_days_to_first_contact": 2.5,  # 1.5, 2, 3, 7
        "first_contacts": 4,
        "satisfaction_before": 6.5,
        "satisfaction_before_n": 4,
        "satisfaction_after": 6.0,
        "satisfaction_after_n": 2,
        "calibration": [
            band("low", 1, 1, 0, 0.0, 0.1),
            band("high", 2, 2, 1, 0.5, 0.65),
            band("unscored", 1, 1, 1, 1.0, None),
        ],
    },
    {
        "key": "m2",
        "name": EVIL,
        "handed_over": 1,
        "horizons": horizons(d30=(0, 0, 0, 1, 1, None), d90=(0, 1, 0, 0, 1, 0.0), d180=(0, 1, 0, 0, 0, 0.0)),
        "median_days_to_first_contact": 30.0,
        "first_contacts": 1,
        "satisfaction_before": None,
        "satisfaction_before_n": 0,
        "satisfaction_after": None,
        "satisfaction_after_n": 0,
        "calibration": [band("medium", 1, 1, 0, 0.0, 0.4)],
    },
]


def test_json_numbers_by_team(client: TestClient, auth: Any, history: None) -> None:
    r = client.get(URL, params=WINDOW, headers=auth("auditor"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json") and r.headers["vary"] == "Accept"
    body = r.json()
    assert body["from"] == "2026-05-01T00:00:00Z" and body["to"] == "2026-08-01T00:00:00Z"
    assert body["as_of"] == "2026-11-02T09:00:00Z" and body["group_by"] == "team"
    assert body["total"] == TOTAL
    assert body["groups"] == BY_TEAM


def test_other_groupings(client: TestClient, auth: Any, history: None) -> None:
    def groups(by: str) -> dict[str, Any]:
        r = client.get(URL, params={**WINDOW, "group_by": by}, headers=auth())
        assert r.status_code == 200, r.text
        return {g["key"]: g for g in r.json()["groups"]}

    tiers = groups("tier")
    assert list(tiers) == ["strategic", "key", "standard", "prospect"]
    assert [tiers[t]["handed_over"] for t in tiers] == [1, 2, 2, 1]  # c0; c1 c5; c2 c6; c3
    assert tiers["key"]["horizons"][2] == horizons(d180=(2, 0, 0, 0, 0, 1.0))[0]
    assert tiers["standard"]["horizons"][1] == horizons(d90=(0, 1, 1, 0, 2, 0.0))[0]
    assert tiers["key"]["median_days_to_first_contact"] == 4.25  # 1.5 and 7

    bands = groups("risk_band")
    assert list(bands) == ["low", "medium", "high", "critical", "unscored"]
    assert bands["high"]["calibration"] == [band("high", 2, 2, 1, 0.5, 0.65)]
    assert bands["high"]["satisfaction_after"] == 6.0 and bands["high"]["satisfaction_before"] == 7.5

    people = groups("successor")
    assert list(people) == ["e1", "e2", "m1", "x1"]
    assert people["e1"]["name"] == "王芳" and people["e1"]["handed_over"] == 2
    assert people["e2"]["horizons"][0] == horizons(d30=(1, 0, 1, 0, 2, 0.5))[0]

    r = client.get(URL, params={**WINDOW, "group_by": "region"}, headers=auth())
    assert r.status_code == 422


def test_csv_one_row_per_group_matching_the_json(client: TestClient, auth: Any, history: None) -> None:
    r = client.get(URL, params=WINDOW, headers=auth() | {"Accept": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="retention-by-team.csv"'
    assert r.content.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0] == csv_columns() and len(table) == 1 + len(BY_TEAM)
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    for row, group in zip(rows, BY_TEAM, strict=True):
        expected: dict[str, Any] = {"group_by": "team", "group": group["key"], "name": group["name"]}
        expected["handed_over"] = group["handed_over"]
        for h in group["horizons"]:
            for what in ("retained", "at_risk", "churned", "unknown", "reached"):
                expected[f"{what}_{h['days']}d"] = h[what]
            expected[f"retention_rate_{h['days']}d"] = h["retention_rate"]
        for key in (
            "median_days_to_first_contact",
            "first_contacts",
            "satisfaction_before",
            "satisfaction_before_n",
            "satisfaction_after",
            "satisfaction_after_n",
        ):
            expected[key] = group[key]
        bands = {b["band"]: b for b in group["calibration"]}
        for name in ("low", "medium", "high", "critical", "unscored"):
            b = bands.get(name, {"clients": 0, "with_outcome": 0, "churned": 0, "churn_rate": None})
            for what in ("clients", "with_outcome", "churned", "churn_rate"):
                expected[f"{name}_{what}"] = b[what]
        if expected["name"] == EVIL:
            expected["name"] = "'" + EVIL  # a spreadsheet would run it: neutralised
        assert row == {k: "" if v is None else str(v) for k, v in expected.items()}
    assert rows[1]["retained_30d"] == "3" and rows[1]["median_days_to_first_contact"] == "2.5"
    assert rows[1]["high_churn_rate"] == "0.5" and rows[0]["critical_churn_rate"] == ""


def test_negotiation_and_parameters(client: TestClient, auth: Any, history: None) -> None:
    for accept in ("*/*", "application/*", "application/json, text/csv;q=0.5"):
        r = client.get(URL, params=WINDOW, headers=auth() | {"Accept": accept})
        assert r.headers["content-type"].startswith("application/json"), accept
    for accept in ("text/*", "text/csv, application/json;q=0.2"):
        r = client.get(URL, params=WINDOW, headers=auth() | {"Accept": accept})
        assert r.headers["content-type"].startswith("text/csv"), accept
    r = client.get(URL, params=WINDOW, headers=auth() | {"Accept": "text/html"})
    assert r.status_code == 406 and r.headers["content-type"] == "application/problem+json"
    for fmt, media in (("csv", "text/csv"), ("json", "application/json")):  # `format` wins over Accept
        r = client.get(URL, params={**WINDOW, "format": fmt}, headers=auth() | {"Accept": "text/html"})
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), fmt
    assert client.get(URL, params={**WINDOW, "format": "html"}, headers=auth()).status_code == 422
    r = client.get(URL, params={"from": "2026-08-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, headers=auth())
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "from"]
    assert client.get(URL, params={"from": "2026-08-01T00:00:00"}, headers=auth()).status_code == 422
    # The default window is the 365 days up to now: both handovers and the January one.
    r = client.get(URL, headers=auth())
    assert r.status_code == 200 and r.json()["total"]["handed_over"] == 7
    # Nothing in a window: zeros, not errors.
    r = client.get(URL, params={"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"}, headers=auth())
    assert r.json()["groups"] == [] and r.json()["total"]["handed_over"] == 0
    assert r.json()["total"]["median_days_to_first_contact"] is None


def test_reach(client: TestClient, auth: Any, history: None) -> None:
    r = client.get(URL, params=WINDOW, headers=auth("account_manager", emp="e1"))
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    # m2 sees no handover of theirs, only the client their report x1 received.
    r = client.get(URL, params=WINDOW, headers=auth("manager", emp="m2"))
    assert r.status_code == 200 and r.json()["total"]["handed_over"] == 1 and r.json()["groups"][0]["key"] == "m2"
    # m1 is the leavers' manager: everything.
    assert client.get(URL, params=WINDOW, headers=auth("manager", emp="m1")).json()["total"] == TOTAL
    assert client.get(URL, params=WINDOW).status_code == 401


# ---- outcomes feed the risk fit -------------------------------------------------------------------


def test_outcome_rows_take_each_items_latest_outcome_with_its_stored_factors(db: Database, history: None) -> None:
    with transaction(db) as s:
        assert retention.outcome_rows(s) == []  # the crafted items stored no factors: nothing to learn from
    factors = Factors(tier="key", annual_value=1000.0, satisfaction=4.0, open_issues=2)
    with transaction(db) as s:
        hid = _handover(s, "e1", "completed", EFF_B)
        i = _item(s, hid, "c0", to="e2", band="low", score=10, factors=factors.as_dict())
        _follow_up(s, hid, i, "c0", "e2", "first_contact", EFF_B, done_after=2, outcome="churned", contact_after=1)
        _follow_up(s, hid, i, "c0", "e2", "check_in", EFF_B, done_after=30, outcome="retained")
        _follow_up(s, hid, i, "c0", "e2", "satisfaction_survey", EFF_B)  # open: not an outcome
        i = _item(s, hid, "c1", to="e2", factors={**factors.as_dict(), "tier": "platinum"})  # unparsable: skipped
        _follow_up(s, hid, i, "c1", "e2", "first_contact", EFF_B, done_after=2, outcome="churned", contact_after=1)
    with transaction(db) as s:
        assert retention.outcome_rows(s) == [(factors, False)]


def test_enough_outcomes_let_the_model_be_fitted(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    assert client.post("/v1/risk/model/fit", headers=auth()).status_code == 409
    outcomes = synthetic_outcomes(300, seed=5)
    with transaction(db) as s:
        s.execute(
            insert(Client),
            [
                {
                    "external_id": f"fit-{n}",
                    "name": f"Fit {n}",
                    "tier": f.tier,
                    "annual_value": Decimal(str(f.annual_value)),
                    "sensitivity": 1,
                    "owner_id": "e1",
                    "status": "active",
                    "open_issues": 0,
                    "created_at": START,
                    "updated_at": START,
                }
                for n, (f, _) in enumerate(outcomes)
            ],
        )
        hid = _handover(s, "e0", "completed", EFF_A)
        for n, (f, churned) in enumerate(outcomes):
            i = _item(s, hid, f"fit-{n}", to="e1", factors=f.as_dict())
            _follow_up(
                s,
                hid,
                i,
                f"fit-{n}",
                "e1",
                "check_in",
                EFF_A,
                done_after=30,
                outcome="churned" if churned else "retained",
            )
    with transaction(db) as s:
        rows = retention.outcome_rows(s)
    assert len(rows) == 300 and sorted(rows, key=repr) == sorted(outcomes, key=repr)
    r = client.post("/v1/risk/model/fit", json={"seed": 1}, headers=auth())
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "draft" and r.json()["source"] == "fit"
