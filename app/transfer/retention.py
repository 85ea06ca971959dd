"""The retention report: did handovers keep their clients? Outcomes at 30/90/180 days, first contact, satisfaction,
and how well the predicted risk band matched what happened.

One query reads every handed-over item in the window with its follow-ups (a row per follow-up); the figures
are computed in Python over those rows (medians and "latest outcome by a date" are not portable SQL).
No FastAPI here: the router negotiates JSON or CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.orm import Session, aliased

from app.core.auth import Principal
from app.core.errors import RoleNotAllowed
from app.directory import service as directory
from app.directory.models import Client, Employee
from app.risk import model as rm
from app.risk import service as risk
from app.risk.model import BANDS
from app.transfer import visibility
from app.transfer.followups.models import FollowUp
from app.transfer.followups.schemas import (
    BandCalibration,
    GroupBy,
    HorizonOutcomes,
    RetentionGroup,
    RetentionReport,
)
from app.transfer.models import Handover, HandoverItem
from app.transfer.report import neutralise

HORIZONS = (30, 90, 180)
OUTCOMES = ("retained", "at_risk", "churned")
UNSCORED = "unscored"
BAND_ORDER = (*BANDS, UNSCORED)
TIER_ORDER = ("strategic", "key", "standard", "prospect")
# Handovers whose clients actually moved; items that went to someone (not closed elsewhere, not reverted).
HANDED_OVER = ("executed", "completed")
ITEM_STATUSES = ("transferred", "confirmed", "closed")


@dataclass
class _Outcome:
    completed_at: dt.datetime
    id: int
    outcome: str


@dataclass
class _Client:
    """One handed-over item with what its follow-ups recorded."""

    effective_at: dt.datetime
    team: str | None
    successor: str
    tier: str
    band: str
    score: float | None
    outcomes: list[_Outcome] = field(default_factory=list)
    first_contact_at: dt.datetime | None = None
    satisfaction_before: float | None = None
    satisfaction_after: float | None = None

    def outcome_at(self, days: int) -> str | None:
        """The latest outcome recorded no later than `days` after the effective time."""
        limit = self.effective_at + dt.timedelta(days=days)
        known = [o for o in self.outcomes if o.completed_at <= limit]
        return max(known, key=lambda o: (o.completed_at, o.id)).outcome if known else None


def _scope(session: Session, principal: Principal, receiver: ColumnElement[Any]) -> ColumnElement[bool]:
    """Unrestricted roles: everything. A manager: handovers they manage, and clients their reports received.

    Account managers get 403: the report compares colleagues, and their own follow-ups are in /v1/follow-ups.
    """
    if principal.unrestricted:
        return true()
    if principal.role != "manager" or principal.employee is None:
        raise RoleNotAllowed("The retention report is for managers, hr, auditors and admins.")
    # Read once: the handover rule has its own subtree CTE, and one statement cannot hold two of that name.
    team = list(session.scalars(directory.subtree(principal.employee)))
    return or_(visibility.handover_management(principal), receiver.in_(team))


def _load(session: Session, principal: Principal, start: dt.datetime, end: dt.datetime) -> dict[int, _Client]:
    i, h, f = HandoverItem, Handover, FollowUp
    receiver = func.coalesce(i.transferred_to_id, i.successor_id, i.interim_owner_id)
    owner = aliased(Employee)
    stmt = (
        select(
            i.id,
            h.effective_at,
            receiver,
            owner.manager_id,
            Client.tier,
            i.risk_band,
            i.risk_score,
            f.id,
            f.kind,
            f.status,
            f.outcome,
            f.satisfaction,
            f.satisfaction_before,
            f.first_contact_at,
            f.completed_at,
        )
        .join(h, h.id == i.handover_id)
        .join(Client, Client.external_id == i.client_id)
        .outerjoin(owner, owner.external_id == receiver)
        .outerjoin(f, f.item_id == i.id)
        .where(
            h.status.in_(HANDED_OVER),
            h.effective_at >= start,
            h.effective_at < end,
            i.status.in_(ITEM_STATUSES),
            i.transferred_to_id.is_not(None),
            _scope(session, principal, receiver),
        )
        .order_by(i.id, f.id)
    )
    clients: dict[int, _Client] = {}
    for row in session.execute(stmt):
        (item_id, effective_at, to, team, tier, band, score, fid, kind, status, outcome, sat, before, fc, done) = row
        c = clients.get(item_id)
        if c is None:
            c = clients[item_id] = _Client(
                effective_at=effective_at,
                team=team,
                successor=to,
                tier=tier,
                band=band or UNSCORED,
                score=None if score is None else float(score),
            )
        if fid is None:
            continue
        if before is not None and c.satisfaction_before is None:
            c.satisfaction_before = float(before)
        if status != "completed" or done is None:
            continue
        if outcome:
            c.outcomes.append(_Outcome(done, fid, outcome))
        if fc is not None and (c.first_contact_at is None or fc < c.first_contact_at):
            c.first_contact_at = fc
        if kind == "satisfaction_survey" and sat is not None:
            c.satisfaction_after = float(sat)
    return clients


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _group(key: str | None, name: str | None, members: Sequence[_Client], now: dt.datetime) -> RetentionGroup:
    horizons = []
    for days in HORIZONS:
        counts = dict.fromkeys((*OUTCOMES, "unknown"), 0)
        for c in members:
            counts[c.outcome_at(days) or "unknown"] += 1
        known = sum(counts[o] for o in OUTCOMES)
        horizons.append(
            HorizonOutcomes(
                days=days,
                retained=counts["retained"],
                at_risk=counts["at_risk"],
                churned=counts["churned"],
                unknown=counts["unknown"],
                reached=sum(1 for c in members if c.effective_at + dt.timedelta(days=days) <= now),
                retention_rate=_rate(counts["retained"], known),
            )
        )
    contact_days = [
        (c.first_contact_at - c.effective_at).total_seconds() / 86_400 for c in members if c.first_contact_at
    ]
    before = [c.satisfaction_before for c in members if c.satisfaction_before is not None]
    after = [c.satisfaction_after for c in members if c.satisfaction_after is not None]
    by_band: dict[str, list[_Client]] = defaultdict(list)
    for c in members:
        by_band[c.band].append(c)
    calibration = []
    for band in BAND_ORDER:
        mine = by_band.get(band)
        if not mine:
            continue
        final = [c.outcome_at(HORIZONS[-1]) for c in mine]
        with_outcome = sum(1 for o in final if o is not None)
        churned = sum(1 for o in final if o == "churned")
        scores = [c.score / 100 for c in mine if c.score is not None]
        calibration.append(
            BandCalibration(
                band=band,
                clients=len(mine),
                with_outcome=with_outcome,
                churned=churned,
                churn_rate=_rate(churned, with_outcome),
                mean_predicted=round(statistics.fmean(scores), 4) if scores else None,
            )
        )
    return RetentionGroup(
        key=key,
        name=name,
        handed_over=len(members),
        horizons=horizons,
        median_days_to_first_contact=round(statistics.median(contact_days), 2) if contact_days else None,
        first_contacts=len(contact_days),
        satisfaction_before=_mean(before),
        satisfaction_before_n=len(before),
        satisfaction_after=_mean(after),
        satisfaction_after_n=len(after),
        calibration=calibration,
    )


_KEYS: dict[str, Callable[[_Client], str | None]] = {
    "team": lambda c: c.team,
    "successor": lambda c: c.successor,
    "tier": lambda c: c.tier,
    "risk_band": lambda c: c.band,
}


def _order(group_by: str) -> Callable[[str | None], tuple[int, str]]:
    """Tiers and bands in their natural order; people by id; the group without a manager last."""
    fixed = {"tier": TIER_ORDER, "risk_band": BAND_ORDER}.get(group_by, ())

    def key(value: str | None) -> tuple[int, str]:
        if value is None:
            return (len(fixed) + 1, "")
        return (fixed.index(value) if value in fixed else len(fixed), value)

    return key


def build(
    session: Session,
    principal: Principal,
    *,
    start: dt.datetime,
    end: dt.datetime,
    group_by: GroupBy,
    now: dt.datetime,
) -> RetentionReport:
    """The report over executed or completed handovers effective in [start, end) that the caller may see."""
    clients = list(_load(session, principal, start, end).values())
    groups: dict[str | None, list[_Client]] = defaultdict(list)
    for c in clients:
        groups[_KEYS[group_by](c)].append(c)
    names: dict[str | None, str | None] = {k: k for k in groups}
    if group_by in ("team", "successor"):
        ids = [k for k in groups if k is not None]
        found = {
            eid: name
            for eid, name in session.execute(
                select(Employee.external_id, Employee.name).where(Employee.external_id.in_(ids))
            )
        }
        names = {k: (found.get(k, k) if k is not None else None) for k in groups}
    return RetentionReport(
        from_=start,
        to=end,
        as_of=now,
        group_by=group_by,
        total=_group(None, None, clients, now),
        groups=[_group(k, names[k], groups[k], now) for k in sorted(groups, key=_order(group_by))],
    )


# ---- CSV ----------------------------------------------------------------------------------------


def csv_columns() -> list[str]:
    columns = ["group_by", "group", "name", "handed_over"]
    for days in HORIZONS:
        columns += [f"{o}_{days}d" for o in (*OUTCOMES, "unknown", "reached")] + [f"retention_rate_{days}d"]
    columns += [
        "median_days_to_first_contact",
        "first_contacts",
        "satisfaction_before",
        "satisfaction_before_n",
        "satisfaction_after",
        "satisfaction_after_n",
    ]
    for band in BAND_ORDER:
        columns += [f"{band}_clients", f"{band}_with_outcome", f"{band}_churned", f"{band}_churn_rate"]
    return columns


def _csv_row(group_by: str, g: RetentionGroup) -> Iterable[Any]:
    yield from (group_by, g.key, g.name, g.handed_over)
    for h in g.horizons:
        yield from (h.retained, h.at_risk, h.churned, h.unknown, h.reached, h.retention_rate)
    yield from (
        g.median_days_to_first_contact,
        g.first_contacts,
        g.satisfaction_before,
        g.satisfaction_before_n,
        g.satisfaction_after,
        g.satisfaction_after_n,
    )
    bands = {b.band: b for b in g.calibration}
    for band in BAND_ORDER:
        b = bands.get(band)
        yield from (b.clients, b.with_outcome, b.churned, b.churn_rate) if b else (0, 0, 0, None)


def to_csv(report: RetentionReport) -> str:
    """One row per group after a header (RFC 4180 quoting, CRLF); text cells cannot run as formulas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(csv_columns())
    for g in report.groups:
        writer.writerow(["" if v is None else neutralise(v) for v in _csv_row(report.group_by, g)])
    return buffer.getvalue()


# ---- outcomes for the risk model to learn from (bound as risk's OutcomeSource in app.main) -------


def outcome_rows(session: Session) -> list[tuple[rm.Factors, bool]]:
    """Completed follow-up outcomes with the factors stored when the item was scored; `churned` is the label.

    One row per handover item, its latest completed outcome: an item's three follow-ups describe one client,
    and counting each would weigh that client three times. Items without stored factors (planned before
    scoring, or scored by a model whose factors no longer parse) are skipped.
    """
    f, item = FollowUp, HandoverItem
    latest = (
        select(
            f.item_id,
            f.outcome,
            func.row_number().over(partition_by=f.item_id, order_by=(f.completed_at.desc(), f.id.desc())).label("n"),
        )
        .where(f.status == "completed", f.outcome.is_not(None))
        .subquery()
    )
    rows = session.execute(
        select(latest.c.outcome, item.risk_factors)
        .join(item, item.id == latest.c.item_id)
        .where(latest.c.n == 1)
        .order_by(latest.c.item_id)
    )
    out: list[tuple[rm.Factors, bool]] = []
    for outcome, stored in rows:
        factors = (stored or {}).get("factors") if isinstance(stored, dict) else None
        if not isinstance(factors, dict):
            continue
        try:
            out.append((risk.factors_from_json(factors), outcome == "churned"))
        except (TypeError, ValueError):
            continue
    return out
