"""The jobs module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import NotFound


class JobNotFound(NotFound):
    """No job with this id, or not one of the caller's own."""

    slug, title = "job-not-found", "No such job"
