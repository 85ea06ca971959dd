from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from sqlalchemy import Select
from sqlalchemy.orm import Session

from app.core.auth import NotificationsAdmin, NotificationsRead, Principal, WebhooksAdmin
from app.core.deps import DbSession, Now
from app.core.errors import problem_responses
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN, LOCALE_PATTERN
from app.notify import ackpage, rendering, schemas, service
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
from app.notify.models import Delivery, OutboxMessage, WebhookEndpoint

router = APIRouter(tags=["notifications"])

EndpointId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The webhook endpoint id.")]
DeliveryId = Annotated[int, Path(ge=1, le=2**62, description="The delivery (attempt) id.")]
NotificationId = Annotated[int, Path(ge=1, le=2**62, description="The notification id.")]
TemplateKeyPath = Annotated[schemas.TemplateKey, Path(description="The template key.")]
LocalePath = Annotated[str, Path(pattern=LOCALE_PATTERN, max_length=35, description="A BCP 47 tag, e.g. zh-CN.")]


def _endpoint_out(session: Session, endpoints: list[WebhookEndpoint]) -> list[schemas.WebhookEndpointOut]:
    types = service.subscriptions(session, [e.id for e in endpoints])
    return [
        schemas.WebhookEndpointOut(
            id=e.id,
            url=e.url,
            description=e.description,
            event_types=types[e.id],
            status=e.status,
            status_reason=e.status_reason,
            created_by=e.created_by,
            created_at=e.created_at,
            updated_at=e.updated_at,
            failure_streak=e.failure_streak,
            paused_until=e.paused_until,
        )
        for e in endpoints
    ]


@router.post(
    "/v1/webhook-endpoints",
    name="webhook-endpoints-create",
    summary="Register a receiver of signed events",
    description="The response carries the `whsec_` signing secret, once. Deliveries are signed per Standard "
    "Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,…`); the webhook-id is the same on every "
    "retry, so receivers deduplicate by it. The URL's host is resolved and every address checked.",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.WebhookEndpointCreated,
    responses=problem_responses(401, 403, 413, 415, 422, errors=[WebhookUrlRefused]),
)
def create_endpoint(
    body: schemas.WebhookEndpointCreate,
    request: Request,
    session: DbSession,
    principal: WebhooksAdmin,
    now: Now,
    response: Response,
) -> schemas.WebhookEndpointCreated:
    endpoint = service.create_endpoint(
        session,
        url=body.url,
        event_types=list(body.event_types),
        description=body.description,
        actor=principal.actor,
        now=now,
        settings=request.app.state.settings,
    )
    out = _endpoint_out(session, [endpoint])[0]
    response.headers["Location"] = f"/v1/webhook-endpoints/{endpoint.id}"
    return schemas.WebhookEndpointCreated(**out.model_dump(), secret=endpoint.secret)


@router.get(
    "/v1/webhook-endpoints",
    name="webhook-endpoints-list",
    summary="List webhook endpoints (without their secrets)",
    response_model=Page[schemas.WebhookEndpointOut],
    responses=problem_responses(401, 403, 422),
)
def list_endpoints(
    session: DbSession,
    principal: WebhooksAdmin,
    page: Pagination,
    include_deleted: Annotated[bool, Query(description="Also list deleted endpoints.")] = False,
) -> Page[schemas.WebhookEndpointOut]:
    rows = service.list_endpoints(session, include_deleted=include_deleted, limit=page.limit + 1, offset=page.offset)
    items, nxt = page_of(rows, page)
    return Page[schemas.WebhookEndpointOut](
        items=_endpoint_out(session, items), limit=page.limit, offset=page.offset, next_offset=nxt
    )


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}",
    name="webhook-endpoints-get",
    summary="Get a webhook endpoint (without its secret)",
    response_model=schemas.WebhookEndpointOut,
    responses=problem_responses(401, 403, 404, 422, errors=[WebhookEndpointNotFound]),
)
def get_endpoint(endpoint_id: EndpointId, session: DbSession, principal: WebhooksAdmin) -> schemas.WebhookEndpointOut:
    return _endpoint_out(session, [service.get_endpoint(session, endpoint_id)])[0]


@router.delete(
    "/v1/webhook-endpoints/{endpoint_id}",
    name="webhook-endpoints-delete",
    summary="Delete a webhook endpoint; what it has not received yet is withdrawn",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422, errors=[WebhookEndpointNotFound]),
)
def delete_endpoint(endpoint_id: EndpointId, session: DbSession, principal: WebhooksAdmin, now: Now) -> Response:
    service.delete_endpoint(session, service.get_endpoint(session, endpoint_id), actor=principal.actor, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}/deliveries",
    name="webhook-endpoints-deliveries",
    summary="Every delivery attempt to this endpoint, newest first",
    description="A deleted endpoint answers 404 like the endpoint itself; its attempts stay in the database and its "
    "deletion in the audit log.",
    response_model=Page[schemas.DeliveryOut],
    responses=problem_responses(401, 403, 404, 422, errors=[WebhookEndpointNotFound]),
)
def list_deliveries(
    endpoint_id: EndpointId, session: DbSession, principal: WebhooksAdmin, page: Pagination
) -> Page[schemas.DeliveryOut]:
    if service.get_endpoint(session, endpoint_id).status == "deleted":
        raise WebhookEndpointNotFound(f"No webhook endpoint {endpoint_id}.")
    rows = service.list_deliveries(session, endpoint_id, limit=page.limit + 1, offset=page.offset)
    items, nxt = page_of(rows, page)
    return Page[schemas.DeliveryOut](
        items=[_delivery_out(d, m) for d, m in items], limit=page.limit, offset=page.offset, next_offset=nxt
    )


@router.post(
    "/v1/webhook-endpoints/{endpoint_id}/replay",
    name="webhook-endpoints-replay",
    summary="Send an endpoint's dead and failed messages of a time window again",
    description="Re-queues the endpoint's dead and failed messages created in [`from`, `to`) (at most 31 days, "
    "at most 10,000 per call: `more` says to call again), to be sent at once, and closes its circuit breaker. "
    "A message that had all its tries gets one more; if it fails, it is dead again. Audited.",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.ReplayOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        413,
        415,
        422,
        errors=[WebhookEndpointNotFound, WebhookEndpointNotActive, ReplayWindowInvalid],
    ),
)
def replay_endpoint(
    endpoint_id: EndpointId, body: schemas.ReplayIn, session: DbSession, principal: WebhooksAdmin, now: Now
) -> schemas.ReplayOut:
    count, more = service.replay_endpoint(
        session, endpoint_id, start=body.from_, end=body.to, actor=principal.actor, now=now
    )
    return schemas.ReplayOut(endpoint_id=endpoint_id, count=count, more=more)


def _delivery_out(d: Delivery, m: OutboxMessage) -> schemas.DeliveryOut:
    return schemas.DeliveryOut(
        id=d.id,
        message=m.id,
        message_id=m.message_id,
        event_type=m.event_type,
        attempt=d.attempt,
        attempted_at=d.attempted_at,
        duration_ms=d.duration_ms,
        succeeded=d.succeeded,
        http_status=d.http_status,
        error=d.error,
        response_excerpt=d.response_excerpt,
        message_status=m.status,
    )


@router.post(
    "/v1/deliveries/{delivery_id}/retry",
    name="deliveries-retry",
    summary="Send a dead (or waiting) message again, now",
    description="The worker makes one more attempt at once; if it fails, the message is dead again.",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.MessageOut,
    responses=problem_responses(
        401, 403, 404, 409, 422, errors=[DeliveryNotFound, DeliveryNotRetryable, WebhookEndpointNotActive]
    ),
)
def retry_delivery(
    delivery_id: DeliveryId, session: DbSession, principal: WebhooksAdmin, now: Now
) -> schemas.MessageOut:
    return schemas.MessageOut.model_validate(
        service.retry_delivery(session, delivery_id, actor=principal.actor, now=now)
    )


# ---- notifications ----------------------------------------------------------------------------


def _visible(request: Request, principal: Principal) -> Select[Any] | None:
    """Unrestricted roles see every notification; the others those of the cases they manage, as the workflow says
    (`app.state.managed_cases`, bound in `app.main`): a successor's part in another team's handover shows them the
    handover, not its clients' notifications."""
    if principal.unrestricted:
        return None
    managed: Select[Any] = request.app.state.managed_cases(principal)
    return managed


def _notification_out(row: OutboxMessage, last_delivery: int | None) -> schemas.NotificationOut:
    return schemas.NotificationOut(
        id=row.id,
        message_id=row.message_id,
        kind=row.kind,
        template=row.template,
        locale=row.locale or "",
        channel=row.channel,
        recipient=row.recipient,
        endpoint_id=row.endpoint_id,
        handover_id=row.handover_id,
        client=row.client_id,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        last_delivery_id=last_delivery,
        not_before=row.not_before,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        sent_at=row.sent_at,
        acknowledged_at=row.acknowledged_at,
        created_at=row.created_at,
        subject=row.subject,
    )


@router.get(
    "/v1/notifications",
    name="notifications-list",
    summary="List notifications with their status, attempts and last error",
    response_model=Page[schemas.NotificationOut],
    responses=problem_responses(401, 403, 422),
)
def list_notifications(
    request: Request,
    session: DbSession,
    principal: NotificationsRead,
    page: Pagination,
    handover: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this handover's.")] = None,
    client: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only about this client.")] = None,
    status_: Annotated[schemas.Status | None, Query(alias="status", description="Only in this status.")] = None,
    template: Annotated[schemas.TemplateKey | None, Query(description="Only this template.")] = None,
) -> Page[schemas.NotificationOut]:
    rows = service.list_notifications(
        session,
        service.NotificationFilter(handover, client, status_, template),
        visible_handovers=_visible(request, principal),
        limit=page.limit + 1,
        offset=page.offset,
    )
    items, nxt = page_of(rows, page)
    return Page[schemas.NotificationOut](
        items=[_notification_out(r, d) for r, d in items], limit=page.limit, offset=page.offset, next_offset=nxt
    )


@router.get(
    "/v1/notifications/{notification_id}",
    name="notifications-get",
    summary="Get a notification",
    response_model=schemas.NotificationOut,
    responses=problem_responses(401, 403, 404, 422, errors=[NotificationNotFound]),
)
def get_notification(
    notification_id: NotificationId, request: Request, session: DbSession, principal: NotificationsRead
) -> schemas.NotificationOut:
    row, last = service.get_notification(session, notification_id, visible_handovers=_visible(request, principal))
    return _notification_out(row, last)


_ACK_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The page (HTML)."},
}


def _ack_page(row: OutboxMessage, sig: str, state: str) -> HTMLResponse:
    action = f"/v1/notifications/{row.id}/ack?{urlencode({'sig': sig})}"
    html = ackpage.page(row.locale, state=state, action=action)
    return HTMLResponse(html, headers=ackpage.HEADERS)


@router.get(
    "/v1/notifications/{notification_id}/ack",
    name="notifications-ack",
    summary="The acknowledgment link's page: a confirm button (the signed link in the message; no token)",
    description="Shows a small HTML page (zh-CN or English, by the notification's locale) whose button POSTs to "
    "the same URL; the GET itself records nothing, so mail scanners that follow links do not acknowledge for the "
    "client. The `sig` is an HMAC of the notification, so only the recipient's link works: a bad or tampered link "
    "answers 403. Served with a strict Content-Security-Policy (no script, no external assets).",
    response_class=HTMLResponse,
    responses={**_ACK_PAGE, **problem_responses(403, 422, errors=[AckLinkInvalid], public=True)},
)
def ack_page(
    notification_id: NotificationId,
    sig: Annotated[str, Query(min_length=1, max_length=200, description="The link's signature.")],
    request: Request,
    session: DbSession,
) -> HTMLResponse:
    row = service.ack_target(session, notification_id, sig, settings=request.app.state.settings)
    return _ack_page(row, sig, "already" if row.status == "acknowledged" else "ask")


@router.post(
    "/v1/notifications/{notification_id}/ack",
    name="notifications-ack-confirm",
    summary="Acknowledge a client introduction (the page's confirm button; no token)",
    description="Records the acknowledgment (audited once) and answers an HTML page saying so; a second POST "
    "records nothing more and says it was already acknowledged. A bad or tampered `sig` answers 403.",
    response_class=HTMLResponse,
    responses={**_ACK_PAGE, **problem_responses(403, 422, errors=[AckLinkInvalid], public=True)},
)
def acknowledge(
    notification_id: NotificationId,
    sig: Annotated[str, Query(min_length=1, max_length=200, description="The link's signature.")],
    request: Request,
    session: DbSession,
    now: Now,
) -> HTMLResponse:
    row, newly = service.acknowledge(session, notification_id, sig, settings=request.app.state.settings, now=now)
    return _ack_page(row, sig, "done" if newly else "already")


# ---- templates --------------------------------------------------------------------------------


def _template_out(view: service.TemplateView) -> schemas.TemplateOut:
    return schemas.TemplateOut(
        key=view.key,
        locale=view.locale,
        subject=view.subject,
        body=view.body,
        builtin=view.builtin,
        version=view.version,
        updated_by=view.updated_by,
        updated_at=view.updated_at,
        variables=sorted(rendering.SAMPLES[view.key]),
    )


@router.get(
    "/v1/notification-templates",
    name="notification-templates-list",
    summary="List every template version (key and locale)",
    response_model=list[schemas.TemplateOut],
    responses=problem_responses(401, 403),
)
def list_templates(session: DbSession, principal: NotificationsRead) -> list[schemas.TemplateOut]:
    return [_template_out(v) for v in service.list_templates(session)]


@router.get(
    "/v1/notification-templates/{key}/{locale}",
    name="notification-templates-get",
    summary="Get a template in one locale",
    response_model=schemas.TemplateOut,
    responses=problem_responses(401, 403, 404, 422, errors=[TemplateNotFound]),
)
def get_template(
    key: TemplateKeyPath, locale: LocalePath, session: DbSession, principal: NotificationsRead
) -> schemas.TemplateOut:
    return _template_out(service.get_template(session, key, locale))


@router.put(
    "/v1/notification-templates/{key}/{locale}",
    name="notification-templates-put",
    summary="Edit (or add) a template in one locale",
    description="Rendered in a sandbox against a sample of the context the key receives before it is stored: "
    "a template that does not render (a syntax error, an unknown variable) or does too much (more than 250,000 "
    "steps or 1 s, a string over 100,000 characters, an integer over 256 bits, a width over 10,000, a range over "
    "10,000) is refused with 422 naming the field, and the stored version stays. Messages not yet sent use the "
    "new version, under the same bounds.",
    response_model=schemas.TemplateOut,
    responses=problem_responses(401, 403, 413, 415, 422, errors=[TemplateDoesNotRender]),
)
def put_template(
    key: TemplateKeyPath,
    locale: LocalePath,
    body: schemas.TemplatePut,
    session: DbSession,
    principal: NotificationsAdmin,
    now: Now,
) -> schemas.TemplateOut:
    view = service.put_template(
        session, key, locale, subject=body.subject, body=body.body, actor=principal.actor, now=now
    )
    return _template_out(view)
