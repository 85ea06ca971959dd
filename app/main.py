"""create_app(): routers, error handlers, middleware, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.access import schemas as access_schemas
from app.access import service as access_service
from app.access.router import router as access_router
from app.audit.router import router as audit_router
from app.book import schemas as book_schemas
from app.book.router import router as book_router
from app.core import openapi as contract
from app.core.auth import SCOPES, TokenVerifier
from app.core.clock import Clock, SystemClock
from app.core.config import Settings, get_settings
from app.core.db import Database
from app.core.errors import PROBLEM_MEDIA_TYPE, install_handlers, name_problem_types
from app.core.idempotency import ASYNC_PREFIXES, EXCLUDED_PREFIXES, IdempotencyMiddleware, describe
from app.core.middleware import RequestMiddleware, configure_logging
from app.core.types import NO_NUL_PATTERN
from app.directory import schemas as directory_schemas
from app.directory.router import router as directory_router
from app.intake import schemas as intake_schemas
from app.intake.router import router as intake_router
from app.jobs import schemas as jobs_schemas
from app.jobs.router import router as jobs_router
from app.notify import events as notify_events
from app.notify import schemas as notify_schemas
from app.notify.router import router as notify_router
from app.ops import metrics as ops_metrics
from app.ops.docs import router as docs_router
from app.ops.router import router as ops_router
from app.risk import schemas as risk_schemas
from app.risk.router import router as risk_router
from app.transfer import leave as transfer_leave
from app.transfer import planning as transfer_planning
from app.transfer import rechecks as transfer_rechecks
from app.transfer import report as transfer_report
from app.transfer import reporttexts
from app.transfer import retention as transfer_retention
from app.transfer import schemas as transfer_schemas
from app.transfer import service as transfer_service
from app.transfer import visibility as transfer_visibility
from app.transfer.checklists.router import router as checklist_router
from app.transfer.errors import EXIT_WORKFLOW_REFUSALS
from app.transfer.followups import schemas as followups_schemas
from app.transfer.followups.router import router as followups_router
from app.transfer.router import router as transfer_router
from app.transfer.sweeper import OwnershipCollector

API_VERSION = "0.1.0"
SERVERS = [{"url": "/", "description": "This deployment (paths are absolute from its root)."}]
BODY_PROBLEMS = {
    "413": "The request body exceeds the configured limit.",
    "415": "The request body is not JSON.",
}
DESCRIPTION = """\
Handover service: when an account manager leaves, every client gets the right new owner, access ends
exactly on time, clients hear about it first, and every step is provable.

Errors are `application/problem+json` (RFC 9457). Lists are paginated with `limit`/`offset` and
return `next_offset`. Times are ISO 8601 UTC. Authenticate with a bearer JWT; each operation lists
the scopes it needs.
"""


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    db = Database(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        db.dispose()

    app = FastAPI(
        title="handover-service",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url=None,  # app/ops/docs.py serves /docs and /redoc with local assets, no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.clock = clock or SystemClock()
    # The JWKS refresh rate follows the app's clock, which tests move by hand.
    app.state.verifier = TokenVerifier(settings, jwks_clock=app.state.clock)
    app.state.employee_gate = _employee_gate(db, app)
    # Bindings: lower modules get the workflow's facts and effects handed in, never by importing transfer.
    app.state.exits = transfer_leave  # a leave is a delegation; every other exit goes on to transfer.service
    app.state.late_owners = transfer_rechecks.adopt_late_clients
    app.state.managed_cases = transfer_visibility.managed_ids
    app.state.departures = transfer_planning.open_departures
    app.state.outcomes = transfer_retention.outcome_rows
    # Requests and the pool per process (added up across `serve --workers`); the queues read at scrape time.
    app.state.metrics, app.state.metrics_registry = ops_metrics.build(
        db, app.state.clock, transfer_service.count_due, [OwnershipCollector(db, app.state.clock)]
    )

    install_handlers(app)
    # The access check is the hot path (every CRM page view): Starlette tries routes in order, and matching
    # past ~80 other routes first cost 55-75 µs of a ~0.7 ms check.
    app.include_router(access_router)
    app.include_router(ops_router)
    app.include_router(directory_router)
    app.include_router(audit_router)
    app.include_router(transfer_router)
    app.include_router(checklist_router)
    app.include_router(intake_router)
    app.include_router(notify_router)
    app.include_router(risk_router)
    app.include_router(followups_router)
    app.include_router(jobs_router)
    app.include_router(book_router)
    app.include_router(docs_router)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes, metrics=app.state.metrics)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _polish_openapi(schema, settings)
        name_problem_types(schema["paths"]["/v1/hooks/hr"]["post"], EXIT_WORKFLOW_REFUSALS)  # bound exits
        section, webhook_schemas = notify_events.webhooks()
        contract.finish(
            schema,
            webhooks=section,
            webhook_schemas=webhook_schemas,
            enum_names=contract.enum_names(ENUMS),
            servers=SERVERS,
        )
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app


def _employee_gate(db: Database, app: FastAPI) -> Callable[[str], bool]:
    def gone(employee: str) -> bool:
        with db.session(write=False) as session:
            return access_service.employee_is_gone(session, employee, app.state.clock.now())

    return gone


def _polish_openapi(schema: dict[str, Any], settings: Settings) -> None:
    """Problems are served as application/problem+json; page limits show the configured maximum."""
    for path, path_item in schema.get("paths", {}).items():
        for method, op in path_item.items():
            if not isinstance(op, dict):
                continue
            if method == "post" and not path.startswith(EXCLUDED_PREFIXES):
                op.setdefault("parameters", []).append(describe())
            elif method == "post" and path.startswith(ASYNC_PREFIXES):
                op.setdefault("parameters", []).append(describe(only_async=True))
            if "requestBody" in op:
                # RequestMiddleware answers these for every body, before any route: each body-taking operation can.
                missing = {code: text for code, text in BODY_PROBLEMS.items() if code not in op["responses"]}
                for code, description in missing.items():
                    op["responses"][code] = {
                        "description": description,
                        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    }
                if missing:
                    op["responses"] = dict(sorted(op["responses"].items()))
            for code, response in op.get("responses", {}).items():
                content = response.get("content", {})
                if code.startswith(("4", "5")) and "application/json" in content:
                    json_schema = content.pop("application/json")
                    content[PROBLEM_MEDIA_TYPE] = {**json_schema, **content.get(PROBLEM_MEDIA_TYPE, {})}
                if code == "422" and PROBLEM_MEDIA_TYPE in content:
                    content[PROBLEM_MEDIA_TYPE]["schema"] = {"$ref": "#/components/schemas/Problem"}
            for param in op.get("parameters", []):
                if param.get("name") == "limit" and param.get("in") == "query":
                    for sub in param["schema"].get("anyOf", [param["schema"]]):
                        if sub.get("type") == "integer":
                            sub["maximum"] = settings.max_page_size
                if param.get("in") in ("query", "path"):
                    # RequestMiddleware refuses NUL anywhere in the URL (422): the contract says so.
                    for sub in param["schema"].get("anyOf", [param["schema"]]):
                        if sub.get("type") == "string" and "pattern" not in sub and "enum" not in sub:
                            sub["pattern"] = NO_NUL_PATTERN
            _optional_body_without_null(op)
    components = schema.setdefault("components", {})
    schemes = components.setdefault("securitySchemes", {})
    if "bearerAuth" in schemes:
        schemes["bearerAuth"]["description"] = "Bearer JWT. Scopes: " + "; ".join(
            f"`{k}` {v}" for k, v in SCOPES.items()
        )
    # FastAPI's default 422 schema is replaced by Problem everywhere.
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)


def _optional_body_without_null(op: dict[str, Any]) -> None:
    """An optional body (`X | None = None` in FastAPI) is documented as X, not required: no `null` alternative.

    Leaving the body out already means "none". With the `null` alternative, clients generated by
    openapi-python-client send their omitted default (UNSET) as JSON and fail before the request is made.
    """
    body = op.get("requestBody")
    if body is None or body.get("required"):
        return
    for media in body.get("content", {}).values():
        alternatives = media.get("schema", {}).get("anyOf", [])
        kept = [a for a in alternatives if a != {"type": "null"}]
        if len(alternatives) == 2 and len(kept) == 1:
            media["schema"] = kept[0]


# Every enum of the contract, named once: each name with the types that spell it (a Literal, or the field using an
# inline one), so the value sets come from the code (`contract.enum_names`) and a new value renames nothing. An enum
# not listed is named after its first owner and property (`<Schema><Property>`); list it here to give it a better
# name. A concept spelled in several modules lists every spelling: they must agree.
ENUMS: dict[str, Iterable[Any]] = {
    "AccessAction": [access_schemas.Action],
    "AccessEventAction": [access_schemas.EventAction],
    "GrantLevel": [access_schemas.Level, notify_events.GrantLevel],
    "AccessReason": [access_schemas.DecisionReason],
    "AlertStatus": [access_schemas.AlertStatus],
    "CandidatePoolKind": [transfer_schemas.PoolKind],
    "ClientTier": [directory_schemas.ClientTier, risk_schemas.Tier],
    "ClientStatus": [directory_schemas.ClientStatus],
    "RecordKind": [book_schemas.RecordKind],
    "RecordStatus": [book_schemas.RecordStatus],
    "RecordClientless": [transfer_schemas.RecordClientless],
    "RecordPlanRule": [transfer_schemas.RecordPlanRule],
    "Channel": [notify_schemas.Channel, directory_schemas.Channel],
    "MessageStatus": [notify_schemas.Status],
    "EmployeeStatus": [directory_schemas.EmployeeStatus],
    "ExitReason": [notify_events.ExitReason, intake_schemas.ExitReason, risk_schemas.Reason],
    "HandoverReason": [notify_events.StoredReason],
    "FollowUpOutcome": [followups_schemas.Outcome],
    "FollowUpKind": [followups_schemas.FollowUpKind],
    "FollowUpStatus": [followups_schemas.FollowUpStatus],
    "HandoverStatus": [notify_events.HandoverStatus],
    "HandoverSource": [transfer_schemas.HandoverOut.model_fields["source"]],
    "ReportView": [transfer_schemas.View],
    "ItemStatus": [transfer_schemas.ItemStatus],
    "JobKind": [jobs_schemas.JobKind],
    "JobState": [jobs_schemas.JobState],
    "MessageCategory": [notify_schemas.MessageOut.model_fields["category"]],
    "NotificationKind": [notify_schemas.NotificationOut.model_fields["kind"]],
    "TemplateKey": [notify_schemas.TemplateKey],
    "RetentionGroupBy": [followups_schemas.GroupBy],
    "RiskModelStatus": [risk_schemas.RiskModelSummary.model_fields["status"]],
    "RiskModelSource": [risk_schemas.RiskModelSummary.model_fields["source"]],
    "RiskBand": [risk_schemas.Band],
    "RuleOperator": [risk_schemas.Op],
    "SignOffSide": [transfer_schemas.SignOff.model_fields["side"], transfer_report.SignOffRecord.model_fields["side"]],
    "EndpointStatus": [notify_schemas.EndpointStatus],
    "ReportFormat": [transfer_schemas.ReportFormat],
    "ReportLocale": [reporttexts.ReportLocale],
    "RetentionFormat": [followups_schemas.RetentionFormat],
    "EventType": [notify_schemas.EventType],
}
