"""Who holds a leaver's clients while no successor can: the interim owner."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.directory import service as directory
from app.directory.models import Employee


def interim_owner(session: Session, leaver: str, *, at: dt.datetime, settings: Settings) -> str | None:
    """The leaver's manager, walking up the chain past anyone who cannot act at `at`; else the configured
    fallback (`HANDOVER_INTERIM_OWNER`) when that person can act; else nobody."""
    found = directory.first_acting_manager(session, leaver, at)
    if found is not None:
        return found
    fallback = settings.interim_owner
    if fallback and fallback != leaver and directory.can_act(session.get(Employee, fallback), at):
        return fallback
    return None
