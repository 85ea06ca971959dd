"""Risk endpoints: scores with their explanation, and the model's versions (weights are data).

Changing the model takes two steps: `PUT /v1/risk/model` (or `POST /v1/risk/model/fit`) stores new weights
as a draft version, which scores nothing until `POST /v1/risk/model/versions/{version}/activate` makes it
the active one (also how an older version is rolled back to). Activating retires the previously active
version; nothing is ever deleted.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from app.core.auth import RiskAdmin, RiskRead
from app.core.deps import DbSession, Now
from app.core.errors import problem_responses
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN
from app.directory.errors import ClientNotFound
from app.risk import model as rm
from app.risk import schemas, service
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

router = APIRouter(tags=["risk"])

ClientId = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="The client's external id.")]
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The model version.")]


def get_outcome_source(request: Request) -> service.OutcomeSource:
    """Where fitting reads outcomes (the workflow's follow-ups, bound in app.main); tests can feed synthetic ones."""
    source: service.OutcomeSource = request.app.state.outcomes
    return source


def get_context(request: Request) -> service.RiskContext:
    """The departure each owner faces, as the workflow knows it (bound in app.main)."""
    return service.RiskContext(
        departures=request.app.state.departures, base_currency=request.app.state.settings.base_currency
    )


OutcomeSourceDep = Annotated[service.OutcomeSource, Depends(get_outcome_source)]
OwnersDeparture = Annotated[service.RiskContext, Depends(get_context)]


def _risk_out(r: service.ScoreResult, weights: rm.RiskModel, as_of: dt.datetime) -> schemas.RiskOut:
    s = r.risk
    features = s.features
    return schemas.RiskOut(
        client=r.client_id,
        owner=r.owner_id,
        model_version=r.model_version,
        as_of=as_of,
        probability=s.probability,
        score=s.score,
        band=s.band,
        logit=s.logit,
        intercept=s.intercept,
        exposure=s.exposure,
        factors=schemas.FactorsOut(**r.factors.as_dict()),
        contributions=[
            schemas.ContributionOut(name=name, value=features[name], weight=weights.weights[name], contribution=c)
            for name, c in s.contributions.items()
        ],
        mitigations=[schemas.MitigationOut(action=m.action, text=m.text) for m in s.mitigations],
    )


def _summary_fields(v: service.ModelVersion) -> dict[str, object]:
    return {
        "version": v.version,
        "status": v.status,
        "source": v.source,
        "note": v.note,
        "metrics": v.metrics,
        "created_by": v.created_by,
        "created_at": v.created_at,
        "activated_by": v.activated_by,
        "activated_at": v.activated_at,
        "retired_at": v.retired_at,
    }


def _model_out(v: service.ModelVersion) -> schemas.RiskModelOut:
    data = v.model.as_dict()
    return schemas.RiskModelOut.model_validate(
        {
            **_summary_fields(v),
            **data,
            "features": [{"name": f.name, "transform": f.transform, "nonnegative": f.nonnegative} for f in rm.FEATURES],
        }
    )


@router.get(
    "/v1/clients/{external_id}/risk",
    name="clients-risk-get",
    summary="The client's churn risk if its owner left now, factor by factor, with mitigations",
    description="The departure assumed is the owner's open handover's (reason, competitor), else a resignation. "
    "Successor fit counts as 0 (no successor yet). Account managers and managers only reach their clients.",
    response_model=schemas.RiskOut,
    responses=problem_responses(401, 403, 404, 409, 422, errors=[ClientNotFound, NoActiveRiskModel]),
)
def client_risk(
    external_id: ClientId, session: DbSession, principal: RiskRead, now: Now, context: OwnersDeparture
) -> schemas.RiskOut:
    version, result = service.score_client(session, principal, external_id, context=context, now=now)
    return _risk_out(result, version.model, now)


@router.post(
    "/v1/risk/score",
    name="risk-score",
    summary="Score up to 1,000 clients at once (set-based)",
    description="Unknown clients, and clients outside the caller's reach, are refused with 422 naming them. "
    "`reason` and `destination_competitor` score a what-if departure; `model_version` scores with another "
    "version (e.g. a fitted draft) without activating it.",
    response_model=schemas.ScoreBatchOut,
    responses=problem_responses(
        401, 403, 409, 413, 415, 422, errors=[NoActiveRiskModel, UnknownClients, UnknownRiskModelVersion]
    ),
)
def score_batch(
    body: schemas.ScoreRequest, session: DbSession, principal: RiskRead, now: Now, owners: OwnersDeparture
) -> schemas.ScoreBatchOut:
    context = service.RiskContext(
        reason=body.reason,
        destination_competitor=body.destination_competitor,
        departures=owners.departures,
        base_currency=owners.base_currency,
    )
    version, results = service.score_visible(
        session, principal, body.clients, context=context, now=now, version=body.model_version
    )
    scores = [_risk_out(r, version.model, now) for r in results.values()]
    bands = Counter(s.band for s in scores)
    return schemas.ScoreBatchOut(
        model_version=version.version,
        as_of=now,
        scores=scores,
        bands={b: bands.get(b, 0) for b in rm.BANDS},
        total_exposure=round(sum(s.exposure for s in scores), 2),
    )


@router.get(
    "/v1/risk/model",
    name="risk-model-get",
    summary="The active risk model (or another version with ?version=)",
    response_model=schemas.RiskModelOut,
    responses=problem_responses(401, 403, 404, 409, 422, errors=[RiskModelVersionNotFound, NoActiveRiskModel]),
)
def get_model(
    session: DbSession,
    principal: RiskRead,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="A version; default the active one.")] = None,
) -> schemas.RiskModelOut:
    v = service.active_model(session) if version is None else service.get_version(session, version)
    return _model_out(v)


@router.get(
    "/v1/risk/model/versions",
    name="risk-model-versions-list",
    summary="Every model version, newest first (weights left out; GET /v1/risk/model?version= shows them)",
    response_model=Page[schemas.RiskModelSummary],
    responses=problem_responses(401, 403, 422),
)
def list_versions(session: DbSession, principal: RiskRead, page: Pagination) -> Page[schemas.RiskModelSummary]:
    items, nxt = page_of(service.list_versions(session, limit=page.limit + 1, offset=page.offset), page)
    return Page[schemas.RiskModelSummary](
        items=[schemas.RiskModelSummary.model_validate(_summary_fields(v)) for v in items],
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )


@router.put(
    "/v1/risk/model",
    name="risk-model-put",
    summary="Save new weights as a draft version (activate it with POST /v1/risk/model/versions/{version}/activate)",
    description="The whole model is validated first: every feature's weight, finite numbers within ±20 (intercept "
    "too), sign constraints (factors that may never lower risk), thresholds increasing in (0, 1), well-formed "
    "mitigation rules. A bad model is refused with 422 listing every problem, and nothing is written. A valid one is "
    "stored as a new version with status `draft`: it scores nothing, and GET /v1/risk/model keeps returning the "
    "active version, until POST /v1/risk/model/versions/{version}/activate makes it active (until this change a "
    "PUT activated at once). Saving the active model, or the model of an existing draft, returns that version "
    "and writes nothing. Audited.",
    response_model=schemas.RiskModelOut,
    responses=problem_responses(401, 403, 413, 415, 422, errors=[RiskModelInvalid]),
)
def put_model(body: schemas.RiskModelIn, session: DbSession, principal: RiskAdmin, now: Now) -> schemas.RiskModelOut:
    data = body.model_dump(exclude={"note"})
    for rule in data["mitigations"]:
        rule["when"] = {k: v for k, v in rule["when"].items() if v is not None}
    return _model_out(service.put_model(session, data, actor=principal.actor, now=now, note=body.note))


@router.post(
    "/v1/risk/model/versions/{version}/activate",
    name="risk-model-activate",
    summary="Activate an existing version (a fitted draft, or an older version to roll back)",
    description="The active version is retired. Activating the active version changes nothing. A version saved "
    "before weights were bounded (±20) and beyond that bound is refused with 409. Audited.",
    response_model=schemas.RiskModelOut,
    responses=problem_responses(401, 403, 404, 409, 422, errors=[RiskModelVersionNotFound, RiskModelNotActivatable]),
)
def activate(version: VersionPath, session: DbSession, principal: RiskAdmin, now: Now) -> schemas.RiskModelOut:
    return _model_out(service.activate(session, version, actor=principal.actor, now=now))


@router.post(
    "/v1/risk/model/fit",
    name="risk-model-fit",
    summary="Fit the weights on completed follow-up outcomes; stored as a draft version, not activated",
    description="Regularised logistic regression under the model's sign constraints, with a held-out split for "
    "AUC and Brier score (also given for the active model on the same split). Thresholds and mitigations are "
    "copied from the active model. 409 when fewer than 200 outcomes are available (the problem says how many "
    "are missing: `required`, `available`, `missing`). Audited.",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.RiskModelOut,
    responses=problem_responses(
        401, 403, 409, 413, 415, 422, errors=[NoActiveRiskModel, NotEnoughOutcomes, OutcomesNotFittable]
    ),
)
def fit(
    session: DbSession,
    principal: RiskAdmin,
    now: Now,
    source: OutcomeSourceDep,
    body: schemas.FitRequest | None = None,
) -> schemas.RiskModelOut:
    options = body or schemas.FitRequest()
    return _model_out(
        service.fit_model(
            session,
            actor=principal.actor,
            now=now,
            source=source,
            l2=options.l2,
            seed=options.seed,
            holdout=options.holdout,
            note=options.note,
        )
    )
