"""The intake module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import ServiceUnavailable, Unauthorized, Unprocessable


class HrWebhookNotConfigured(ServiceUnavailable):
    """The HR webhook is called while no webhook secret is configured."""

    slug, title = "hr-webhook-not-configured", "The HR webhook is not configured"


class WebhookSignatureInvalid(Unauthorized):
    """An HR webhook call whose signature is missing, stale or not valid."""

    slug, title = "webhook-signature-invalid", "The webhook signature is not valid"


class WebhookIdTooLong(Unprocessable):
    """An HR webhook call whose webhook-id header is too long."""

    slug, title = "webhook-id-too-long", "The webhook-id is too long"


class HrEventInvalid(Unprocessable):
    """An HR event body that does not validate."""

    slug, title = "hr-event-invalid", "The HR event is not valid"


class HrEventInFuture(Unprocessable):
    """An HR event whose timestamp is in the future."""

    slug, title = "hr-event-in-future", "The HR event's timestamp is in the future"
