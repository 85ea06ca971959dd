"""The risk module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable


class NoActiveRiskModel(Conflict):
    """Scoring while no risk model version is active."""

    slug, title = "no-active-risk-model", "No risk model version is active"


class RiskModelVersionNotFound(NotFound):
    """No risk model version with this number."""

    slug, title = "risk-model-version-not-found", "No such risk model version"


class UnknownRiskModelVersion(Unprocessable):
    """A scoring request naming a risk model version that does not exist."""

    slug, title = "unknown-risk-model-version", "The named risk model version does not exist"


class RiskModelInvalid(Unprocessable):
    """A risk model that does not validate; nothing is saved."""

    slug, title = "risk-model-invalid", "The risk model is not valid"


class RiskModelNotActivatable(Conflict):
    """Activating a stored version that no longer validates; save a corrected model instead."""

    slug, title = "risk-model-not-activatable", "The risk model version cannot be activated"


class NotEnoughOutcomes(Conflict):
    """Fitting with fewer completed outcomes than required; `required`, `available` and `missing` say how many."""

    slug, title = "not-enough-outcomes", "Not enough completed outcomes to fit"


class OutcomesNotFittable(Conflict):
    """Fitting outcomes that cannot be fitted (e.g. all of one class)."""

    slug, title = "outcomes-not-fittable", "The outcomes cannot be fitted"


class UnknownClients(Unprocessable):
    """Scoring clients that do not exist or are outside the caller's reach."""

    slug, title = "unknown-clients", "Unknown clients"
