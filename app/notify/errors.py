"""The notify module's refusals: each with its own problem type."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable


class AckLinkInvalid(Forbidden):
    """An acknowledgment link whose signature (or notification id) is not valid."""

    slug, title = "ack-link-invalid", "The acknowledgment link is not valid"


class NotificationNotFound(NotFound):
    """No notification with this id."""

    slug, title = "notification-not-found", "No such notification"


class WebhookEndpointNotFound(NotFound):
    """No webhook endpoint with this id (or it was deleted)."""

    slug, title = "webhook-endpoint-not-found", "No such webhook endpoint"


class WebhookEndpointNotActive(Conflict):
    """Retrying or replaying to a webhook endpoint that is disabled or deleted."""

    slug, title = "webhook-endpoint-not-active", "The webhook endpoint is not active"


class WebhookUrlRefused(Unprocessable):
    """A webhook URL that is not https, resolves to a private address or is otherwise refused."""

    slug, title = "webhook-url-refused", "The webhook URL is refused"


class DeliveryNotFound(NotFound):
    """No webhook delivery with this id."""

    slug, title = "delivery-not-found", "No such delivery"


class DeliveryNotRetryable(Conflict):
    """Retrying a delivery whose message is neither dead nor failed; `allowed` lists the states that are."""

    slug, title = "delivery-not-retryable", "The delivery cannot be retried"


class ReplayWindowInvalid(Unprocessable):
    """A replay whose `to` is not after `from`, or that spans more than the replay limit."""

    slug, title = "replay-window-invalid", "The replay window is not valid"


class TemplateNotFound(NotFound):
    """No notification template with this key in this locale."""

    slug, title = "template-not-found", "No such notification template"


class TemplateDoesNotRender(Unprocessable):
    """A template whose subject or body does not render; `errors` names the field."""

    slug, title = "template-does-not-render", "The template does not render"
