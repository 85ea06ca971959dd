"""Idempotency-Key for POSTs: the same key and body replay the first response; the effect happens once.

The key row is written in the same transaction as the request's own changes: the middleware opens the
session, the endpoint uses it, and the middleware commits both together after the response is known.
So a crash can never leave an effect without its key, or a key without its effect. Concurrent requests
with one key serialise on the key's unique index (PostgreSQL) or the write lock (SQLite).

Before a key is looked up, the request passes the checks its route's `authenticate` would make (the token,
the leaver gate, the route's scopes): a stored answer is never replayed to a caller the route would refuse,
and a refused request takes no key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette._utils import get_route_path
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.auth import authorize, bearer_token, required_scopes
from app.core.db import ACTOR_LENGTH, Base, Database, JSONType, UTCDateTime
from app.core.errors import DomainError, database_problem, problem_response
from app.core.http import RESPOND_ASYNC, prefers_async
from app.core.routes import iter_api_routes

KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
SESSION_STATE_KEY = "idempotency_session"
# Reads that happen to be POSTs, and requests that carry their own replay protection.
EXCLUDED_PREFIXES = ("/v1/access/check", "/v1/simulations", "/v1/hooks/", "/v1/risk/score")
# Excluded reads that create a job when asked to respond asynchronously: then the key applies (one job per key).
ASYNC_PREFIXES = ("/v1/simulations",)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_headers: Mapped[list[list[str]]] = mapped_column(JSONType, default=list)
    response_body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (UniqueConstraint("principal", "key"),)


def purge_expired(session: Session, now: dt.datetime) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)


KEPT_HEADERS = frozenset({"content-type", "location", "etag", "preference-applied"})


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, ttl: dt.timedelta = dt.timedelta(hours=24)) -> None:
        self.app = app
        self.ttl = ttl
        self._routes: list[tuple[APIRoute, frozenset[str] | None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        respond_async = prefers_async(
            ", ".join(v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"prefer")
        )
        path = scope["path"]
        if path.startswith(EXCLUDED_PREFIXES) and not (respond_async and path.startswith(ASYNC_PREFIXES)):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not KEY_RE.match(key):
            await problem_response(
                request,
                422,
                "Idempotency-Key must be 1 to 200 printable ASCII characters.",
                errors=[{"loc": ["header", "Idempotency-Key"], "msg": "invalid key", "type": "value_error"}],
            )(scope, receive, send)
            return
        scopes = self._route_scopes(scope)
        token = bearer_token(headers.get("authorization"))
        if scopes is None or token is None:  # no such route (404, 405), no token (401) or no auth: nothing to keep
            await self.app(scope, receive, send)
            return
        try:
            principal = (await authorize(scope["app"].state, token, scopes)).actor
        except DomainError as exc:
            await _refusal(request, exc)(scope, receive, send)
            return
        body = await _read_body(receive)
        parts = [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body]
        if respond_async:
            # An asynchronous request is another request than the synchronous one: one key cannot serve both.
            parts.append(RESPOND_ASYNC.encode())
        digest = hashlib.sha256(b"\n".join(parts)).hexdigest()
        app_state = scope["app"].state
        db: Database = app_state.db
        now = app_state.clock.now()
        session = db.session(write=True)
        try:
            try:
                claim = await run_in_threadpool(self._claim, session, principal, key, digest, now)
            except Exception as exc:
                unavailable = database_problem(request, exc)
                if unavailable is None:
                    raise
                await unavailable(scope, _empty_receive, send)  # answered, not raised: the connection stays usable
                return
            if claim is not None:
                await self._answer_existing(request, claim, digest, scope, send)
                return
            await self._run(scope, body, send, session, principal, key, digest, now, request)
        finally:
            await run_in_threadpool(session.close)

    def _route_scopes(self, scope: Scope) -> frozenset[str] | None:
        """The scopes of the API route that will answer (None: no route, or one without a token), read once each."""
        if self._routes is None:
            self._routes = [(route, required_scopes(route.dependant)) for route in iter_api_routes(scope["app"])]
        path = get_route_path(scope)
        for route, scopes in self._routes:
            # The regex first: a full match on every route costs ~10 µs each, the regex well under 1.
            if route.path_regex.match(path) and route.matches(scope)[0] is Match.FULL:
                return scopes
        return None

    def _claim(
        self, session: Session, principal: str, key: str, digest: str, now: dt.datetime
    ) -> IdempotencyKey | None:
        """Returns the stored row if the key was used; otherwise reserves it in this transaction."""
        existing = session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.principal == principal, IdempotencyKey.key == key)
        )
        if existing is not None and existing.expires_at > now:
            return existing
        if existing is not None:
            session.delete(existing)
            session.flush()
        row = IdempotencyKey(
            principal=principal,
            key=key,
            request_hash=digest,
            status_code=0,
            response_headers=[],
            response_body=b"",
            created_at=now,
            expires_at=now + self.ttl,
        )
        session.add(row)
        try:
            session.flush()  # a concurrent holder of the key makes this wait, then fail
        except IntegrityError:
            session.rollback()
            winner = session.scalar(
                select(IdempotencyKey).where(IdempotencyKey.principal == principal, IdempotencyKey.key == key)
            )
            if winner is None:
                raise
            return winner
        session.info["idempotency_row"] = row
        return None

    async def _answer_existing(
        self, request: Request, row: IdempotencyKey, digest: str, scope: Scope, send: Send
    ) -> None:
        if row.request_hash != digest:
            response = problem_response(
                request,
                422,
                "This Idempotency-Key was used with a different request.",
                errors=[
                    {"loc": ["header", "Idempotency-Key"], "msg": "reused with another body", "type": "value_error"}
                ],
            )
            await response(scope, _empty_receive, send)
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in row.response_headers]
        headers.append((b"idempotent-replayed", b"true"))
        headers.append((b"content-length", str(len(row.response_body)).encode()))
        await send({"type": "http.response.start", "status": row.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": row.response_body, "more_body": False})

    async def _run(
        self,
        scope: Scope,
        body: bytes,
        send: Send,
        session: Session,
        principal: str,
        key: str,
        digest: str,
        now: dt.datetime,
        request: Request,
    ) -> None:
        scope.setdefault("state", {})[SESSION_STATE_KEY] = session
        messages: list[Message] = []
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def capture(message: Message) -> None:
            messages.append(message)

        await self.app(scope, replay, capture)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start else 500
        payload = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if status < 500:
            kept = [
                [k.decode("latin-1"), v.decode("latin-1")]
                for k, v in (start or {}).get("headers", [])
                if k.decode("latin-1").lower() in KEPT_HEADERS
            ]
            try:
                await run_in_threadpool(_store_and_commit, session, status, kept, payload)
            except Exception:
                await run_in_threadpool(session.rollback)
                response = problem_response(
                    request,
                    503,
                    "The change could not be saved; retry with the same key.",
                    headers={"Retry-After": "2"},
                )
                await response(scope, _empty_receive, send)
                return
        else:
            await run_in_threadpool(session.rollback)
        for message in messages:
            await send(message)


def _refusal(request: Request, exc: DomainError) -> Any:
    """The same problem document the app's handler makes of the error, answered before any replay."""
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


def _store_and_commit(session: Session, status: int, headers: list[list[str]], body: bytes) -> None:
    row: IdempotencyKey = session.info.pop("idempotency_row")
    row.status_code = status
    row.response_headers = headers
    row.response_body = body
    if status >= 400:
        # A refused request changed nothing: undo the endpoint's work but keep the answer for replays.
        session.rollback()
        session.add(
            IdempotencyKey(
                principal=row.principal,
                key=row.key,
                request_hash=row.request_hash,
                status_code=status,
                response_headers=headers,
                response_body=body,
                created_at=row.created_at,
                expires_at=row.expires_at,
            )
        )
    session.commit()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def describe(*, only_async: bool = False) -> dict[str, Any]:
    """The header as an OpenAPI parameter, added to every POST that honours it (`only_async`: a read that honours
    it only with `Prefer: respond-async`, when it creates a job)."""
    when = "With `Prefer: respond-async` only (the request then creates a job): " if only_async else ""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[\x21-\x7e]+$"},
        "description": when + "Makes a retry safe: the same key and body replay the first response (kept 24 hours); "
        "the same key with another body answers 422. Keys are scoped to the token's subject.",
    }
