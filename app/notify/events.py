"""The outbound webhook events: one payload model per event type, the one list of event types, and their contract.

The emitting code builds every payload through these models (`emit(session, type, Model(...))`), and the OpenAPI
`webhooks` section is generated from the same models (`webhooks()`), so what a receiver is promised and what it gets
cannot drift apart. A receiver gets the envelope `{"type", "timestamp", "data": <the model>}`, signed per Standard
Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.json_schema import models_json_schema

from app.notify import rendering


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


EventTime = Annotated[
    dt.datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""Times as ISO 8601 with their UTC offset (`2026-11-02T09:00:00+00:00`), as every event has always sent them."""

HandoverStatus = Literal["draft", "planned", "approved", "executed", "scheduled", "completed", "cancelled", "undone"]
ExitReason = Literal["resignation", "termination", "retirement", "role_change", "leave", "other"]
# As stored and answered: also `unknown`, a departure signal that named no reason (never accepted as input).
StoredReason = Literal["resignation", "termination", "retirement", "role_change", "leave", "other", "unknown"]
GrantLevel = Literal["owner", "interim", "shadow", "read"]


class EventData(BaseModel):
    """A payload (`data`) of an outbound event."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---- handovers --------------------------------------------------------------------------------


class HandoverEvent(EventData):
    """A handover changed state (created, planned, approved, executed, completed, cancelled, undone)."""

    handover_id: int = Field(description="The handover.")
    leaver: str = Field(description="The leaver's external id.")
    manager: str | None = Field(description="The leaver's manager, the approver.")
    status: HandoverStatus = Field(description="The handover's status after the change.")
    effective_at: EventTime = Field(description="When the exit takes effect.")
    reason: StoredReason = Field(description="Why the leaver leaves (`unknown`: a departure signal that named none).")
    actor: str = Field(description="Who made the change (`system:worker` for scheduled work).")


class HandoverPlannedEvent(HandoverEvent):
    """`handover.planned`: a successor or interim owner was proposed for every client."""

    items: int = Field(description="How many items (clients) the plan has.")


class HandoverCancelledEvent(HandoverEvent):
    """`handover.cancelled`: the handover will not happen; access and ownership stay as they were."""

    cancel_reason: str | None = Field(None, description="Why it was cancelled, if a reason was given.")


class HandoverUndoneEvent(HandoverEvent):
    """`handover.undone`: an executed handover was reversed (`client.reassigned` with `undo: true` follows)."""

    undo_reason: str | None = Field(None, description="Why it was undone, if a reason was given.")


class HandoverOverdueEvent(HandoverEvent):
    """`handover.overdue`: a reminder that an approval deadline passed (one per reminder)."""

    approval_deadline: EventTime = Field(description="When the approval was due.")
    reminder: int = Field(ge=1, description="1 at the deadline, then one a day.")
    approver: str | None = Field(description="Who should approve (the leaver's manager).")
    escalated_to: str | None = Field(description="The approver's manager, from the second reminder on.")


# ---- clients and access -----------------------------------------------------------------------


class ReassignedClient(EventData):
    client: str = Field(description="The client's external id.")
    from_: str | None = Field(alias="from", description="The owner before the change.")
    to: str | None = Field(description="The owner after the change.")
    interim: bool = Field(description="The new owner holds the client as an interim owner (no successor found).")


class ClientReassignedEvent(EventData):
    """`client.reassigned`: clients changed owner at a handover's execution (or back, at its undo); at most 500
    clients per event, `batch` of `batches`."""

    handover_id: int | None = Field(
        description="The handover; null for a repair by the ownership sweeper (see `ownership.violation`)."
    )
    effective_at: EventTime = Field(description="The handover's effective time (a sweeper repair: when it ran).")
    undo: bool = Field(description="True when the owners go back because the handover was undone.")
    batch: int = Field(ge=1, description="This event's number among the handover's events of this type, from 1.")
    batches: int = Field(ge=1, description="How many events of this type the change took.")
    clients: list[ReassignedClient] = Field(max_length=500, description="The owner changes.")


class ReassignedRecord(EventData):
    kind: str = Field(description="The record's kind: deal, task, case, meeting, contract, invoice, project, …")
    record: str = Field(description="The record's external id (unique per kind).")
    client: str | None = Field(
        description="The client whose new owner the record followed; null for a client-less record (an automation, "
        "a report, a meeting without a client) that went to the leaver's manager or by an override."
    )
    from_: str = Field(alias="from", description="The owner before the change.")
    to: str = Field(
        description="The owner after the change; equal to `from` for a meeting kept by its owner within the "
        "transition period (see `attendee_added`)."
    )
    attendee_added: str | None = Field(
        None,
        description="A meeting due within the transition period stays with its owner (from = to) and this person "
        "(the client's receiver) joins it as attendee; with `undo: true`, the attendee to take off again. Null for "
        "an owner change.",
    )


class RecordReassignedEvent(EventData):
    """`record.reassigned`: the leaver's records moved by a handover's rules (issue 16): a moved client's open
    records followed it to its new owner (at the interim take-over, then at the execution), client-less open ones
    went to the leaver's manager, overrides went where they name; meetings within the transition period stay and
    name `attendee_added`; closed records keep their owner. With `undo: true`, what an undo or a cancellation after
    the take-over gave back (one entry per record, from its owner then to its owner before the handover). At most
    500 records per event, `batch` of `batches`."""

    handover_id: int | None = Field(
        description="The handover; null for a repair by the ownership sweeper (the records of a repaired client)."
    )
    effective_at: EventTime = Field(description="The handover's effective time.")
    undo: bool = Field(description="True when the owners go back because the handover was undone.")
    batch: int = Field(ge=1, description="This event's number among the handover's events of this type, from 1.")
    batches: int = Field(ge=1, description="How many events of this type the change took.")
    records: list[ReassignedRecord] = Field(max_length=500, description="The owner changes.")


class TeamSeat(EventData):
    client: str = Field(description="The client whose account team changed.")
    employee: str = Field(description="The team member (the leaver).")
    role: str = Field(description="Their role on the team.")
    change: Literal["removed", "restored"] = Field(description="removed at execution; restored at undo.")


class AccountTeamChangedEvent(EventData):
    """`account_team.changed`: at execution the leaver leaves every other client's account team (undo gives the
    seats back); at most 500 seats per event, `batch` of `batches`."""

    handover_id: int = Field(description="The handover.")
    effective_at: EventTime = Field(description="The handover's effective time.")
    undo: bool = Field(description="True when the seats come back because the handover was undone.")
    batch: int = Field(ge=1, description="This event's number among the handover's events of this type, from 1.")
    batches: int = Field(ge=1, description="How many events of this type the change took.")
    seats: list[TeamSeat] = Field(max_length=500, description="The seats removed or restored.")


class AttentionClient(EventData):
    client: str = Field(description="The client.")
    to: str | None = Field(description="Who holds it now (the interim owner), or null when nobody can act.")


class HandoverAttentionEvent(EventData):
    """`handover.attention`: a client reached a leaver after their handover was executed (it went to the interim
    owner), or no one who can act could be found for an approved item (it stayed with the leaver)."""

    handover_id: int = Field(description="The handover.")
    leaver: str = Field(description="The leaver.")
    reason: str = Field(description="What happened, for a person.")
    clients: list[AttentionClient] = Field(description="The clients concerned.")


class ViolatingClient(EventData):
    client: str = Field(description="The client.")
    owner: str = Field(description="Its owner, whom nobody can act for.")
    reason: str = Field(description="Why the owner cannot act (e.g. employee_departed, no_grant).")
    repaired: bool = Field(description="True when the sweeper repaired it by the interim rule.")
    new_owner: str | None = Field(description="Who holds it now (the interim owner), or null when not repaired.")


class OwnershipViolationEvent(EventData):
    """`ownership.violation`: the worker's ownership sweeper found clients whose owner nobody can act for (the
    ownership invariant) and repaired what the interim rule can; at most 500 clients per event."""

    at: EventTime = Field(description="When the sweeper found them.")
    batch: int = Field(ge=1, description="This event's number among the pass's events of this type, from 1.")
    batches: int = Field(ge=1, description="How many events of this type the pass took.")
    clients: list[ViolatingClient] = Field(max_length=500, description="The clients found.")


class GrantWindow(EventData):
    grant_id: int = Field(description="The access grant.")
    employee: str = Field(description="Who gets access.")
    client: str = Field(description="To which client.")
    level: GrantLevel = Field(
        description="shadow: view-only during the transition, before the effective time; owner (the successor) or "
        "interim (the interim owner): full access from the effective time."
    )
    valid_from: EventTime = Field(description="When the access starts.")
    valid_until: EventTime | None = Field(description="When it ends (null: open-ended).")


class AccessGrantedEvent(EventData):
    """`access.granted`: a handover's approval granted its access windows (shadow until the effective time, owner or
    interim from it), so a CRM can mirror the transition period; at most 500 grants per event, `batch` of
    `batches`."""

    handover_id: int = Field(description="The handover whose approval granted the windows.")
    effective_at: EventTime = Field(description="The handover's effective time, where shadow access turns into owner.")
    batch: int = Field(ge=1, description="This event's number among the handover's events of this type, from 1.")
    batches: int = Field(ge=1, description="How many events of this type the approval took.")
    grants: list[GrantWindow] = Field(max_length=500, description="The windows granted.")


class AccessRevokedEvent(EventData):
    """`access.revoked`: an access grant was revoked by hand."""

    grant_id: int = Field(description="The access grant.")
    employee: str = Field(description="Whose access ends.")
    client: str = Field(description="To which client.")
    level: GrantLevel = Field(description="The grant's level.")
    revoked_at: EventTime = Field(description="When it was revoked.")
    handover_id: int | None = Field(description="The handover that granted it, if any.")


class AlertRaisedEvent(EventData):
    """`alert.raised`: an employee's access pattern is anomalous (e.g. a leaver's export spike)."""

    alert_id: int = Field(description="The alert.")
    employee: str = Field(description="Whose access is anomalous.")
    kind: str = Field(description="What kind of anomaly (e.g. `export_spike`).")
    score: float = Field(description="How far from the employee's usual pattern.")
    clients: list[str] = Field(description="The clients concerned.")
    window_start: EventTime = Field(description="The start of the window observed.")
    window_end: EventTime = Field(description="Its end.")
    updated: bool = Field(description="An open alert of the same kind grew (instead of a new alert).")


# ---- notifications and audit ------------------------------------------------------------------


class NotificationFailedEvent(EventData):
    """`notification.failed`: a notification is dead (no more attempts)."""

    notification_id: int = Field(description="The notification.")
    template: str | None = Field(description="Which message it was.")
    channel: str = Field(description="How it was to be delivered.")
    recipient: str | None = Field(description="The email address, for email.")
    handover_id: int | None = Field(description="The handover that caused it, if any.")
    client: str | None = Field(description="The client it is about, if any.")
    attempts: int = Field(description="Attempts made.")
    last_error: str | None = Field(description="Why the last attempt failed.")


class NotificationContact(EventData):
    contact_id: int | None = Field(None, description="The client contact (client messages).")
    name: str | None = Field(None, description="The recipient's name.")
    email: str | None = Field(None, description="The contact's email address.")
    phone: str | None = Field(None, description="The contact's phone number.")


class NotificationMessageEvent(EventData):
    """`notification.<template>`: a notification whose recipient prefers the CRM's channel, rendered, for the CRM to
    pass on (e.g. a client intro); `ack_url` is the acknowledgment link of a client intro."""

    notification_id: int = Field(description="The notification.")
    template: str = Field(description="Which message it is.")
    locale: str = Field(description="The template version used (after fallback).")
    handover_id: int | None = Field(description="The handover that caused it, if any.")
    client: str | None = Field(description="The client it is about, if any.")
    contact: NotificationContact | None = Field(description="Who it is for.")
    subject: str = Field(description="The rendered subject line.")
    body: str = Field(description="The rendered plain-text body.")
    ack_url: str | None = Field(description="The acknowledgment link (client intros).")


class AuditCheckpointEvent(EventData):
    """`audit.checkpoint`: a signed checkpoint of the audit chain's head, the copy a database writer cannot reach."""

    checkpoint_id: int = Field(description="The checkpoint.")
    seq: int = Field(description="The audit entry at the head.")
    head_hash: str = Field(description="The head entry's hash.")
    count: int = Field(description="How many entries the chain had.")
    taken_at: str = Field(description="When the checkpoint was taken (RFC 3339, UTC).")
    key_id: str = Field(description="The signing key's id.")
    verified: bool = Field(description="The chain was verified before signing.")
    reason: str = Field(description="Why the checkpoint was taken.")
    signature: str = Field(description="Base64 Ed25519 signature of `signed`.")
    signed: str = Field(description="The exact text signed.")


# ---- the one list -----------------------------------------------------------------------------

NOTIFICATION_EVENTS = tuple(f"notification.{key}" for key in rendering.KEYS)
EVENT_MODELS: dict[str, type[EventData]] = {
    "handover.created": HandoverEvent,
    "handover.planned": HandoverPlannedEvent,
    "handover.approved": HandoverEvent,
    "handover.cancelled": HandoverCancelledEvent,
    "handover.executed": HandoverEvent,
    "handover.completed": HandoverEvent,
    "handover.undone": HandoverUndoneEvent,
    "handover.overdue": HandoverOverdueEvent,
    "client.reassigned": ClientReassignedEvent,
    "record.reassigned": RecordReassignedEvent,
    "account_team.changed": AccountTeamChangedEvent,
    "handover.attention": HandoverAttentionEvent,
    "ownership.violation": OwnershipViolationEvent,
    "access.granted": AccessGrantedEvent,
    "access.revoked": AccessRevokedEvent,
    "alert.raised": AlertRaisedEvent,
    "notification.failed": NotificationFailedEvent,
    **dict.fromkeys(NOTIFICATION_EVENTS, NotificationMessageEvent),
    "audit.checkpoint": AuditCheckpointEvent,
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)
"""Every outbound event type: what endpoints may subscribe to, what `emit` accepts, what the contract lists."""


def payload(event_type: str, data: EventData | Mapping[str, Any]) -> Any:
    """The JSON `data` of an event. A model must be the type's own; a mapping (the outbox's own tests) goes as is."""
    if isinstance(data, EventData):
        expected = EVENT_MODELS[event_type]
        if type(data) is not expected:
            raise TypeError(f"{event_type} carries {expected.__name__}, not {type(data).__name__}")
        return data.model_dump(mode="json", by_alias=True)
    return data


# ---- the contract -----------------------------------------------------------------------------

_T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
_HANDOVER: dict[str, Any] = {
    "handover_id": 42,
    "leaver": "e-1001",
    "manager": "e-2001",
    "effective_at": _T0,
    "reason": "resignation",
}
_NOTIFICATION = {"notification_id": 7, "handover_id": 42, "client": "c-5001"}
_EXAMPLES: dict[str, EventData] = {
    "handover.created": HandoverEvent(**_HANDOVER, status="draft", actor="hr:webhook"),
    "handover.planned": HandoverPlannedEvent(**_HANDOVER, status="planned", actor="e-2001", items=120),
    "handover.approved": HandoverEvent(**_HANDOVER, status="approved", actor="e-2001"),
    "handover.cancelled": HandoverCancelledEvent(
        **_HANDOVER, status="cancelled", actor="e-2001", cancel_reason="The employee stays."
    ),
    "handover.executed": HandoverEvent(**_HANDOVER, status="executed", actor="system:worker"),
    "handover.completed": HandoverEvent(**_HANDOVER, status="completed", actor="e-2001"),
    "handover.undone": HandoverUndoneEvent(
        **_HANDOVER, status="undone", actor="admin-1", undo_reason="Exit withdrawn after execution."
    ),
    "handover.overdue": HandoverOverdueEvent(
        **_HANDOVER,
        status="planned",
        actor="system:worker",
        approval_deadline=_T0 - dt.timedelta(days=3),
        reminder=2,
        approver="e-2001",
        escalated_to="e-3001",
    ),
    "client.reassigned": ClientReassignedEvent(
        handover_id=42,
        effective_at=_T0,
        undo=False,
        batch=1,
        batches=1,
        clients=[ReassignedClient(client="c-5001", from_="e-1001", to="e-1002", interim=False)],
    ),
    "record.reassigned": RecordReassignedEvent(
        handover_id=42,
        effective_at=_T0,
        undo=False,
        batch=1,
        batches=1,
        records=[ReassignedRecord(kind="deal", record="d-7001", client="c-5001", from_="e-1001", to="e-1002")],
    ),
    "account_team.changed": AccountTeamChangedEvent(
        handover_id=42,
        effective_at=_T0,
        undo=False,
        batch=1,
        batches=1,
        seats=[TeamSeat(client="c-5002", employee="e-1001", role="support", change="removed")],
    ),
    "handover.attention": HandoverAttentionEvent(
        handover_id=42,
        leaver="e-1001",
        reason="client given to the leaver after execution; it went to the interim owner",
        clients=[AttentionClient(client="c-5003", to="e-2001")],
    ),
    "ownership.violation": OwnershipViolationEvent(
        at=_T0,
        batch=1,
        batches=1,
        clients=[
            ViolatingClient(
                client="c-5004", owner="e-1009", reason="employee_departed", repaired=True, new_owner="e-2001"
            )
        ],
    ),
    "access.granted": AccessGrantedEvent(
        handover_id=42,
        effective_at=_T0,
        batch=1,
        batches=1,
        grants=[
            GrantWindow(
                grant_id=901,
                employee="e-1002",
                client="c-5001",
                level="shadow",
                valid_from=_T0 - dt.timedelta(days=14),
                valid_until=_T0,
            ),
            GrantWindow(
                grant_id=902, employee="e-1002", client="c-5001", level="owner", valid_from=_T0, valid_until=None
            ),
        ],
    ),
    "access.revoked": AccessRevokedEvent(
        grant_id=902, employee="e-1002", client="c-5001", level="owner", revoked_at=_T0, handover_id=42
    ),
    "alert.raised": AlertRaisedEvent(
        alert_id=3,
        employee="e-1001",
        kind="export_spike",
        score=8.5,
        clients=["c-5001", "c-5002"],
        window_start=_T0 - dt.timedelta(hours=1),
        window_end=_T0,
        updated=False,
    ),
    "notification.failed": NotificationFailedEvent(
        **_NOTIFICATION,
        template="client_intro",
        channel="email",
        recipient="buyer@client.example",
        attempts=8,
        last_error="550 mailbox unavailable",
    ),
    "audit.checkpoint": AuditCheckpointEvent(
        checkpoint_id=12,
        seq=10450,
        head_hash="9f2c…",
        count=10450,
        taken_at="2026-11-02T09:00:00.000000Z",
        key_id="audit-2026",
        verified=True,
        reason="daily",
        signature="MEUCIQ…",
        signed="handover-audit-checkpoint/v1\n{…}",
    ),
}
for _key in rendering.KEYS:
    _EXAMPLES[f"notification.{_key}"] = NotificationMessageEvent(
        **_NOTIFICATION,
        template=_key,
        locale="en",
        contact=NotificationContact(contact_id=77, name="Bea Buyer", email="buyer@client.example"),
        subject="Your new account manager",
        body="Dear Bea, …",
        ack_url="https://handover.example.com/v1/notifications/7/ack?t=…" if _key == "client_intro" else None,
    )

SIGNATURE_HEADERS: tuple[tuple[str, str], ...] = (
    ("webhook-id", "The message's id, `msg_<32 hex>`, the same on every retry: deduplicate on it."),
    ("webhook-timestamp", "Unix seconds when this attempt was signed; refuse it if far from your clock."),
    (
        "webhook-signature",
        "`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` with the endpoint's `whsec_` secret "
        "(Standard Webhooks); several space-separated entries during a secret rotation.",
    ),
)


def envelope_name(event_type: str) -> str:
    """`handover.created` -> `HandoverCreatedWebhook`, `notification.x_y` -> `NotificationXYWebhook`."""
    words = event_type.replace(".", "_").split("_")
    return "".join(w[:1].upper() + w[1:] for w in words) + "Webhook"


def example(event_type: str) -> dict[str, Any]:
    """The envelope a receiver of this type gets, for the contract."""
    return {
        "type": event_type,
        "timestamp": _T0.isoformat(),
        "data": payload(event_type, _EXAMPLES[event_type]),
    }


def webhooks() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI 3.1 `webhooks` section and the component schemas it refers to (payloads and envelopes)."""
    models = sorted(set(EVENT_MODELS.values()), key=lambda m: m.__name__)
    _, top = models_json_schema([(m, "serialization") for m in models], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    section: dict[str, Any] = {}
    for event_type, model in EVENT_MODELS.items():
        name = envelope_name(event_type)
        schemas[name] = {
            "title": name,
            "description": f"The `{event_type}` event as POSTed to a subscribed endpoint.",
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": event_type, "type": "string", "description": "The event type."},
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the event happened (ISO 8601 with offset).",
                },
                "data": {"$ref": f"#/components/schemas/{model.__name__}"},
            },
        }
        section[event_type] = {
            "post": {
                "tags": ["webhooks"],
                "summary": f"The {event_type} event",
                "description": (model.__doc__ or "").strip()
                + "\n\nDelivered to every active endpoint subscribed to the type (or to `*`), at least once and "
                "retried with backoff until a 2xx answer; signed per [Standard Webhooks](https://www.standardwebhooks.com).",
                "operationId": f"webhook-{event_type.replace('.', '-').replace('_', '-')}",
                "security": [],
                "parameters": [
                    {"name": h, "in": "header", "required": True, "description": d, "schema": {"type": "string"}}
                    for h, d in SIGNATURE_HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{name}"},
                            "example": example(event_type),
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Received: any 2xx answer ends the retries."},
                    "410": {"description": "Gone: the endpoint is disabled and receives nothing more."},
                },
            }
        }
    return section, schemas
