"""The access module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable


class GrantInvalid(Unprocessable):
    """A grant naming unknown people or clients, or with a window that does not hold."""

    slug, title = "grant-invalid", "The grant is not valid"


class GrantNotFound(NotFound):
    """No access grant with this id."""

    slug, title = "grant-not-found", "No such access grant"


class AccessRecordNotFound(NotFound):
    """An access check naming a record the book does not hold."""

    slug, title = "access-record-not-found", "No such record"


class GrantAlreadyRevoked(Conflict):
    """Revoking a grant that was already revoked."""

    slug, title = "grant-already-revoked", "The grant is already revoked"


class AccessCheckNotOwn(Forbidden):
    """An employee's token checking someone else's access."""

    slug, title = "access-check-not-own", "Only one's own access may be checked"


class AccessEventsNotAllowed(Forbidden):
    """Reporting access events with a role other than the CRM integration, hr or admin."""

    slug, title = "access-events-not-allowed", "The caller may not report access events"


class AccessEventsInvalid(Unprocessable):
    """A batch of access events with invalid rows; nothing is written."""

    slug, title = "access-events-invalid", "Some access events are not valid"


class AlertNotFound(NotFound):
    """No alert with this id."""

    slug, title = "alert-not-found", "No such alert"


class AlertAlreadyResolved(Conflict):
    """Resolving an alert that is already resolved."""

    slug, title = "alert-already-resolved", "The alert is already resolved"
