"""The interim owner rule: the leaver's manager, walking up past anyone who cannot act, else the fallback."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory.models import Employee
from app.transfer.interim import interim_owner
from tests.conftest import START
from tests.support.company import EFFECTIVE


def _status(db: Database, who: str, status: str, exit_at: dt.datetime | None = None) -> None:
    with transaction(db) as s:
        s.execute(update(Employee).where(Employee.external_id == who).values(status=status, exit_at=exit_at))


def test_the_manager_when_active(db: Database, company: dict[str, Any], settings: Settings) -> None:
    with transaction(db) as s:
        assert interim_owner(s, "e0", at=EFFECTIVE, settings=settings) == "m1"


def test_walks_up_past_a_departed_or_leaving_manager(db: Database, company: dict[str, Any], settings: Settings) -> None:
    _status(db, "m1", "departed")
    with transaction(db) as s:
        assert interim_owner(s, "e0", at=EFFECTIVE, settings=settings) == "ceo"
    # Leaving, but still there at the effective time: m1 can act; leaving before it: the walk goes on.
    _status(db, "m1", "leaving", EFFECTIVE + dt.timedelta(days=1))
    with transaction(db) as s:
        assert interim_owner(s, "e0", at=EFFECTIVE, settings=settings) == "m1"
    _status(db, "m1", "leaving", EFFECTIVE - dt.timedelta(days=1))
    with transaction(db) as s:
        assert interim_owner(s, "e0", at=EFFECTIVE, settings=settings) == "ceo"


def test_the_fallback_when_nobody_up_the_chain_can_act(
    db: Database, company: dict[str, Any], settings: Settings, client: TestClient
) -> None:
    _status(db, "m1", "departed")
    _status(db, "ceo", "departed")
    with transaction(db) as s:
        assert interim_owner(s, "e0", at=START, settings=settings) is None
        assert interim_owner(s, "e0", at=START, settings=settings.model_copy(update={"interim_owner": "m2"})) == "m2"
        # A fallback who cannot act is no interim owner either.
        assert (
            interim_owner(s, "e0", at=START, settings=settings.model_copy(update={"interim_owner": "nobody"})) is None
        )
