"""Domain errors and their RFC 9457 problem+json rendering: one handler for every error."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.routes import iter_api_routes

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:handover:problem:"

logger = logging.getLogger("handover.errors")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the error is: body, query, path or header, then the field path.")
    msg: str = Field(description="What is wrong, for a person.")
    type: str = Field(description="A stable machine-readable error code.")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(
        description="A stable URI naming the kind of problem.",
        examples=["urn:handover:problem:not-found"],
    )
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong this time, for a person.")
    instance: str = Field(description="The request path that produced the problem.")
    request_id: str | None = Field(None, description="The X-Request-ID of the request, for support.")
    errors: list[FieldError] | None = Field(None, description="Field errors (validation problems only).")
    allowed: list[str] | None = Field(None, description="Allowed transitions or values, where relevant.")


class DomainError(Exception):
    """Base for errors that services raise; each subclass carries its status and type."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(DomainError):
    """The request is malformed."""

    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(DomainError):
    """The bearer token is missing, expired or not valid."""

    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(DomainError):
    """The token lacks the scope the operation requires."""

    status, slug, title = 403, "forbidden", "Forbidden"


class RoleNotAllowed(Forbidden):
    """The caller's role may not do this at all (e.g. only hr, managers and admins open handovers)."""

    slug, title = "role-not-allowed", "The caller's role may not do this"


class NotFound(DomainError):
    """No resource at this path."""

    status, slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    status, slug, title = 409, "conflict", "Conflict"


class NotAcceptable(DomainError):
    """None of the media types in Accept can be answered."""

    status, slug, title = 406, "not-acceptable", "Not acceptable"


class PayloadTooLarge(DomainError):
    """The request body exceeds the configured limit."""

    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(DomainError):
    """The request body is not JSON."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class PreconditionFailed(DomainError):
    """The If-Match ETag is stale: the resource changed since it was read."""

    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequired(DomainError):
    """An update was sent without an If-Match header."""

    status, slug, title = 428, "precondition-required", "Precondition required"


class Unprocessable(DomainError):
    """The request does not validate; `errors` lists the fields."""

    status, slug, title = 422, "validation-error", "Validation error"


class ServiceUnavailable(DomainError):
    """The database (or a dependency) is unavailable; retry after Retry-After."""

    status, slug, title = 503, "service-unavailable", "Service unavailable"


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    412: ("precondition-failed", "Precondition failed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Validation error"),
    428: ("precondition-required", "Precondition required"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal-error", "Internal error"),
    503: ("service-unavailable", "Service unavailable"),
}


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    default_slug, default_title = _STATUS_SLUGS.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request.scope.get("state", {}).get("request_id"),
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


_UNION_TAGS = frozenset({"AccessCheck", "RecordAccessCheck"})


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        # A discriminated union's tag (a request model's class name, never a field's) is not where the error is.
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ()) if p not in _UNION_TAGS]
        out.append(
            {
                "loc": loc,
                "msg": str(err.get("msg", "invalid")),
                "type": str(err.get("type", "invalid")),
            }
        )
    return out


BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 when the body cannot be decoded


def _allowed_methods(request: Request, fallback: str | None) -> str | None:
    """Every method of the resource the path names: its most literal template (`/batch` over `/{id}`)."""
    by_params: dict[int, set[str]] = {}
    for route in [*request.app.routes, *iter_api_routes(request.app)]:
        regex, allowed = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and allowed and regex.match(request.url.path):
            by_params.setdefault(len(getattr(route, "param_convertors", {})), set()).update(allowed)
    return ", ".join(sorted(by_params[min(by_params)])) if by_params else fallback


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem_response(
            request,
            exc.status,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request, 422, "The request is not valid; see errors.", errors=_validation_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 400 and detail == BODY_PARSE_ERROR:
            # A body that is not even text (bad UTF-8) is as invalid as malformed JSON, which answers 422.
            errors = [{"loc": ["body"], "msg": "The body is not valid UTF-8 JSON.", "type": "json_invalid"}]
            return problem_response(request, 422, "The request is not valid; see errors.", errors=errors)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such resource."
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed here."
            # Starlette names only the first route whose path matched; RFC 9110 wants every method of the resource.
            allow = _allowed_methods(request, headers.get("Allow"))
            if allow:
                headers["Allow"] = allow
        return problem_response(request, exc.status_code, detail, headers=headers or None)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        return unexpected_problem(request, exc)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        return unexpected_problem(request, exc)

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        return unexpected_problem(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only an error in RequestMiddleware itself gets here: it answers every other one (keep-alive intact).
        return unexpected_problem(request, exc)


def database_problem(request: Request, exc: Exception) -> JSONResponse | None:
    """503 with Retry-After for a database that is down, busy or dropped the connection; None for anything else."""
    if isinstance(exc, OperationalError):
        logger.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else "unknown")
        return problem_response(
            request, 503, "The database is unavailable; retry shortly.", headers={"Retry-After": "5"}
        )
    if isinstance(exc, PoolTimeout):
        # Every pooled connection stayed busy for the pool timeout: overload, not a bug; the client may retry.
        logger.warning("database pool exhausted on %s %s", request.method, request.url.path)
        return problem_response(
            request,
            503,
            "The service is busy (no database connection free); retry shortly.",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return problem_response(
            request, 503, "The database connection was lost; retry shortly.", headers={"Retry-After": "5"}
        )
    return None


def unexpected_problem(request: Request, exc: Exception) -> JSONResponse:
    """The answer to an exception no handler took: a database 503, else a logged 500 that reveals nothing."""
    response = database_problem(request, exc)
    if response is not None:
        return response
    request_id = request.scope.get("state", {}).get("request_id")
    if isinstance(exc, DBAPIError):
        logger.error(
            "database error %s on %s",
            type(exc.orig).__name__ if exc.orig else "?",
            request.url.path,
            extra={"fields": {"request_id": request_id}},
        )
    else:
        logger.error(
            "unhandled %s on %s %s",
            type(exc).__name__,
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"fields": {"request_id": request_id}},
        )
    return problem_response(request, 500, "An internal error occurred.")


# Problems the handlers answer without a DomainError class: (slug, when).
_HANDLER_ONLY = {
    405: "The resource does not take this method; Allow lists the ones it takes.",
    500: "An unexpected error; the response reveals nothing, the log has the request id.",
}

_DESCRIPTIONS = {
    400: "Malformed request.",
    401: "Missing, expired or invalid bearer token.",
    403: "The token lacks the required scope.",
    404: "The resource does not exist or is outside the caller's reach.",
    406: "None of the accepted media types can be answered.",
    409: "The request conflicts with the current state.",
    412: "The If-Match ETag is stale.",
    413: "The request body exceeds the configured limit.",
    415: "The request body is not JSON.",
    422: "The request is not valid; field errors are listed.",
    428: "An If-Match header is required.",
    503: "The database is unavailable.",
}
# The generic problem any operation answering this status can still give besides its domain errors
# (token and scope checks, request validation, body limits, ETags, the database).
_GENERIC_ALWAYS = {
    401: Unauthorized,
    403: Forbidden,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
    428: PreconditionRequired,
    503: ServiceUnavailable,
}


@dataclass(frozen=True)
class ProblemType:
    """One registered problem type, as the README table lists it."""

    type: str
    status: int
    title: str
    when: str


def _when(cls: type[DomainError]) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def domain_error_classes() -> list[type[DomainError]]:
    """Every DomainError class defined so far (import the app first to have them all), the generic ones too."""
    found: list[type[DomainError]] = []
    todo: list[type[DomainError]] = [DomainError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c is not DomainError]


def problem_types() -> list[ProblemType]:
    """The registered problem types: one per DomainError class, plus those only the handlers answer."""
    out = [ProblemType(TYPE_PREFIX + c.slug, c.status, c.title, _when(c)) for c in domain_error_classes()]
    for status, when in _HANDLER_ONLY.items():
        slug, title = _STATUS_SLUGS[status]
        out.append(ProblemType(TYPE_PREFIX + slug, status, title, when))
    return sorted(out, key=lambda p: (p.status, p.type))


def _example(cls: type[DomainError]) -> dict[str, Any]:
    value = {"type": TYPE_PREFIX + cls.slug, "title": cls.title, "status": cls.status, "detail": _when(cls)}
    return {"summary": cls.title, "value": value}


def _line(cls: type[DomainError]) -> str:
    return f"- `{TYPE_PREFIX}{cls.slug}` — {cls.title}"


def problem_responses(
    *statuses: int,
    errors: Iterable[type[DomainError]] = (),
    describe: dict[int, str] | None = None,
    public: bool = False,
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the problems a route can answer; `errors` names its domain errors.

    Each status's description (`describe` overrides the stock one) lists the problem types it can carry
    (`type` — title), and its application/problem+json content has one example per type, keyed by slug. The
    generic types any operation may answer (token, scope, validation, body, ETag, database) are listed too; a
    `public` route (no bearer token) gets no generic 401/403."""
    by_status: dict[int, list[type[DomainError]]] = {s: [] for s in statuses}
    for cls in errors:
        if cls.status not in by_status:
            raise ValueError(f"{cls.__name__} answers {cls.status}, which the route does not list")
        if cls not in by_status[cls.status]:
            by_status[cls.status].append(cls)
    out: dict[int | str, dict[str, Any]] = {}
    for s in statuses:
        named: Sequence[type[DomainError]] = by_status[s]
        generic = _GENERIC_ALWAYS.get(s)
        if generic is not None and generic not in named and not (public and s in (401, 403)):
            named = [*named, generic]
        description = (describe or {}).get(s) or _DESCRIPTIONS.get(s, "Problem.")
        if named:
            description += "\n\n" + "\n".join(_line(c) for c in named)
        content: dict[str, Any] = {"examples": {c.slug: _example(c) for c in named}} if named else {}
        out[s] = {"model": Problem, "description": description, "content": {PROBLEM_MEDIA_TYPE: content}}
    return out


def name_problem_types(operation: dict[str, Any], errors: Iterable[type[DomainError]]) -> None:
    """Adds domain errors to an operation of a rendered OpenAPI document: those an operation answers through a
    callable bound in a composition root (its router cannot import their module)."""
    for cls in errors:
        response = operation["responses"][str(cls.status)]  # the route lists the status already
        examples = response.setdefault("content", {}).setdefault(PROBLEM_MEDIA_TYPE, {}).setdefault("examples", {})
        if cls.slug in examples:
            continue
        examples[cls.slug] = _example(cls)
        sep = "\n" if "\n- `" in response["description"] else "\n\n"
        response["description"] += sep + _line(cls)
