"""The outbox (one row per message to one destination), its delivery attempts, webhook endpoints and templates.

Events and notifications share one outbox so that one worker loop, one lease and one retry schedule serve both,
and `POST /v1/deliveries/{id}/retry` works for an email as for a webhook.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import ACTOR_LENGTH, Base, JSONType, UTCDateTime

ENDPOINT_STATUSES = ("active", "disabled", "deleted")
CATEGORIES = ("event", "notification")
CHANNELS = ("email", "webhook", "phone", "none")
STATUSES = ("pending", "sent", "failed", "dead", "acknowledged", "withdrawn", "skipped")
# Rows the worker may claim: never tried, or tried and scheduled for another try.
DUE_STATUSES = ("pending", "failed")

BigId = BigInteger().with_variant(Integer, "sqlite")


class WebhookEndpoint(Base):
    """A receiver of signed events; the secret is kept to sign with and shown to the caller once."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The circuit breaker, in the database so that every worker sees it: failed attempts in a row, how many times
    # in a row the breaker opened (the next pause doubles), and until when no worker claims the endpoint's rows.
    failure_streak: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    pauses: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebhookSubscription(Base):
    """Event types per endpoint, as rows: one query finds every endpoint subscribed to a set of types."""

    __tablename__ = "webhook_subscription"

    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class OutboxMessage(Base):
    """One message to one destination, written in the transaction of the change that caused it."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)  # webhook-id / Message-ID: same on every try
    category: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str | None] = mapped_column(String(20))  # notifications: client · internal
    template: Mapped[str | None] = mapped_column(String(50))
    locale: Mapped[str | None] = mapped_column(String(35))
    channel: Mapped[str] = mapped_column(String(20))
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoint.id"), index=True)
    recipient: Mapped[str | None] = mapped_column(String(320))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Not foreign keys: the outbox outlives what it talks about, and notify depends on no other module's tables.
    handover_id: Mapped[int | None] = mapped_column(Integer, index=True)
    client_id: Mapped[str | None] = mapped_column(String(100), index=True)
    subject: Mapped[str | None] = mapped_column(Text)  # as rendered for the last try
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Only rows still to send: the index stays small however many sent rows the table keeps.
        Index(
            "ix_outbox_message_due",
            "next_attempt_at",
            sqlite_where=text("status IN ('pending', 'failed')"),
            postgresql_where=text("status IN ('pending', 'failed')"),
        ),
        Index("ix_outbox_message_category_status", "category", "status"),
    )


class Delivery(Base):
    """One attempt to deliver one outbox message: what was tried, when, and what came back."""

    __tablename__ = "delivery"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("outbox_message.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoint.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column()
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(String(1000))


class NotificationTemplate(Base):
    """An edited (key, locale) template; the built-in versions ship as files and are used when no row exists."""

    __tablename__ = "notification_template"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    locale: Mapped[str] = mapped_column(String(35), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
