from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.core.types import InputModel
from app.notify.events import EVENT_TYPES

if TYPE_CHECKING:
    EventType = str
else:  # the one list of event types (`events.EVENT_MODELS`), and "*" for every one
    EventType = Literal[(*EVENT_TYPES, "*")]
TemplateKey = Literal[
    "client_intro", "successor_briefing", "manager_summary", "signoff_reminder", "follow_up_due", "approval_reminder"
]
Status = Literal["pending", "sent", "failed", "dead", "acknowledged", "withdrawn", "skipped"]
Channel = Literal["email", "webhook", "phone", "none"]
EndpointStatus = Literal["active", "disabled", "deleted"]


class WebhookEndpointCreate(InputModel):
    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://",
        description="Where events are POSTed. Private, loopback, link-local and other non-global addresses are "
        "refused, in IPv6 spellings too (IPv4-mapped, NAT64, 6to4, Teredo); HANDOVER_WEBHOOK_ALLOW_PRIVATE "
        "(development and tests) admits loopback only; https only in production.",
        examples=["https://crm.example.com/hooks/handover"],
    )
    event_types: list[EventType] = Field(
        min_length=1, max_length=50, description='The event types to receive; "*" receives every type.'
    )
    description: str | None = Field(None, max_length=500, description="What this endpoint is for, for people.")


class WebhookEndpointOut(BaseModel):
    id: int = Field(description="The endpoint id.")
    url: str = Field(description="Where events are POSTed.")
    description: str | None = Field(description="What this endpoint is for.")
    event_types: list[str] = Field(description="The event types it receives.")
    status: EndpointStatus = Field(description="active; disabled (the receiver answered 410 Gone); deleted.")
    status_reason: str | None = Field(description="Why it is disabled or deleted.")
    created_by: str = Field(description="Who registered it.")
    created_at: dt.datetime = Field(description="When it was registered.")
    updated_at: dt.datetime = Field(description="When its status last changed.")
    failure_streak: int = Field(description="Failed delivery attempts in a row (0 after a success).")
    paused_until: dt.datetime | None = Field(
        description="The circuit breaker: until when no delivery to it is tried (null: not paused). Set after "
        "HANDOVER_DELIVERY_BREAKER_FAILURES failures in a row, doubling on each failure after a pause."
    )


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(
        description="The `whsec_` signing secret (Standard Webhooks). Shown only in this response: store it now."
    )


class ReplayIn(InputModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: AwareDatetime = Field(alias="from", description="Messages created at or after this time (with offset).")
    to: AwareDatetime = Field(description="… and before this time; at most 31 days after `from`.")


class ReplayOut(BaseModel):
    endpoint_id: int = Field(description="The endpoint whose messages were re-queued.")
    count: int = Field(description="How many dead or failed messages were re-queued (at most 10,000 per call).")
    more: bool = Field(description="More messages of the window are left: call again (the same window).")


class DeliveryOut(BaseModel):
    id: int = Field(description="The attempt's id; retry its message with POST /v1/deliveries/{id}/retry.")
    message: int = Field(description="The outbox message this attempt delivered.")
    message_id: str = Field(description="The message's webhook-id, the same on every attempt.")
    event_type: str | None = Field(description="The event type sent.")
    attempt: int = Field(description="1 for the first try, 2 for the first retry, …")
    attempted_at: dt.datetime = Field(description="When the attempt started.")
    duration_ms: int = Field(description="How long the attempt took.")
    succeeded: bool = Field(description="Only a 2xx answer counts.")
    http_status: int | None = Field(description="The receiver's status code, if it answered.")
    error: str | None = Field(description="Why the attempt failed.")
    response_excerpt: str | None = Field(description="The first 1,000 characters of the receiver's answer.")
    message_status: Status = Field(description="The message's status now.")


class MessageOut(BaseModel):
    """An outbox message after a manual retry."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The outbox message id.")
    message_id: str = Field(description="The webhook-id (events) or Message-ID (email), the same on every attempt.")
    category: Literal["event", "notification"] = Field(description="A webhook event or a notification.")
    event_type: str | None = Field(description="The event type (webhook deliveries).")
    template: str | None = Field(description="The template (notifications).")
    channel: Channel = Field(description="How it is delivered.")
    status: Status = Field(description="pending until the worker's next attempt.")
    attempts: int = Field(description="Attempts so far.")
    next_attempt_at: dt.datetime | None = Field(description="When the worker tries next.")
    last_error: str | None = Field(description="Why the last attempt failed.")


class NotificationOut(BaseModel):
    id: int = Field(description="The notification id.")
    message_id: str = Field(description="The Message-ID (email) or webhook-id (webhook), the same on every attempt.")
    kind: Literal["client", "internal"] = Field(description="To a client contact, or to an employee.")
    template: TemplateKey = Field(description="Which message it is.")
    locale: str = Field(description="The template version used (after fallback).")
    channel: Channel = Field(description="email, webhook (the CRM tells the contact), phone or none (not sent).")
    recipient: str | None = Field(description="The email address, for email.")
    endpoint_id: int | None = Field(description="The webhook endpoint, for webhook.")
    handover_id: int | None = Field(description="The handover that caused it, if any.")
    client: str | None = Field(description="The client it is about, if any.")
    status: Status = Field(
        description="pending · sent · failed (will retry) · dead · acknowledged · withdrawn · skipped."
    )
    attempts: int = Field(description="Attempts so far.")
    last_error: str | None = Field(description="Why the last attempt failed, or why it was skipped or withdrawn.")
    last_delivery_id: int | None = Field(description="The last attempt; retry a dead notification with it.")
    not_before: dt.datetime = Field(description="Not sent before this time.")
    next_attempt_at: dt.datetime | None = Field(description="When the worker tries next (null: no more tries).")
    last_attempt_at: dt.datetime | None = Field(description="When it was last tried.")
    sent_at: dt.datetime | None = Field(description="When it was first delivered.")
    acknowledged_at: dt.datetime | None = Field(description="When the recipient followed the acknowledgment link.")
    created_at: dt.datetime = Field(description="When it was written to the outbox.")
    subject: str | None = Field(description="The subject as rendered for the last attempt.")


class AckOut(BaseModel):
    id: int = Field(description="The notification acknowledged.")
    status: Literal["acknowledged"] = Field(description="Always acknowledged.")
    acknowledged_at: dt.datetime = Field(description="When it was first acknowledged.")
    message: str = Field(description="A thank-you for the person who followed the link.")


class TemplatePut(InputModel):
    subject: str = Field(
        min_length=1, max_length=1000, description="Jinja template of the subject line (rendered on one line)."
    )
    body: str = Field(min_length=1, max_length=50_000, description="Jinja template of the plain-text body.")


class TemplateOut(BaseModel):
    key: TemplateKey = Field(description="Which message the template is for.")
    locale: str = Field(description="The language version, a BCP 47 tag.")
    subject: str = Field(description="Jinja template of the subject line.")
    body: str = Field(description="Jinja template of the plain-text body.")
    builtin: bool = Field(description="True while the shipped version is in use (never edited).")
    version: int = Field(description="0 for the shipped version, then 1, 2, … per edit.")
    updated_by: str | None = Field(description="Who last edited it (null: never edited).")
    updated_at: dt.datetime | None = Field(description="When it was last edited.")
    variables: list[str] = Field(description="The top-level variables this template receives.")
