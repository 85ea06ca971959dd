"""The ops module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import ServiceUnavailable


class NotReady(ServiceUnavailable):
    """Readiness probe: the database cannot be reached."""

    slug, title = "not-ready", "The service is not ready"
