"""The directory module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import NotFound, Unprocessable


class EmployeeNotFound(NotFound):
    """No employee with this external id, or not within the caller's reach."""

    slug, title = "employee-not-found", "No such employee"


class ClientNotFound(NotFound):
    """No client with this external id, or not within the caller's reach."""

    slug, title = "client-not-found", "No such client"


class EmployeeRecordsInvalid(Unprocessable):
    """Employee rows with duplicate ids, unknown managers or self-management; nothing is written."""

    slug, title = "employee-records-invalid", "Some employee records are not valid"


class ManagementCycle(Unprocessable):
    """Employee rows that would close a management cycle; `errors` has a `cycle` entry per row of the loop."""

    slug, title = "management-cycle", "The change would make a management cycle"


class ClientRecordsInvalid(Unprocessable):
    """Client rows with duplicate ids or unknown owners or account-team members; nothing is written."""

    slug, title = "client-records-invalid", "Some client records are not valid"


class SearchTextInvalid(Unprocessable):
    """A search text `q` containing NUL characters."""

    slug, title = "search-text-invalid", "The search text is not valid"
