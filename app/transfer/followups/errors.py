"""The follow-ups' refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable


class FollowUpNotFound(NotFound):
    """No follow-up with this id, or not within the caller's reach."""

    slug, title = "follow-up-not-found", "No such follow-up"


class NotTheAssignee(Forbidden):
    """Completing a follow-up as someone other than its assignee, their manager or an admin."""

    slug, title = "not-the-assignee", "Only the assignee, their manager or an admin may complete it"


class FollowUpNotOpen(Conflict):
    """Completing a follow-up that is not open."""

    slug, title = "follow-up-not-open", "The follow-up is not open"


class FirstContactInvalid(Unprocessable):
    """Completing a first contact without `first_contact_at`, or with one in the future."""

    slug, title = "first-contact-invalid", "The first contact time is missing or in the future"


class ReportWindowInvalid(Unprocessable):
    """A retention report whose `from` is not before `to`."""

    slug, title = "report-window-invalid", "The report window is not valid"
