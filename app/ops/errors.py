"""The ops module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import NotFound, ServiceUnavailable


class NotReady(ServiceUnavailable):
    """Readiness probe: the database cannot be reached."""

    slug, title = "not-ready", "The service is not ready"


class DocsAssetNotFound(NotFound):
    """A documentation asset (Swagger UI, ReDoc) the package does not ship."""

    slug, title = "docs-asset-not-found", "No such documentation asset"
