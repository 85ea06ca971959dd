"""Request-scoped dependencies: one session and one commit per request; the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.clock import Clock
from app.core.db import Database
from app.core.idempotency import SESSION_STATE_KEY

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """Commits once when the endpoint returns (before the response is sent); services only flush."""
    shared: Session | None = request.scope.get("state", {}).get(SESSION_STATE_KEY)
    if shared is not None:
        # The idempotency middleware owns this transaction: it commits the effect with the key.
        yield shared
        return
    db: Database = request.app.state.db
    session = db.session(write=request.method not in READ_METHODS)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_now(request: Request) -> dt.datetime:
    clock: Clock = request.app.state.clock
    return clock.now()


# scope="function": the commit happens before the response leaves, so a failed commit is an error
# response, never a 200 for data that was not saved.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
ClockDep = Annotated[Clock, Depends(get_clock)]
Now = Annotated[dt.datetime, Depends(get_now)]
