"""Notifications and outbound webhook events: written to the outbox in the caller's transaction, sent by the worker.

Nothing here sends anything or commits: a change and the messages it causes commit together or not at all.

Functions the workflow calls (one Session, no commit inside):

- `emit(session, event_type, payload, *, now)`: one outbox row per active endpoint subscribed to the type
  (or to "*"); `emit_many(session, events, *, now)` for many at once (one read of the subscriptions, one bulk
  insert). Receivers get `{"type", "timestamp", "data": payload}`, signed per
  Standard Webhooks; `webhook-id` is the row's `msg_<32 hex>`, the same on every retry.
- `emit_batches(session, event_type, key, items, *, common, now, size=500)`: the same, one event per `size`
  items (e.g. `client.reassigned` for a layoff of 20,000 clients is 40 events).
- `enqueue(session, *, kind, template, locale, channel, recipient, data, not_before, ..., now) -> int`.
- `message_row(...)` and `insert_messages(session, rows)` for many notifications at once (a handover's approval
  writes them: `app.transfer.messaging`), `withdraw` and `move_pending` for the messages of one case.

The outbox knows no workflow: `handover_id` on a row is the caller's key for the case it belongs to. What must be
re-checked at send time (a reminder whose items were signed meanwhile) is asked of a `SendChecks` the composition
root binds (`app.notify.worker`).

Event payloads (`data`) are built by the caller through the type's model in `app.notify.events`, the one list of
event types, from which the contract's `webhooks` section is generated too; ids are external ids, times ISO 8601.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import json
import logging
import secrets
from base64 import urlsafe_b64encode
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, exists, func, insert, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core import bulk
from app.core.config import Settings
from app.core.signing import generate_secret
from app.notify import events as event_models
from app.notify import rendering
from app.notify.channels import TargetRefused, resolve_target
from app.notify.errors import (
    AckLinkInvalid,
    DeliveryNotFound,
    DeliveryNotRetryable,
    NotificationNotFound,
    ReplayWindowInvalid,
    TemplateDoesNotRender,
    TemplateNotFound,
    WebhookEndpointNotActive,
    WebhookEndpointNotFound,
    WebhookUrlRefused,
)
from app.notify.models import (
    DUE_STATUSES,
    Delivery,
    NotificationTemplate,
    OutboxMessage,
    WebhookEndpoint,
    WebhookSubscription,
)

logger = logging.getLogger("handover.notify")

EVENT_TYPES = event_models.EVENT_TYPES
ALL_EVENTS = "*"
KINDS = ("client", "internal")
EVENT_BATCH = 500
PRIORITY_INTERNAL = 10_000_000  # people inside the company hear before any client


# ---- ids and JSON -----------------------------------------------------------------------------


def new_message_id() -> str:
    """`msg_<32 hex>` from 128 random bits; token_hex skips uuid4's UUID object (timeit 2.1 -> 0.65 µs; py-spy put
    uuid4 at 11 % of a 500-leaver approval's CPU, which makes 75,000 ids)."""
    return f"msg_{secrets.token_hex(16)}"


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    """Times and decimals as the wire shows them; anything else unserialisable fails here, in the caller."""
    out: dict[str, Any] = json.loads(json.dumps(data, default=_json_default, ensure_ascii=False))
    return out


# ---- events -----------------------------------------------------------------------------------


Payload = event_models.EventData | Mapping[str, Any]
Events = list[tuple[str, Payload]]
"""Events held back for one `emit_many` (a batch of handovers), in the order they were emitted."""


def emit(session: Session, event_type: str, payload: Payload, *, now: dt.datetime, into: Events | None = None) -> None:
    """One row per active endpoint subscribed to the type (or to "*"); with `into`, the event is appended there
    instead, for the caller's one `emit_many`."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    if into is not None:
        into.append((event_type, payload))
        return
    emit_many(session, [(event_type, payload)], now=now)


def emit_many(session: Session, events: Events, *, now: dt.datetime) -> None:
    """`emit` of every event, in order, with one read of the subscriptions and one bulk insert: a layoff's batch
    of handovers emits a thousand events at once (a statement per event cost ~1 ms of round trip each)."""
    if not events:
        return
    types = {t for t, _ in events}
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown!r}")
    ep, sub = WebhookEndpoint, WebhookSubscription
    subscribed: dict[str, set[int]] = defaultdict(set)
    for endpoint_id, event_type in session.execute(
        select(ep.id, sub.event_type)
        .join(sub, sub.endpoint_id == ep.id)
        .where(ep.status == "active", sub.event_type.in_([*types, ALL_EVENTS]))
    ):
        subscribed[event_type].add(endpoint_id)
    targets = {t: sorted(subscribed[t] | subscribed[ALL_EVENTS]) for t in types}
    stamp = now.isoformat()
    rows = []
    for event_type, payload in events:
        if not targets[event_type]:
            continue
        envelope = bulk.JsonText(
            json.dumps(
                {"type": event_type, "timestamp": stamp, "data": event_models.payload(event_type, payload)},
                default=_json_default,
                ensure_ascii=False,
            )
        )
        for endpoint_id in targets[event_type]:
            rows.append(
                {
                    "message_id": new_message_id(),
                    "category": "event",
                    "event_type": event_type,
                    "channel": "webhook",
                    "endpoint_id": endpoint_id,
                    "payload": envelope,
                    "status": "pending",
                    "priority": 0,
                    "attempts": 0,
                    "not_before": now,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    bulk.insert_rows(session, cast(Table, OutboxMessage.__table__), rows)


def emit_batches(
    session: Session,
    event_type: str,
    key: str,
    items: Sequence[Any],
    *,
    common: Mapping[str, Any],
    now: dt.datetime,
    size: int = EVENT_BATCH,
    into: Events | None = None,
    model: type[event_models.EventData] | None = None,
) -> int:
    """Large lists go out as several events of at most `size` items; returns the number of events. With `model`
    (the type's payload model; the workflow always passes it) each event is built and checked through it."""
    batches = max(1, -(-len(items) // size))
    for i in range(batches):
        part = list(items[i * size : (i + 1) * size])
        data: Payload = {**common, "batch": i + 1, "batches": batches, key: part}
        if model is not None:
            data = model.model_validate(data)
        emit(session, event_type, data, now=now, into=into)
    return batches


def subscribers(session: Session, event_type: str) -> list[int]:
    """Active endpoints subscribed to `event_type` (or to everything), in id order."""
    ep, sub = WebhookEndpoint, WebhookSubscription
    stmt = (
        select(ep.id)
        .where(
            ep.status == "active",
            exists().where(sub.endpoint_id == ep.id, sub.event_type.in_((event_type, ALL_EVENTS))),
        )
        .order_by(ep.id)
    )
    return list(session.scalars(stmt))


# ---- notifications ----------------------------------------------------------------------------


def message_row(
    *,
    kind: str,
    template: str,
    locale: str,
    channel: str,
    recipient: str | None,
    endpoint_id: int | None,
    data: Mapping[str, Any],
    not_before: dt.datetime,
    now: dt.datetime,
    handover_id: int | None = None,
    client_id: str | None = None,
    priority: int = 0,
    skip: str | None = None,
    for_bulk: bool = False,
) -> dict[str, Any]:
    """One outbox row as a dict for a bulk insert; a row that will not be sent is stored as skipped, with why.
    `for_bulk`: the payload as JSON text for `bulk.insert_rows` (serialised once, not serialised, parsed and
    serialised again: a layoff's approval writes 75,000 of them)."""
    return {
        "message_id": new_message_id(),
        "category": "notification",
        "event_type": f"notification.{template}" if channel == "webhook" else None,
        "kind": kind,
        "template": template,
        "locale": locale,
        "channel": channel,
        "endpoint_id": endpoint_id,
        "recipient": recipient,
        "payload": bulk.JsonText(json.dumps(data, default=_json_default, ensure_ascii=False))
        if for_bulk
        else jsonable(data),
        "handover_id": handover_id,
        "client_id": client_id,
        "status": "skipped" if skip else "pending",
        "priority": priority,
        "attempts": 0,
        "not_before": not_before,
        "next_attempt_at": None if skip else max(not_before, now),
        "last_error": skip,
        "created_at": now,
    }


def enqueue(
    session: Session,
    *,
    kind: str,
    template: str,
    locale: str,
    channel: str,
    recipient: str | None,
    data: Mapping[str, Any],
    not_before: dt.datetime,
    handover_id: int | None = None,
    client_id: str | None = None,
    priority: int = 0,
    now: dt.datetime,
) -> int:
    """One notification; `recipient` is an email address (email) or an endpoint id (webhook).

    Phone and none are recorded as skipped: nobody is told, and the list of notifications says so.
    A locale without a template falls back (same language, then the default locale) at send time.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if template not in rendering.KEYS:
        raise ValueError(f"unknown template {template!r}")
    endpoint_id = None
    skip = None
    if channel == "email":
        if not recipient:
            skip = "the recipient has no email address"
    elif channel == "webhook":
        endpoint = session.get(WebhookEndpoint, int(recipient)) if recipient and recipient.isdigit() else None
        if endpoint is None or endpoint.status != "active":
            skip = f"no active webhook endpoint {recipient}"
        else:
            endpoint_id = endpoint.id
    elif channel in ("phone", "none"):
        skip = f"channel {channel} is not delivered by this service"
    else:
        raise ValueError(f"unknown channel {channel!r}")
    row = message_row(
        kind=kind,
        template=template,
        locale=locale,
        channel=channel,
        recipient=recipient if channel == "email" else None,
        endpoint_id=endpoint_id,
        data=data,
        not_before=not_before,
        now=now,
        handover_id=handover_id,
        client_id=client_id,
        priority=priority,
        skip=skip,
    )
    result = session.execute(insert(OutboxMessage).returning(OutboxMessage.id), [row])
    return int(result.scalar_one())


# ---- locales ----------------------------------------------------------------------------------


def available_locales(session: Session) -> dict[str, set[str]]:
    """Locales with a template, per key: the built-in files plus every edited row."""
    out: dict[str, set[str]] = defaultdict(set)
    for key, locale in rendering.builtins():
        out[key].add(locale)
    for key, locale in session.execute(select(NotificationTemplate.key, NotificationTemplate.locale)):
        out[key].add(locale)
    return out


def pick_locale(wanted: Sequence[str | None], available: set[str], default: str) -> str:
    """The first wanted tag with a template (exactly, then by language: zh → zh-CN), else the default."""
    by_lower = {a.lower(): a for a in available}
    for tag in wanted:
        if not tag:
            continue
        if tag.lower() in by_lower:
            return by_lower[tag.lower()]
        language = tag.split("-", 1)[0].lower()
        same = sorted(a for a in available if a.split("-", 1)[0].lower() == language)
        if same:
            return same[0]
    if default in available:
        return default
    return "en" if "en" in available else sorted(available)[0]


# ---- messages of a case: withdraw, reschedule --------------------------------------------------


def insert_messages(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows built by `message_row(..., for_bulk=True)`, in one COPY (PostgreSQL) or executemany (SQLite)."""
    bulk.insert_rows(session, cast(Table, OutboxMessage.__table__), rows)


def withdraw(session: Session, *, handover_id: int, reason: str) -> int:
    """Every notification of the case not sent yet is withdrawn; returns how many. Events are not touched.

    `handover_id` is the caller's key for the case the messages belong to; the outbox does not interpret it."""
    m = OutboxMessage
    result = session.execute(
        update(m)
        .where(m.handover_id == handover_id, m.category == "notification", m.status.in_(DUE_STATUSES))
        .values(status="withdrawn", next_attempt_at=None, last_error=reason)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Unsent:
    """A notification of a case not tried yet, as the case's owner needs it to decide whether it still holds."""

    id: int
    template: str
    kind: str
    locale: str
    channel: str
    recipient: str | None
    client_id: str | None
    priority: int
    payload: dict[str, Any]
    not_before: dt.datetime


def unsent_for(session: Session, *, handover_id: int, templates: Sequence[str]) -> list[Unsent]:
    """The case's notifications of these templates still pending and never tried, in id order: one query."""
    m = OutboxMessage
    rows = session.execute(
        select(
            m.id, m.template, m.kind, m.locale, m.channel, m.recipient, m.client_id, m.priority, m.payload, m.not_before
        )
        .where(
            m.handover_id == handover_id,
            m.category == "notification",
            m.template.in_(list(templates)),
            m.status == "pending",
            m.attempts == 0,
        )
        .order_by(m.id)
    ).all()
    return [
        Unsent(r[0], r[1] or "", r[2] or "internal", r[3] or "", r[4], r[5], r[6], r[7], dict(r[8]), r[9]) for r in rows
    ]


def withdraw_ids(session: Session, ids: Sequence[int], *, reason: str) -> int:
    """These notifications, if still not sent, are withdrawn (one UPDATE); returns how many."""
    if not ids:
        return 0
    m = OutboxMessage
    result = session.execute(
        update(m)
        .where(m.id.in_(list(ids)), m.category == "notification", m.status.in_(DUE_STATUSES))
        .values(status="withdrawn", next_attempt_at=None, last_error=reason)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def move_pending(session: Session, *, handover_id: int, template: str, at: dt.datetime) -> None:
    """The case's notifications of `template` not tried yet go out at `at` instead."""
    m = OutboxMessage
    session.execute(
        update(m)
        .where(m.handover_id == handover_id, m.template == template, m.status == "pending", m.attempts == 0)
        .values(not_before=at, next_attempt_at=at)
        .execution_options(synchronize_session=False)
    )


def already_sent_for(session: Session, handover_ids: Sequence[int], templates: Sequence[str]) -> set[int]:
    """The cases among `handover_ids` that already have a message of one of `templates` (any status)."""
    m = OutboxMessage
    return set(
        session.scalars(
            select(m.handover_id).where(m.handover_id.in_(handover_ids), m.template.in_(templates)).distinct()
        )
    )


# ---- acknowledgment links ---------------------------------------------------------------------


def ack_signature(settings: Settings, notification_id: int, message_id: str) -> str:
    """HMAC over the id and the row's random message id: a link cannot be guessed, nor reused after a reset."""
    digest = hmac.new(settings.ack_link_key, f"ack:{notification_id}:{message_id}".encode(), hashlib.sha256).digest()
    return urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def ack_url(settings: Settings, notification_id: int, message_id: str) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/v1/notifications/{notification_id}/ack?sig={ack_signature(settings, notification_id, message_id)}"


def ack_target(
    session: Session, notification_id: int, sig: str, *, settings: Settings, lock: bool = False
) -> OutboxMessage:
    """The notification a valid link names; records nothing (what the GET of the link shows)."""
    stmt = select(OutboxMessage).where(OutboxMessage.id == notification_id, OutboxMessage.category == "notification")
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    expected = ack_signature(settings, notification_id, row.message_id) if row is not None else ""
    # One answer for an unknown id and a wrong signature: the link reveals nothing about other ids.
    if row is None or not hmac.compare_digest(expected.encode(), sig.encode()):
        raise AckLinkInvalid("This acknowledgment link is not valid.")
    return row


def acknowledge(
    session: Session, notification_id: int, sig: str, *, settings: Settings, now: dt.datetime
) -> tuple[OutboxMessage, bool]:
    """Valid link, confirmed (the POST of the page): acknowledged, audited once; returns (row, newly). A second
    confirmation answers `newly=False` and records nothing more."""
    row = ack_target(session, notification_id, sig, settings=settings, lock=True)
    if row.status == "acknowledged":
        return row, False
    row.status = "acknowledged"
    row.acknowledged_at = now
    row.next_attempt_at = None
    audit.record(
        session,
        actor="ack_link",  # the signed link is the only identity; no address in the immutable log
        action="notification.acknowledged",
        entity_type="notification",
        entity_id=str(row.id),
        data={"template": row.template, "handover": row.handover_id, "client": row.client_id},
        at=now,
    )
    session.flush()
    return row, True


# ---- reading notifications --------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationFilter:
    handover: int | None = None
    client: str | None = None
    status: str | None = None
    template: str | None = None


def _last_delivery() -> Any:
    return select(func.max(Delivery.id)).where(Delivery.message_pk == OutboxMessage.id).scalar_subquery()


def list_notifications(
    session: Session,
    flt: NotificationFilter,
    *,
    visible_handovers: Select[Any] | None,
    limit: int,
    offset: int,
) -> list[tuple[OutboxMessage, int | None]]:
    """`visible_handovers`: None for callers who see everything, else the handover ids they may see."""
    m = OutboxMessage
    stmt = select(m, _last_delivery()).where(m.category == "notification")
    if visible_handovers is not None:
        stmt = stmt.where(m.handover_id.in_(visible_handovers))
    if flt.handover is not None:
        stmt = stmt.where(m.handover_id == flt.handover)
    if flt.client:
        stmt = stmt.where(m.client_id == flt.client)
    if flt.status:
        stmt = stmt.where(m.status == flt.status)
    if flt.template:
        stmt = stmt.where(m.template == flt.template)
    rows = session.execute(stmt.order_by(m.id).limit(limit).offset(offset)).all()
    return [(r[0], r[1]) for r in rows]


def get_notification(
    session: Session, notification_id: int, *, visible_handovers: Select[Any] | None
) -> tuple[OutboxMessage, int | None]:
    m = OutboxMessage
    stmt = select(m, _last_delivery()).where(m.id == notification_id, m.category == "notification")
    if visible_handovers is not None:
        stmt = stmt.where(m.handover_id.in_(visible_handovers))
    row = session.execute(stmt).first()
    if row is None:
        raise NotificationNotFound(f"No notification {notification_id}.")
    return row[0], row[1]


# ---- webhook endpoints ------------------------------------------------------------------------


def check_url(url: str, settings: Settings) -> None:
    """Refuses private targets (unless allowed) and, in production, plain http."""
    errors = []
    if settings.environment == "production" and not url.lower().startswith("https://"):
        errors.append("must be https in production")
    else:
        try:
            resolve_target(url, allow_loopback=settings.webhook_allow_loopback)
        except TargetRefused as exc:
            errors.append(str(exc))
    if errors:
        raise WebhookUrlRefused(
            f"The webhook URL is refused: {errors[0]}.",
            errors=[{"loc": ["body", "url"], "msg": errors[0], "type": "url_refused"}],
        )


def subscriptions(session: Session, endpoint_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in endpoint_ids}
    if endpoint_ids:
        s = WebhookSubscription
        for endpoint_id, event_type in session.execute(
            select(s.endpoint_id, s.event_type).where(s.endpoint_id.in_(endpoint_ids)).order_by(s.event_type)
        ):
            out[endpoint_id].append(event_type)
    return out


def create_endpoint(
    session: Session,
    *,
    url: str,
    event_types: Sequence[str],
    description: str | None,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> WebhookEndpoint:
    check_url(url, settings)
    endpoint = WebhookEndpoint(
        url=url,
        description=description,
        secret=generate_secret(),
        status="active",
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    types = sorted(set(event_types))
    session.execute(insert(WebhookSubscription), [{"endpoint_id": endpoint.id, "event_type": t} for t in types])
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.created",
        entity_type="webhook_endpoint",
        entity_id=str(endpoint.id),
        data={"url": url, "event_types": types},
        at=now,
    )
    return endpoint


def list_endpoints(session: Session, *, include_deleted: bool, limit: int, offset: int) -> list[WebhookEndpoint]:
    stmt = select(WebhookEndpoint)
    if not include_deleted:
        stmt = stmt.where(WebhookEndpoint.status != "deleted")
    return list(session.scalars(stmt.order_by(WebhookEndpoint.id).limit(limit).offset(offset)))


def get_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise WebhookEndpointNotFound(f"No webhook endpoint {endpoint_id}.")
    return endpoint


def delete_endpoint(session: Session, endpoint: WebhookEndpoint, *, actor: str, now: dt.datetime) -> None:
    """The row stays (its deliveries are history); what it has not received yet is withdrawn."""
    if endpoint.status == "deleted":
        raise WebhookEndpointNotFound(f"No webhook endpoint {endpoint.id}.")
    endpoint.status = "deleted"
    endpoint.status_reason = f"deleted by {actor}"
    endpoint.updated_at = now
    m = OutboxMessage
    session.execute(
        update(m)
        .where(m.endpoint_id == endpoint.id, m.status.in_(DUE_STATUSES))
        .values(status="withdrawn", next_attempt_at=None, last_error="the webhook endpoint was deleted")
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.deleted",
        entity_type="webhook_endpoint",
        entity_id=str(endpoint.id),
        data={"url": endpoint.url},
        at=now,
    )
    session.flush()


def disable_endpoint(session: Session, endpoint_id: int, *, reason: str, now: dt.datetime) -> None:
    """A 410 Gone: the endpoint stops, and what was waiting for it is dead (retriable by hand once re-created)."""
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status == "active")
        .values(status="disabled", status_reason=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    m = OutboxMessage
    result = session.execute(
        update(m)
        .where(m.endpoint_id == endpoint_id, m.status.in_(DUE_STATUSES))
        .values(status="dead", next_attempt_at=None, last_error=f"endpoint disabled: {reason}")
        .execution_options(synchronize_session=False)
    )
    dead = int(getattr(result, "rowcount", 0) or 0)
    logger.warning(
        "webhook endpoint disabled",
        extra={"fields": {"event": "endpoint.disabled", "endpoint": endpoint_id, "reason": reason, "dead": dead}},
    )


def list_deliveries(
    session: Session, endpoint_id: int, *, limit: int, offset: int
) -> list[tuple[Delivery, OutboxMessage]]:
    stmt = (
        select(Delivery, OutboxMessage)
        .join(OutboxMessage, OutboxMessage.id == Delivery.message_pk)
        .where(Delivery.endpoint_id == endpoint_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [(r[0], r[1]) for r in session.execute(stmt).all()]


def retry_delivery(session: Session, delivery_id: int, *, actor: str, now: dt.datetime) -> OutboxMessage:
    """Sends the delivery's message once more, now; if that try fails too, it is dead again."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise DeliveryNotFound(f"No delivery {delivery_id}.")
    row = session.scalar(select(OutboxMessage).where(OutboxMessage.id == delivery.message_pk).with_for_update())
    assert row is not None  # the foreign key holds it
    if row.status not in ("dead", "failed"):
        raise DeliveryNotRetryable(
            f"Message {row.id} is {row.status}; only dead or failed messages are retried.",
            extra={"allowed": ["dead", "failed"]},
        )
    if row.endpoint_id is not None:
        endpoint = session.get(WebhookEndpoint, row.endpoint_id)
        if endpoint is None or endpoint.status != "active":
            raise WebhookEndpointNotActive(f"The webhook endpoint {row.endpoint_id} is not active; create a new one.")
        endpoint.paused_until = None  # asked for now: past a paused breaker (a failure pauses it again, longer)
    row.status = "pending"
    row.next_attempt_at = now
    row.locked_until = None
    row.claim_token = None
    audit.record(
        session,
        actor=actor,
        action="delivery.retried",
        entity_type="outbox_message",
        entity_id=str(row.id),
        data={"delivery": delivery_id, "message_id": row.message_id, "attempts": row.attempts},
        at=now,
    )
    session.flush()
    return row


REPLAY_MAX_WINDOW = dt.timedelta(days=31)
REPLAY_MAX_MESSAGES = 10_000


def replay_endpoint(
    session: Session, endpoint_id: int, *, start: dt.datetime, end: dt.datetime, actor: str, now: dt.datetime
) -> tuple[int, bool]:
    """Re-queues the endpoint's dead and failed messages created in [start, end), oldest first, at most
    REPLAY_MAX_MESSAGES; returns (how many, whether more are left). The operator says the receiver is back: its
    circuit breaker is closed too. A message that already had all its tries gets one more, as with a retry."""
    # No FOR UPDATE: a worker recording attempts holds a key-share lock on the row and the outbox rows this
    # updates (app/notify/worker.py, `_breakers`); the UPDATEs below do not conflict with the former.
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.status == "deleted":
        raise WebhookEndpointNotFound(f"No webhook endpoint {endpoint_id}.")
    if endpoint.status != "active":
        raise WebhookEndpointNotActive(f"The webhook endpoint {endpoint_id} is {endpoint.status}; create a new one.")
    if end <= start or end - start > REPLAY_MAX_WINDOW:
        msg = f"`to` must be after `from`, at most {REPLAY_MAX_WINDOW.days} days later"
        raise ReplayWindowInvalid(
            f"The replay window is refused: {msg}.",
            errors=[{"loc": ["body", "to"], "msg": msg, "type": "value_error"}],
        )
    m = OutboxMessage
    ids = list(
        session.scalars(
            select(m.id)
            .where(m.endpoint_id == endpoint_id, m.status.in_(("dead", "failed")), m.created_at >= start)
            .where(m.created_at < end)
            .order_by(m.id)
            .limit(REPLAY_MAX_MESSAGES + 1)
        )
    )
    more = len(ids) > REPLAY_MAX_MESSAGES
    ids = ids[:REPLAY_MAX_MESSAGES]
    for chunk in range(0, len(ids), 1000):
        session.execute(
            update(m)
            .where(m.id.in_(ids[chunk : chunk + 1000]), m.status.in_(("dead", "failed")))
            .values(status="pending", next_attempt_at=now, locked_until=None, claim_token=None)
            .execution_options(synchronize_session=False)
        )
    endpoint.failure_streak, endpoint.pauses, endpoint.paused_until = 0, 0, None
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.replayed",
        entity_type="webhook_endpoint",
        entity_id=str(endpoint_id),
        data={"from": start.isoformat(), "to": end.isoformat(), "count": len(ids), "more": more},
        at=now,
    )
    session.flush()
    logger.info(
        "webhook endpoint replayed",
        extra={"fields": {"event": "endpoint.replayed", "endpoint": endpoint_id, "count": len(ids), "more": more}},
    )
    return len(ids), more


# ---- templates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateView:
    key: str
    locale: str
    subject: str
    body: str
    builtin: bool
    version: int
    updated_by: str | None
    updated_at: dt.datetime | None


def get_template(session: Session, key: str, locale: str) -> TemplateView:
    row = session.get(NotificationTemplate, (key, locale))
    if row is not None:
        return TemplateView(key, locale, row.subject, row.body, False, row.version, row.updated_by, row.updated_at)
    source = rendering.builtins().get((key, locale))
    if source is None:
        raise TemplateNotFound(f"No template {key} in {locale}.")
    return TemplateView(key, locale, source.subject, source.body, True, 0, None, None)


def list_templates(session: Session) -> list[TemplateView]:
    edited = {(r.key, r.locale): r for r in session.scalars(select(NotificationTemplate))}
    keys = sorted(set(rendering.builtins()) | set(edited))
    return [get_template(session, k, loc) for k, loc in keys]


def template_source(session: Session, key: str, locale: str) -> rendering.Source | None:
    row = session.get(NotificationTemplate, (key, locale))
    if row is not None:
        return rendering.Source(row.subject, row.body)
    return rendering.builtins().get((key, locale))


def put_template(
    session: Session, key: str, locale: str, *, subject: str, body: str, actor: str, now: dt.datetime
) -> TemplateView:
    """Stored only if it renders against the key's sample context: a broken edit never reaches a client."""
    try:
        rendering.validate(key, rendering.Source(subject, body))
    except rendering.TemplateError as exc:
        raise TemplateDoesNotRender(
            f"The template does not render: {exc}.",
            errors=[{"loc": ["body", exc.field], "msg": exc.message, "type": "template_error"}],
        ) from exc
    row = session.get(NotificationTemplate, (key, locale), with_for_update=True)
    before = get_template(session, key, locale) if row is not None or (key, locale) in rendering.builtins() else None
    if row is None:
        row = NotificationTemplate(key=key, locale=locale, subject=subject, body=body, version=1)
        session.add(row)
    else:
        row.subject, row.body, row.version = subject, body, row.version + 1
    row.updated_by, row.updated_at = actor, now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="notification_template.updated",
        entity_type="notification_template",
        entity_id=f"{key}/{locale}",
        data={
            "version": row.version,
            "subject": subject,
            "body_sha256": hashlib.sha256(body.encode()).hexdigest(),
            "previous_subject": before.subject if before else None,
            "previous_body_sha256": hashlib.sha256(before.body.encode()).hexdigest() if before else None,
        },
        at=now,
    )
    return get_template(session, key, locale)
