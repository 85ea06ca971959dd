"""One pure-ASGI middleware for request ids, body limits, JSON-only bodies, access logs and metrics.

Pure ASGI rather than BaseHTTPMiddleware: no extra task per request and streaming stays intact.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response, unexpected_problem

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# W3C Trace Context `traceparent`: version-trace_id-parent_id-flags, lowercase hex; all-zero ids are invalid.
TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

access_log = logging.getLogger("handover.access")
# The request being served, for every log line written while it is (JsonLogFormatter adds these fields).
log_context: ContextVar[dict[str, str] | None] = ContextVar("handover_log_context", default=None)


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """(trace_id, parent_id) of a valid W3C `traceparent`, else None (an invalid one is ignored, as the spec says).

    Version 00 has exactly four fields; a later version may append more, which are ignored."""
    match = TRACEPARENT_RE.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return trace_id, parent_id


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Labelled children, looked up once per label set: `labels()` validates and locks on every call.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}
        self.requests = Counter(
            "handover_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "handover_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        counter = self._counted.get((method, route, status))
        if counter is None:
            counter = self._counted[(method, route, status)] = self.requests.labels(method, route, str(status))
        counter.inc()
        timer = self._timed.get((method, route))
        if timer is None:
            timer = self._timed[(method, route)] = self.latency.labels(method, route)
        timer.observe(seconds)


def _nul_errors(scope: Scope) -> list[dict[str, Any]]:
    query = scope.get("query_string", b"").decode("latin-1")
    names = [k for k, v in parse_qsl(query, keep_blank_values=True) if "\x00" in k or "\x00" in v]
    loc: list[list[str]] = [["query", n.replace("\x00", "")] for n in names] or [["path"]]
    return [{"loc": x, "msg": "NUL characters are not allowed", "type": "string_pattern_mismatch"} for x in loc]


WANTED_HEADERS = frozenset({b"x-request-id", b"content-length", b"content-type", b"transfer-encoding", b"traceparent"})


def _wanted_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Only the headers this middleware reads, decoded (the last one wins, as in a dict of all of them)."""
    found: dict[str, str] = {}
    for k, v in raw:
        name = k.lower()
        if name in WANTED_HEADERS:
            found[name.decode("latin-1")] = v.decode("latin-1")
    return found


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _wanted_headers(scope["headers"])
        incoming = headers.get("x-request-id", "")
        request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        context = {"request_id": request_id}
        trace = parse_traceparent(headers.get("traceparent", ""))
        if trace is not None:
            context["trace_id"], context["parent_id"] = trace
        context_token = log_context.set(context)
        status_holder = {"status": 500}
        progress = {"started": False, "done": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                progress["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                progress["done"] = True
            await send(message)

        try:
            rejection = None
            method = scope["method"]
            errors = None
            if b"%00" in scope.get("query_string", b"") or "\x00" in scope["path"]:
                # PostgreSQL cannot store or compare NUL in text: refuse it at the door, on every backend.
                rejection = (422, "NUL characters are not allowed in the URL.")
                errors = _nul_errors(scope)
            elif method in BODY_METHODS:
                rejection, receive = await self._check_body(scope, headers, receive)
            if rejection is not None:
                status, detail = rejection
                response = problem_response(Request(scope), status, detail, errors=errors)
                await response(scope, receive, send_wrapper)
            else:
                try:
                    await self.app(scope, receive, send_wrapper)
                except Exception as exc:
                    # Answered here, not re-raised: past this point uvicorn would drop the keep-alive connection
                    # (without `Connection: close`), and so does Starlette's ServerErrorMiddleware, which re-raises.
                    if progress["started"] and not progress["done"]:
                        raise  # half a response: only closing the connection can end it
                    response = unexpected_problem(Request(scope), exc)
                    if not progress["started"]:
                        await response(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            status = status_holder["status"]
            self.metrics.observe(scope["method"], route_path, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                principal = scope.get("state", {}).get("principal")
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": scope["path"],
                            "route": route_path,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                            "actor": getattr(principal, "actor", None),
                            **({"trace_id": trace[0], "parent_id": trace[1]} if trace else {}),
                        }
                    },
                )
            log_context.reset(context_token)

    async def _check_body(
        self, scope: Scope, headers: dict[str, str], receive: Receive
    ) -> tuple[tuple[int, str] | None, Receive]:
        limit = self.max_body_bytes
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return (400, "Content-Length is not a number."), receive
            if int(length) > limit:
                return (413, f"The request body exceeds {limit} bytes."), receive
            if int(length) > 0 and not _is_json(headers.get("content-type", "")):
                return (415, "The request body must be application/json."), receive
            return None, receive
        if "chunked" not in headers.get("transfer-encoding", ""):
            return None, receive
        # Chunked body without a length: buffer up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return (413, f"The request body exceeds {limit} bytes."), receive
            chunks.append(body)
            more = message.get("more_body", False)
        data = b"".join(chunks)
        if data and not _is_json(headers.get("content-type", "")):
            return (415, "The request body must be application/json."), receive
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return None, replay


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line; never includes headers, tokens or query strings."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        context = log_context.get()
        if context:
            payload.update(context)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            payload["exc_type"] = record.exc_info[0].__name__
            payload["traceback"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    root = logging.getLogger("handover")
    if any(isinstance(h.formatter, JsonLogFormatter) for h in root.handlers):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
