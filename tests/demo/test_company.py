"""The synthetic company is reproducible, valid for the directory, and shaped like a real sales organisation."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter

import pytest

from app.demo import company as synthetic
from app.directory.schemas import ClientBatch, EmployeeBatch

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def company() -> synthetic.Company:
    return synthetic.generate(seed=11, now=NOW)


@pytest.fixture(scope="module")
def large() -> tuple[synthetic.Company, float]:
    started = time.perf_counter()
    c = synthetic.generate(seed=5, clients=100_000, employees=2_500, leavers=500, now=NOW)
    return c, time.perf_counter() - started


def test_same_seed_same_company_other_seed_other_company(company: synthetic.Company) -> None:
    again = synthetic.generate(seed=11, now=NOW)
    assert again.employees == company.employees
    assert again.clients == company.clients
    assert again.leavers == company.leavers
    other = synthetic.generate(seed=12, now=NOW)
    assert other.clients != company.clients


def test_rows_validate_as_directory_batches(company: synthetic.Company) -> None:
    assert len(company.employees) == 60 and len(company.clients) == 3000
    company.employee_items()
    company.client_items()
    # The JSON form (what an HTTP client sends) validates as whole batches too.
    EmployeeBatch.model_validate({"items": [synthetic.jsonable(e) for e in company.employees]})
    for batch in synthetic.chunks(company.clients, 1000):
        ClientBatch.model_validate({"items": [synthetic.jsonable(c) for c in batch]})
    assert len({e["external_id"] for e in company.employees}) == 60
    assert len({c["external_id"] for c in company.clients}) == 3000


def test_hierarchy_is_a_tree_ceo_heads_managers_account_managers(company: synthetic.Company) -> None:
    managers = {e["external_id"]: e["manager"] for e in company.employees}
    roots = [eid for eid, m in managers.items() if m is None]
    assert len(roots) == 1
    depth: dict[str, int] = {}
    for eid in managers:
        seen, cur = set(), eid
        while cur is not None:
            assert cur not in seen, f"cycle through {cur}"
            assert cur in managers, f"unknown manager {cur}"
            seen.add(cur)
            cur = managers[cur]
        depth[eid] = len(seen)
    assert set(depth.values()) == {1, 2, 3, 4}
    titles = {e["external_id"]: e["title"] for e in company.employees}
    assert titles[roots[0]] == "Chief Executive Officer"
    assert all(titles[e].startswith("Head of Sales") for e, d in depth.items() if d == 2)
    assert all(titles[e].startswith("Sales Manager") for e, d in depth.items() if d == 3)
    owners = set(company.owner_counts())
    assert all(depth[o] == 4 for o in owners), "only account managers own clients"
    assert all(1 <= e["seniority"] <= 4 and 1 <= e["clearance"] <= 3 for e in company.employees)


def test_tiers_values_and_rules(company: synthetic.Company) -> None:
    n = len(company.clients)
    tiers = Counter(c["tier"] for c in company.clients)
    assert abs(tiers["strategic"] / n - 0.03) < 0.015
    assert abs(tiers["key"] / n - 0.12) < 0.03
    assert abs(tiers["standard"] / n - 0.55) < 0.05
    assert abs(tiers["prospect"] / n - 0.30) < 0.05
    people = {e["external_id"]: e for e in company.employees}
    minimum = {"strategic": 3, "key": 2, "standard": 1, "prospect": 1}
    for c in company.clients:
        owner = people[c["owner"]]
        assert owner["seniority"] >= minimum[c["tier"]] and owner["clearance"] >= c["sensitivity"]
        assert c["owner"] not in {m["employee"] for m in c["account_team"]}
        assert len({m["employee"] for m in c["account_team"]}) == len(c["account_team"])
        assert all(m["employee"] in people for m in c["account_team"])
        assert c["last_contact_at"].tzinfo == dt.UTC and c["last_contact_at"] <= NOW
        assert c["relationship_since"] <= NOW.date()
    median = {t: sorted(c["annual_value"] for c in company.clients if c["tier"] == t)[tiers[t] // 2] for t in tiers}
    assert median["strategic"] > median["key"] > median["standard"] > median["prospect"]
    sens = {t: sum(c["sensitivity"] for c in company.clients if c["tier"] == t) / tiers[t] for t in tiers}
    assert sens["strategic"] > sens["standard"]
    assert sum(1 for c in company.clients if c["account_team"]) > n * 0.1
    assert Counter(c["region"] for c in company.clients).keys() <= set(synthetic.REGIONS)
    assert Counter(c["industry"] for c in company.clients).keys() <= set(synthetic.INDUSTRIES)


def test_capacity_fits_with_headroom_and_some_people_full(company: synthetic.Company) -> None:
    loads = company.loads()
    people = {e["external_id"]: e for e in company.employees}
    assert all(loads[o] <= people[o]["capacity"] for o in loads), "nobody starts over capacity"
    ratio = sum(e["capacity"] for e in company.employees) / sum(loads.values())
    assert 1.2 <= ratio <= 1.45, ratio
    full = [o for o in loads if people[o]["capacity"] - loads[o] < 0.5]
    assert len(full) >= 2


def test_chinese_and_english_names_contacts_and_locales(company: synthetic.Company) -> None:
    names = [c["name"] for c in company.clients]
    assert any(CJK.search(n) and n.endswith("公司") for n in names)
    assert any(n.isascii() for n in names)
    assert len(set(names)) > 0.99 * len(names)
    locales = Counter(ct["locale"] for c in company.clients for ct in c["contacts"])
    assert locales.keys() == {"zh-CN", "en"}
    assert all(sum(ct["primary"] for ct in c["contacts"]) == 1 for c in company.clients)
    channels = Counter(ct["preferred_channel"] for c in company.clients for ct in c["contacts"])
    assert channels.most_common(1)[0][0] == "email" and len(channels) >= 3
    people = [e["name"] for e in company.employees]
    assert any(CJK.search(n) for n in people) and any(n.isascii() for n in people)
    assert all(e["email"].isascii() for e in company.employees)


def test_leavers_are_account_managers_who_own_clients(company: synthetic.Company) -> None:
    counts = company.owner_counts()
    assert len(company.leavers) == 1 and counts[company.leavers[0]] > 0
    many = synthetic.generate(seed=11, now=NOW, leavers=5)
    assert len(set(many.leavers)) == 5 and all(many.owner_counts()[x] > 0 for x in many.leavers)


def test_large_company_is_skewed_and_fast(large: tuple[synthetic.Company, float]) -> None:
    c, seconds = large
    counts = c.owner_counts()
    assert len(c.clients) == 100_000 and len(c.employees) == 2_500 and len(set(c.leavers)) == 500
    assert counts.most_common(1)[0][1] >= 1000, counts.most_common(3)
    median = sorted(counts.values())[len(counts) // 2]
    assert median < 100
    assert max(e["capacity"] for e in c.employees) <= 10_000
    assert seconds < 30, f"100k clients took {seconds:.1f} s"


def test_skew_is_what_makes_the_huge_books() -> None:
    plain = synthetic.generate(seed=3, clients=20_000, employees=500, owner_skew=False, now=NOW).owner_counts()
    skewed = synthetic.generate(seed=3, clients=20_000, employees=500, now=NOW).owner_counts()
    mean = 20_000 / len(plain)
    assert plain.most_common(1)[0][1] < 8 * mean  # log-normal spread only
    assert skewed.most_common(1)[0][1] > plain.most_common(1)[0][1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"employees": 3},
        {"employees": 10, "leavers": 50},
        {"now": dt.datetime(2026, 1, 1)},  # naive
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        synthetic.generate(**kwargs)  # type: ignore[arg-type]


def test_small_company_still_valid() -> None:
    c = synthetic.generate(seed=1, employees=4, clients=50, now=NOW)
    assert len(c.employees) == 4 and len(c.clients) == 50 and len(c.leavers) == 1
    c.employee_items()
    c.client_items()
