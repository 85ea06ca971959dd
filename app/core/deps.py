"""Request-scoped dependencies: one session and one commit per request; the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.clock import Clock
from app.core.db import Database
from app.core.idempotency import SESSION_STATE_KEY

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _cleanup_limiter(request: Request) -> anyio.CapacityLimiter:
    """Commits and closes get threads of their own: if they queued behind endpoints waiting for a pooled
    connection, the sessions holding every connection could never finish (a pool deadlock under load)."""
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "cleanup_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(64)
        request.app.state.cleanup_limiter = limiter
    return limiter


def read_limiter(request: Request) -> anyio.CapacityLimiter:
    """Threads for the access checks: as many as the pool keeps connections (each check holds one at a time).

    With the default 40 threads and a pool of 10, a burst checks out overflow connections that are closed again on
    return: under 64 connections of load about one request in ten opened a new PostgreSQL session.
    """
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "read_limiter", None)
    if limiter is None:
        db: Database = request.app.state.db
        limiter = anyio.CapacityLimiter(db.settings.database_pool_size)
        request.app.state.read_limiter = limiter
    return limiter


async def get_session(request: Request) -> AsyncIterator[Session]:
    """Commits once when the endpoint returns (before the response is sent); services only flush."""
    shared: Session | None = request.scope.get("state", {}).get(SESSION_STATE_KEY)
    if shared is not None:
        # The idempotency middleware owns this transaction: it commits the effect with the key.
        yield shared
        return
    db: Database = request.app.state.db
    session = db.session(write=request.method not in READ_METHODS)
    limiter = _cleanup_limiter(request)
    try:
        yield session
        await anyio.to_thread.run_sync(session.commit, limiter=limiter)
    except BaseException:
        await anyio.to_thread.run_sync(session.rollback, limiter=limiter)
        raise
    finally:
        await anyio.to_thread.run_sync(session.close, limiter=limiter)


def db_of(request: Request) -> Database:
    """A plain function, not a dependency: the access check takes `Request` and saves a dependency resolution."""
    db: Database = request.app.state.db
    return db


def now_of(request: Request) -> dt.datetime:
    """What `Now` gives, as a plain function for the access check (see `db_of`)."""
    clock: Clock = request.app.state.clock
    return clock.now()


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_now(request: Request) -> dt.datetime:
    return now_of(request)


# scope="function": the commit happens before the response leaves, so a failed commit is an error
# response, never a 200 for data that was not saved.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
ClockDep = Annotated[Clock, Depends(get_clock)]
Now = Annotated[dt.datetime, Depends(get_now)]
