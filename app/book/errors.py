"""The book module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import NotFound, Unprocessable


class RecordNotFound(NotFound):
    """No record of this kind with this external id, or not within the caller's reach."""

    slug, title = "record-not-found", "No such record"


class RecordRowsInvalid(Unprocessable):
    """Record rows with duplicate (kind, external id) pairs or unknown owners or clients; nothing is written."""

    slug, title = "record-rows-invalid", "Some records are not valid"
