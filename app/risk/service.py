"""Risk logic over the database: the factors of many clients in a few queries, scores, model versions.

Service functions take a Session, flush at most, and never commit (the request or the caller does).
`score` is what planning calls for every client of a leaver (or of a whole reorganisation): one query
reads every client with its account-team and contact counts and its dates already turned into numbers
(the ids travel as one JSON parameter, however many there are), two more read the owners' open alerts
and open handovers, and one matrix product scores them all.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Date,
    Float,
    String,
    cast,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from app.access import events as access_events
from app.audit import service as audit
from app.book import service as book
from app.core.auth import Principal
from app.core.bulk import among
from app.core.db import UTCDateTime
from app.core.errors import Conflict, NotFound
from app.directory import service as directory
from app.directory.models import AccountTeamMember, Client, ClientContact, Employee
from app.risk import fitting
from app.risk import model as rm
from app.risk.errors import (
    NoActiveRiskModel,
    NotEnoughOutcomes,
    OutcomesNotFittable,
    RiskModelInvalid,
    RiskModelNotActivatable,
    RiskModelVersionNotFound,
    UnknownClients,
    UnknownRiskModelVersion,
)
from app.risk.models import RiskModelVersion

# Any constant works; it only has to be the same for every writer of model versions.
MODEL_LOCK_KEY = 0x5249534B  # "RISK"
MIN_FIT_ROWS = 200
DEFAULT_REASON = "resignation"  # "if the owner left today" without an open handover: the common case
RENEWAL_HORIZON = dt.timedelta(days=90)
_DAYS_PER_YEAR = 365.25


# ---- model versions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """A stored model version, or the built-in default (stored=False) while the table is empty."""

    version: int
    model: rm.RiskModel
    status: str
    source: str
    metrics: dict[str, Any] | None
    note: str | None
    created_by: str
    created_at: dt.datetime | None
    activated_by: str | None
    activated_at: dt.datetime | None
    retired_at: dt.datetime | None
    stored: bool = True


def _version_of(row: RiskModelVersion) -> ModelVersion:
    """A stored version as stored: one saved before the weight bound still reads (`activate` checks the bound)."""
    return ModelVersion(
        version=row.version,
        model=rm.validate_model(row.weights, bounded=False),
        status=row.status,
        source=row.source,
        metrics=row.metrics,
        note=row.note,
        created_by=row.created_by,
        created_at=row.created_at,
        activated_by=row.activated_by,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
    )


def _builtin_default() -> ModelVersion:
    """The migration seeds version 1; if the table was emptied, reading still works and never writes."""
    return ModelVersion(
        version=1,
        model=rm.DEFAULT_MODEL,
        status="active",
        source="manual",
        metrics=None,
        note="hand-set default weights",
        created_by="system:default",
        created_at=None,
        activated_by=None,
        activated_at=None,
        retired_at=None,
        stored=False,
    )


def active_model(session: Session) -> ModelVersion:
    row = session.scalar(select(RiskModelVersion).where(RiskModelVersion.status == "active"))
    if row is not None:
        return _version_of(row)
    if session.scalar(select(func.count()).select_from(RiskModelVersion)):
        raise NoActiveRiskModel("No risk model version is active; activate one.")
    return _builtin_default()


def get_version(session: Session, version: int) -> ModelVersion:
    row = session.get(RiskModelVersion, version)
    if row is not None:
        return _version_of(row)
    if version == 1 and not session.scalar(select(func.count()).select_from(RiskModelVersion)):
        return _builtin_default()
    raise RiskModelVersionNotFound(f"No risk model version {version}.")


def list_versions(session: Session, *, limit: int, offset: int) -> list[ModelVersion]:
    """Newest first."""
    rows = list(
        session.scalars(select(RiskModelVersion).order_by(RiskModelVersion.version.desc()).limit(limit).offset(offset))
    )
    if not rows and offset == 0:
        return [_builtin_default()]
    return [_version_of(r) for r in rows]


def _lock(session: Session) -> None:
    """Serialise writers of versions; SQLite writer sessions already begin IMMEDIATE."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MODEL_LOCK_KEY})


def _next_version(session: Session, now: dt.datetime) -> int:
    """Under the lock: the next version number; an emptied table first gets the default back as version 1."""
    latest = session.scalar(select(func.max(RiskModelVersion.version)))
    if latest is None:
        session.add(
            RiskModelVersion(
                version=1,
                weights=rm.DEFAULT_MODEL.as_dict(),
                status="active",
                source="manual",
                note="hand-set default weights",
                created_by="system:default",
                created_at=now,
                activated_by="system:default",
                activated_at=now,
            )
        )
        session.flush()
        return 2
    return int(latest) + 1


def _model_errors(exc: rm.ModelError, prefix: Sequence[str | int]) -> list[dict[str, Any]]:
    return [{"loc": [*prefix, *loc], "msg": msg, "type": "value_error"} for loc, msg in exc.problems]


def _retire_active(session: Session, now: dt.datetime) -> int | None:
    previous = session.scalar(select(RiskModelVersion.version).where(RiskModelVersion.status == "active"))
    if previous is not None:
        session.execute(
            update(RiskModelVersion)
            .where(RiskModelVersion.version == previous)
            .values(status="retired", retired_at=now)
            .execution_options(synchronize_session=False)
        )
    return previous


def put_model(
    session: Session,
    weights: Mapping[str, Any],
    *,
    actor: str,
    now: dt.datetime,
    note: str | None = None,
    loc_prefix: Sequence[str | int] = ("body",),
) -> ModelVersion:
    """A new draft version from the model's JSON: it scores nothing until `activate` makes it the active one.

    Putting the active model, or the model a manual draft already holds, changes nothing and returns that version
    (a retried request does not pile up identical versions).
    """
    try:
        model = rm.validate_model(weights)
    except rm.ModelError as exc:
        raise RiskModelInvalid(
            "The risk model is not valid; nothing was changed.", errors=_model_errors(exc, loc_prefix)
        ) from exc
    _lock(session)
    wanted = model.as_dict()
    try:
        current: ModelVersion | None = active_model(session)
    except Conflict:  # no active version at all: the draft is saved, activating it repairs that
        current = None
    if current is not None and current.model.as_dict() == wanted:
        return current
    drafts = session.scalars(
        select(RiskModelVersion)
        .where(RiskModelVersion.status == "draft", RiskModelVersion.source == "manual")
        .order_by(RiskModelVersion.version.desc())
    )
    for draft in drafts:
        if draft.weights == wanted:
            return _version_of(draft)
    version = _next_version(session, now)
    row = RiskModelVersion(
        version=version,
        weights=wanted,
        status="draft",
        source="manual",
        note=note,
        created_by=actor,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="risk_model.created",
        entity_type="risk_model",
        entity_id=str(version),
        data={"source": "manual", "note": note, **row.weights},
        at=now,
    )
    return _version_of(row)


def activate(session: Session, version: int, *, actor: str, now: dt.datetime) -> ModelVersion:
    """Make a stored version (a saved or fitted draft, or an older one to roll back) the active one; idempotent.

    A version stored before the weight bound, with weights beyond it, is refused (409): it stays readable."""
    _lock(session)
    row = session.get(RiskModelVersion, version)
    if row is None:
        current = get_version(session, version)  # the built-in default is active already, or 404
        return current
    if row.status == "active":
        return _version_of(row)
    try:
        rm.validate_model(row.weights)
    except rm.ModelError as exc:
        raise RiskModelNotActivatable(
            f"Version {version} cannot be activated: {exc}. Save a corrected model instead."
        ) from exc
    previous = _retire_active(session, now)
    session.execute(
        update(RiskModelVersion)
        .where(RiskModelVersion.version == version)
        .values(status="active", activated_by=actor, activated_at=now, retired_at=None)
        .execution_options(synchronize_session=False)
    )
    session.expire(row)
    audit.record(
        session,
        actor=actor,
        action="risk_model.activated",
        entity_type="risk_model",
        entity_id=str(version),
        data={"previous": previous},
        at=now,
    )
    return _version_of(session.get_one(RiskModelVersion, version))


# ---- outcomes and fitting -----------------------------------------------------------------------


class OutcomeSource(Protocol):
    """Completed outcomes to learn from: the factors as they were when scored, and whether the client churned.
    The workflow keeps them (its follow-ups); bound in `app.main`."""

    def __call__(self, session: Session) -> Sequence[tuple[rm.Factors, bool]]: ...


class DepartureSource(Protocol):
    """Each owner's departure as the workflow knows it (reason, destination competitor), for owners with an open
    handover; the others are absent. Bound in `app.main`."""

    def __call__(self, session: Session, owners: Sequence[str]) -> Mapping[str, tuple[str, bool]]: ...


def factors_from_json(data: Mapping[str, Any]) -> rm.Factors:
    """Factors stored with a score (ScoreResult.as_json()["factors"]) back into Factors."""
    return rm.Factors(**{k: data[k] for k in rm.FACTOR_NAMES if k in data})


def fit_model(
    session: Session,
    *,
    actor: str,
    now: dt.datetime,
    source: OutcomeSource,
    min_rows: int = MIN_FIT_ROWS,
    l2: float = 1.0,
    seed: int = 0,
    holdout: float = 0.25,
    note: str | None = None,
) -> ModelVersion:
    """Fit weights on completed outcomes; stored as a draft with its validation figures, never activated here."""
    rows = source(session)
    if len(rows) < min_rows:
        missing = min_rows - len(rows)
        raise NotEnoughOutcomes(
            f"Fitting needs at least {min_rows} completed outcomes; {len(rows)} are available: "
            f"need {missing} more completed outcomes.",
            extra={"required": min_rows, "available": len(rows), "missing": missing},
        )
    base = active_model(session)
    try:
        fitted, metrics = fitting.fit(rows, l2=l2, seed=seed, holdout=holdout, base=base.model)
    except ValueError as exc:
        raise OutcomesNotFittable(f"The outcomes cannot be fitted: {exc}.") from exc
    _lock(session)
    version = _next_version(session, now)
    figures = {**metrics.as_dict(), "baseline_version": base.version}
    row = RiskModelVersion(
        version=version,
        weights=fitted.as_dict(),
        status="draft",
        source="fit",
        metrics=_json_safe(figures),
        note=note,
        created_by=actor,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="risk_model.fitted",
        entity_type="risk_model",
        entity_id=str(version),
        data={"note": note, "metrics": row.metrics, **row.weights},
        at=now,
    )
    return _version_of(row)


def _json_safe(data: Mapping[str, Any]) -> dict[str, Any]:
    """NaN/inf are not JSON (PostgreSQL refuses them in JSONB): they become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


# ---- factors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskContext:
    """What the caller knows that the directory does not.

    reason / destination_competitor: the departure to assume for every client's owner. None: the owner's
    open handover's (asked of `departures`), if any, else a resignation (to no known competitor).
    successors: client id → proposed successor (employee id); risk computes the fit (seniority below the
    tier's norm in `min_seniority`, skill and language mismatch) from the directory.
    successor_fit: client id → fit already computed by the caller; wins over `successors`.
    Clients with neither have fit 0 (no successor yet).
    base_currency: the currency the book's amounts (open deals, overdue invoices) are summed in; amounts in other
    currencies are left out of the sums (settings.base_currency, HANDOVER_BASE_CURRENCY).
    """

    reason: str | None = None
    destination_competitor: bool | None = None
    successors: Mapping[str, str] = field(default_factory=dict)
    successor_fit: Mapping[str, rm.SuccessorFit] = field(default_factory=dict)
    min_seniority: Mapping[str, int] = field(default_factory=lambda: dict(rm.DEFAULT_MIN_SENIORITY))
    departures: DepartureSource | None = None
    base_currency: str = "EUR"

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in rm.REASONS:
            raise ValueError(f"reason must be one of {rm.REASONS}")


def _days_until(session: Session, column: Any, instant: dt.datetime | dt.date) -> ColumnElement[Any]:
    """Days from the column's value to `instant` (NULL when unknown), computed by the database.

    Dates and times stay in SQL: converting 100k of them to Python objects costs more than the query.
    """
    if session.get_bind().dialect.name == "postgresql":
        if isinstance(instant, dt.datetime):
            seconds = func.extract("epoch", literal(instant, UTCDateTime()) - column)
            return cast(seconds, Float) / 86_400.0
        return cast(literal(instant, Date()) - column, Float)
    # SQLite keeps UTC times as naive text, dates as ISO text; julianday() reads both.
    if isinstance(instant, dt.datetime):
        text_value = instant.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
    else:
        text_value = instant.isoformat()
    return func.julianday(literal(text_value, String())) - func.julianday(column)


def _client_rows(session: Session, ids: Sequence[str], now: dt.datetime) -> list[Any]:
    """One query: each client's factors as plain numbers, with team (besides the owner) and contact counts."""
    c, t, k = Client, AccountTeamMember, ClientContact
    # Correlated counts: two index probes per client, which beat grouped joins at 100k on PostgreSQL.
    team = (
        select(func.count())
        .where(t.client_id == c.external_id, t.employee_id != c.owner_id)
        .correlate(c)
        .scalar_subquery()
    )
    contacts = select(func.count()).where(k.client_id == c.external_id).correlate(c).scalar_subquery()
    today = now.date()
    stmt = select(
        c.external_id,
        c.owner_id,
        c.tier,
        c.industry,
        c.language,
        cast(c.annual_value, Float),
        cast(c.satisfaction, Float),
        c.open_issues,
        _days_until(session, c.relationship_since, today),
        -_days_until(session, c.renewal_at, today),
        _days_until(session, c.last_contact_at, now),
        team,
        contacts,
    ).where(among(session, c.external_id, ids))
    # Core execution: the ORM's row machinery is most of the cost at 100k rows and adds nothing here.
    return list(session.connection().execute(stmt).all())


def _successor_fits(
    session: Session,
    client_ids: Sequence[str],
    tiers: Sequence[str],
    industries: Sequence[str | None],
    languages: Sequence[str | None],
    context: RiskContext,
) -> dict[str, rm.SuccessorFit]:
    fits = dict(context.successor_fit)
    wanted = {cid: emp for cid, emp in context.successors.items() if cid not in fits}
    if not wanted:
        return fits
    people: dict[str, tuple[int, list[str], list[str]]] = {}
    stmt = select(Employee.external_id, Employee.seniority, Employee.skills, Employee.languages).where(
        among(session, Employee.external_id, sorted(set(wanted.values())))
    )
    for eid, seniority, skills, langs in session.execute(stmt):
        people[eid] = (seniority, list(skills or []), list(langs or []))
    for cid, tier, industry, language in zip(client_ids, tiers, industries, languages, strict=True):
        person = people.get(wanted.get(cid, ""))
        if person is not None:
            fits[cid] = rm.successor_fit(
                tier=tier,
                industry=industry,
                language=language,
                successor_seniority=person[0],
                successor_skills=person[1],
                successor_languages=person[2],
                min_seniority=context.min_seniority,
            )
    return fits


@dataclass(frozen=True)
class FactorBatch:
    """Factors of many clients as columns (for scoring) with their ids and owners, in request order."""

    client_ids: list[str]
    owners: list[str]
    table: rm.FactorTable
    # What a successor's fit depends on besides the successor (`with_successors`).
    industries: list[str | None] = field(default_factory=list)
    languages: list[str | None] = field(default_factory=list)


def _floats(values: Sequence[Any]) -> rm.FloatArray:
    """Numbers from the database; NULL becomes NaN."""
    return np.array(values, dtype=np.float64)


def factor_batch(
    session: Session, client_ids: Sequence[str], *, context: RiskContext | None = None, now: dt.datetime
) -> FactorBatch:
    """A few queries for any number of clients, then column-wise arithmetic; unknown ids are left out."""
    context = context or RiskContext()
    ids = list(dict.fromkeys(client_ids))
    rows = _client_rows(session, ids, now) if ids else []
    position = {cid: i for i, cid in enumerate(ids)}
    rows.sort(key=lambda r: position[r[0]])
    cols: list[Sequence[Any]] = [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(13)]
    (
        cids,
        owner_ids,
        tiers,
        industries,
        languages,
        values,
        satisfaction,
        issues,
        years,
        renewal_in,
        contact_days,
        team,
        contacts,
    ) = cols
    owners = sorted(set(owner_ids))
    alerts = access_events.open_alert_clients(session, owners) if owners else {}
    ask = context.departures if owners and context.reason is None else None
    handovers = ask(session, owners) if ask is not None else {}
    departure: dict[str, tuple[str, bool]] = {}
    for o in owners:
        reason, competitor = handovers.get(o, (DEFAULT_REASON, False))
        departure[o] = (
            context.reason if context.reason is not None else reason,
            context.destination_competitor if context.destination_competitor is not None else competitor,
        )
    fits = _successor_fits(session, cids, tiers, industries, languages, context)
    no_alerts: set[str] = set()
    years_known = _floats(years)
    until_renewal = _floats(renewal_in)
    open_issues = _floats(issues)
    books = book.client_books(session, cids, now=now, base_currency=context.base_currency) if cids else {}
    book_columns = _book_columns(cids, books, now)
    if books:
        # Where the book holds a client's cases (its contracts), they, not the client's own fields, give its open
        # issues (its nearest renewal).
        open_issues = np.where(book_columns["has_cases"] > 0, book_columns["open_cases"], open_issues)
        until_renewal = np.where(book_columns["has_contracts"] > 0, book_columns["days_to_renewal"], until_renewal)
    with np.errstate(invalid="ignore"):
        renewal_soon = (until_renewal >= 0) & (until_renewal <= RENEWAL_HORIZON.days)
    numbers: dict[str, rm.FloatArray] = {
        "years_with_leaver": np.nan_to_num(np.maximum(years_known, 0.0) / _DAYS_PER_YEAR, nan=0.0),
        "single_threaded": ((_floats(team) == 0) | (_floats(contacts) <= 1)).astype(np.float64),
        "annual_value": _floats(values),
        "satisfaction": _floats(satisfaction),
        "renewal_within_90d": renewal_soon.astype(np.float64),
        "days_since_last_contact": np.maximum(_floats(contact_days), 0.0),
        "open_issues": open_issues,
        "open_deal_value": book_columns["open_deal_value"],
        "overdue_invoices": book_columns["overdue_invoices"],
        "overdue_amount": book_columns["overdue_amount"],
        "destination_competitor": np.array([departure[o][1] for o in owner_ids], dtype=np.float64),
        "exfiltration_alert": np.array(
            [cid in alerts.get(o, no_alerts) for cid, o in zip(cids, owner_ids, strict=True)], dtype=np.float64
        ),
        **_fit_columns(cids, fits),
    }
    categories = {
        "tier": np.array(tiers, dtype=np.str_),
        "reason": np.array([departure[o][0] for o in owner_ids], dtype=np.str_),
    }
    return FactorBatch(
        client_ids=list(cids),
        owners=list(owner_ids),
        table=rm.FactorTable(numbers, categories),
        industries=list(industries),
        languages=list(languages),
    )


def _book_columns(
    client_ids: Sequence[str], books: Mapping[str, book.ClientBook], now: dt.datetime
) -> dict[str, rm.FloatArray]:
    """The book's aggregates as columns in request order (0, and no cases or contracts, for a client without
    records); days to the nearest renewal is NaN without an upcoming open contract."""
    n = len(client_ids)
    if not books:
        return {name: np.zeros(n) for name in ("open_deal_value", "overdue_invoices", "overdue_amount")}
    empty = book.ClientBook()
    rows = [books.get(cid, empty) for cid in client_ids]
    table = np.array(
        [(b.open_deal_amount, b.overdue_invoices, b.overdue_amount, b.cases, b.open_cases, b.contracts) for b in rows],
        dtype=np.float64,
    ).reshape(n, 6)
    days = np.full(n, math.nan)
    for i, b in enumerate(rows):
        if b.next_renewal_at is not None:
            days[i] = (b.next_renewal_at - now).total_seconds() / 86_400.0
    names = ("open_deal_value", "overdue_invoices", "overdue_amount", "has_cases", "open_cases", "has_contracts")
    return {**{name: table[:, j] for j, name in enumerate(names)}, "days_to_renewal": days}


def _fit_columns(client_ids: Sequence[str], fits: Mapping[str, rm.SuccessorFit]) -> dict[str, rm.FloatArray]:
    """The three successor-fit factors as columns (0 for a client without a successor)."""
    names = ("seniority_gap", "skill_mismatch", "language_mismatch")
    if not fits:
        return {name: np.zeros(len(client_ids)) for name in names}
    no_fit = rm.SuccessorFit()
    rows = [fits.get(cid, no_fit) for cid in client_ids]
    return {name: np.array([getattr(f, name) for f in rows], dtype=np.float64) for name in names}


def with_successors(
    session: Session, batch: FactorBatch, successors: Mapping[str, str], *, min_seniority: Mapping[str, int]
) -> FactorBatch:
    """`batch` with each client's fit to its proposed successor, what `factor_batch` gives with
    `RiskContext(successors=...)`, for one query instead of all of them again: planning scores before the solve
    (to weight clients) and after (to store), and only the fit changes in between."""
    context = RiskContext(successors=successors, min_seniority=min_seniority)
    tiers = [str(t) for t in batch.table.categories["tier"]]
    fits = _successor_fits(session, batch.client_ids, tiers, batch.industries, batch.languages, context)
    numbers = {**batch.table.numbers, **_fit_columns(batch.client_ids, fits)}
    return replace(batch, table=rm.FactorTable(numbers, dict(batch.table.categories)))


def factors_for_clients(
    session: Session, client_ids: Sequence[str], *, context: RiskContext | None = None, now: dt.datetime
) -> dict[str, rm.Factors]:
    """Each known client's factors if its owner left at `now` (the departure per `context`)."""
    batch = factor_batch(session, client_ids, context=context, now=now)
    return {cid: batch.table.factors(i) for i, cid in enumerate(batch.client_ids)}


# ---- scores -------------------------------------------------------------------------------------


@dataclass(slots=True)
class ScoreResult:
    """One client's score with who would leave it and which model version scored it."""

    client_id: str
    owner_id: str
    model_version: int
    risk: rm.Score
    _table: rm.FactorTable = field(repr=False, compare=False)
    _row: int = field(repr=False, compare=False)

    @property
    def factors(self) -> rm.Factors:
        return self._table.factors(self._row)

    def as_json(self) -> dict[str, Any]:
        """What a handover item stores (risk_factors): enough to explain the score and to learn from it later."""
        return {
            "model_version": self.model_version,
            "probability": self.risk.probability,
            "score": self.risk.score,
            "band": self.risk.band,
            "logit": self.risk.logit,
            "intercept": self.risk.intercept,
            "exposure": self.risk.exposure,
            "factors": self._table.factor_values(self._row),
            "contributions": self.risk.contributions,
            "mitigations": [{"action": m.action, "text": m.text} for m in self.risk.mitigations],
        }


def score(
    session: Session,
    client_ids: Sequence[str],
    *,
    context: RiskContext | None = None,
    now: dt.datetime,
    model: ModelVersion | None = None,
) -> dict[str, ScoreResult]:
    """Scores for every known client (unknown ids are absent), in request order; the active model by default."""
    version = model or active_model(session)
    return score_batch(factor_batch(session, client_ids, context=context, now=now), version)


def score_batch(batch: FactorBatch, version: ModelVersion) -> dict[str, ScoreResult]:
    """`score` of factors already read (see `with_successors`)."""
    scores = rm.score_table(batch.table, version.model)
    return {
        cid: ScoreResult(cid, owner, version.version, s, batch.table, i)
        for i, (cid, owner, s) in enumerate(zip(batch.client_ids, batch.owners, scores, strict=True))
    }


def score_visible(
    session: Session,
    principal: Principal,
    client_ids: Sequence[str],
    *,
    context: RiskContext | None,
    now: dt.datetime,
    version: int | None = None,
    loc: Sequence[str | int] = ("body", "clients"),
) -> tuple[ModelVersion, dict[str, ScoreResult]]:
    """The API's batch: every id must be a client the caller may see, else 422 naming the others."""
    ids = list(dict.fromkeys(client_ids))
    try:
        chosen = active_model(session) if version is None else get_version(session, version)
    except NotFound as exc:
        raise UnknownRiskModelVersion(
            exc.detail, errors=[{"loc": ["body", "model_version"], "msg": exc.detail, "type": "unknown_reference"}]
        ) from exc
    if principal.unrestricted:
        results = score(session, ids, context=context, now=now, model=chosen)
        visible: set[str] = set(results)
    else:
        visible = set(
            session.scalars(
                select(Client.external_id).where(
                    among(session, Client.external_id, ids), directory.client_visibility(principal)
                )
            )
        )
        results = score(session, [i for i in ids if i in visible], context=context, now=now, model=chosen)
    unknown = [i for i in ids if i not in visible]
    if unknown:
        shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise UnknownClients(
            f"Unknown clients (or outside your reach): {shown}.",
            errors=[
                {"loc": [*loc, client_ids.index(u)], "msg": f"unknown client {u!r}", "type": "unknown_reference"}
                for u in unknown
            ],
        )
    return chosen, results


def score_client(
    session: Session, principal: Principal, external_id: str, *, context: RiskContext, now: dt.datetime
) -> tuple[ModelVersion, ScoreResult]:
    """One client the caller may see (else 404), as if its owner left now."""
    directory.get_client(session, principal, external_id)
    version = active_model(session)
    return version, score(session, [external_id], context=context, now=now, model=version)[external_id]
