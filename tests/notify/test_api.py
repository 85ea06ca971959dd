"""The HTTP surface: endpoint creation (SSRF guard, secret once), templates (sandbox, 422), ack links, listing."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database, transaction
from app.notify import rendering, schemas, service
from app.notify.channels import TargetRefused, resolve_target
from app.notify.worker import Deliverer
from tests.support.receivers import Receiver, SmtpServer, outbox

MakeDeliverer = Callable[..., Deliverer]

INTRO = {
    "contact": {"name": "Ada"},
    "client": {"name": "Acme", "external_id": "c-1"},
    "leaver": {"name": "Leo"},
    "successor": {"name": "Sam", "email": "sam@example.com", "title": None},
    "effective_date": "2026-11-16",
}


def audit_count(db: Database, action: str) -> int:
    with db.session(write=False) as s:
        return int(s.scalar(select(func.count()).where(AuditEntry.action == action)) or 0)


# ---- webhook endpoints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost/hook",
        "http://0.0.0.0/hook",
        "http://192.168.1.10/hook",
    ],
)
def test_private_targets_are_refused(client: TestClient, auth: Any, url: str) -> None:
    r = client.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]}, headers=auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["body", "url"]


def test_malformed_targets_are_refused() -> None:
    for url in ("ftp://example.com/x", "http://user:pw@93.184.215.14/", "http:///nohost"):
        with pytest.raises(TargetRefused):
            resolve_target(url, allow_loopback=True)


def test_public_target_accepted_and_secret_shown_once(client: TestClient, auth: Any, db: Database) -> None:
    r = client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://93.184.215.14/hooks", "event_types": ["handover.approved", "client.reassigned"]},
        headers=auth(),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["event_types"] == ["client.reassigned", "handover.approved"]
    assert r.headers["location"] == f"/v1/webhook-endpoints/{body['id']}"
    listed = client.get("/v1/webhook-endpoints", headers=auth()).json()["items"]
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in client.get(f"/v1/webhook-endpoints/{body['id']}", headers=auth()).json()
    assert audit_count(db, "webhook_endpoint.created") == 1


def test_endpoint_input_is_checked(client: TestClient, auth: Any) -> None:
    bad = [
        {"url": "https://93.184.215.14/h", "event_types": []},
        {"url": "https://93.184.215.14/h", "event_types": ["handover.exploded"]},
        {"url": "mailto:a@b.c", "event_types": ["*"]},
        {"url": "https://93.184.215.14/h", "event_types": ["*"], "secret": "mine"},
    ]
    for body in bad:
        assert client.post("/v1/webhook-endpoints", json=body, headers=auth()).status_code == 422, body
    assert client.get("/v1/webhook-endpoints/424242", headers=auth()).status_code == 404
    assert client.get("/v1/webhook-endpoints/424242/deliveries", headers=auth()).status_code == 404


def test_event_types_in_the_schema_match_the_service() -> None:
    assert set(schemas.EventType.__args__) == {*service.EVENT_TYPES, "*"}  # type: ignore[attr-defined]
    assert set(schemas.TemplateKey.__args__) == set(rendering.KEYS)  # type: ignore[attr-defined]


def test_scopes(client: TestClient, auth: Any) -> None:
    assert client.get("/v1/webhook-endpoints", headers=auth("hr")).status_code == 403
    assert client.get("/v1/notifications", headers=auth("hr")).status_code == 200
    put = {"subject": "x", "body": "y"}
    assert client.put("/v1/notification-templates/client_intro/en", json=put, headers=auth("hr")).status_code == 403


# ---- templates --------------------------------------------------------------------------------


def test_builtin_templates_exist_and_render_in_both_languages(client: TestClient, auth: Any) -> None:
    for key in rendering.KEYS:
        for locale in ("en", "zh-CN"):
            r = client.get(f"/v1/notification-templates/{key}/{locale}", headers=auth("hr"))
            assert r.status_code == 200, (key, locale, r.text)
            body = r.json()
            assert body["builtin"] and body["version"] == 0
            assert body["variables"] == sorted(rendering.SAMPLES[key])
            rendered = rendering.validate(key, rendering.Source(body["subject"], body["body"]))
            assert rendered.subject and "\n" not in rendered.subject
    assert client.get("/v1/notification-templates/client_intro/fr", headers=auth()).status_code == 404
    assert client.get("/v1/notification-templates/nope/en", headers=auth()).status_code == 422
    listed = client.get("/v1/notification-templates", headers=auth()).json()
    assert len(listed) == 2 * len(rendering.KEYS)


@pytest.mark.parametrize(
    ("subject", "body", "field"),
    [
        ("Hello {{ contact.name }}", "{{ no_such_variable }}", "body"),
        ("Hello {{ contact.nickname }}", "fine", "subject"),
        ("Hello", "{% if %}", "body"),
        ("Hello", "{{ contact.__class__.__mro__ }}", "body"),
        ("Hello", "{{ 'x' * 100000000 }}", "body"),
        ("Hello", "{{ 1 / 0 }}", "body"),
        ("{{ '' }}", "fine", "subject"),
    ],
)
def test_a_broken_template_is_refused_and_the_old_one_stays(
    client: TestClient, auth: Any, db: Database, subject: str, body: str, field: str
) -> None:
    url = "/v1/notification-templates/client_intro/en"
    before = client.get(url, headers=auth()).json()
    r = client.put(url, json={"subject": subject, "body": body}, headers=auth())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", field]
    assert client.get(url, headers=auth()).json() == before
    assert audit_count(db, "notification_template.updated") == 0


def test_template_edit_is_stored_audited_and_used(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    deliverer: MakeDeliverer,
) -> None:
    url = "/v1/notification-templates/client_intro/fr"  # a new locale, added by an administrator
    r = client.put(
        url, json={"subject": "Votre nouveau contact : {{ successor.name }}", "body": "Bonjour {{ contact.name }}."}
    )
    assert r.status_code == 401
    r = client.put(
        url,
        json={"subject": "Votre nouveau contact : {{ successor.name }}", "body": "Bonjour {{ contact.name }}."},
        headers=auth(),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["builtin"], r.json()["version"], r.json()["updated_by"]) == (False, 1, "admin:test-admin")
    r = client.put(
        url, json={"subject": "Nouveau : {{ successor.name }}", "body": "Bonjour {{ contact.name }}."}, headers=auth()
    )
    assert r.json()["version"] == 2
    assert audit_count(db, "notification_template.updated") == 2
    with transaction(db) as s:
        service.enqueue(
            s,
            kind="client",
            template="client_intro",
            locale="fr-CA",
            channel="email",
            recipient="ada@client.example",
            data=INTRO,
            not_before=clock.now(),
            now=clock.now(),
        )
    deliverer().run()
    [mail] = smtp.mails
    assert mail.message["Subject"] == "Nouveau : Sam"
    assert mail.message["Content-Language"] == "fr"
    assert outbox(db)[0].locale == "fr"


# ---- acknowledgment links ---------------------------------------------------------------------


def test_ack_link_valid_tampered_replayed(
    client: TestClient, db: Database, clock: ManualClock, smtp: SmtpServer, deliverer: MakeDeliverer
) -> None:
    with transaction(db) as s:
        nid = service.enqueue(
            s,
            kind="client",
            template="client_intro",
            locale="en",
            channel="email",
            recipient="ada@client.example",
            data=INTRO,
            not_before=clock.now(),
            handover_id=7,
            client_id="c-1",
            now=clock.now(),
        )
    deliverer().run()
    [mail] = smtp.mails
    text = mail.message.get_content()
    link = re.search(r"https://handover\.example\.com(/v1/notifications/\d+/ack\?sig=[A-Za-z0-9_-]+)", text)
    assert link is not None, text
    path = link.group(1)
    assert path.startswith(f"/v1/notifications/{nid}/ack")

    sig = path.rsplit("=", 1)[1]
    tampered = path[:-1] + ("A" if path[-1] != "A" else "B")
    for bad in (tampered, f"/v1/notifications/{nid + 1}/ack?sig={sig}", f"/v1/notifications/{nid}/ack?sig=x"):
        r = client.get(bad)
        assert r.status_code == 403, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"/v1/notifications/{nid}/ack").status_code == 422  # no sig at all
    assert outbox(db)[0].status == "sent"

    for bad in (tampered, f"/v1/notifications/{nid}/ack?sig=x"):
        assert client.post(bad).status_code == 403

    # The GET is a page with a confirm button; it records nothing (mail scanners follow links).
    page = client.get(path)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'method="post"' in page.text and f"/v1/notifications/{nid}/ack?sig={sig}" in page.text
    assert outbox(db)[0].status == "sent" and audit_count(db, "notification.acknowledged") == 0

    first = client.post(path)
    assert first.status_code == 200, first.text
    assert 'id="result"' in first.text and "recorded" in first.text
    acknowledged_at = outbox(db)[0].acknowledged_at
    clock.advance(dt.timedelta(minutes=5))
    replay = client.post(path)
    assert replay.status_code == 200 and "already acknowledged" in replay.text
    assert "already acknowledged" in client.get(path).text  # the page says so too, without a button
    assert audit_count(db, "notification.acknowledged") == 1
    row = outbox(db)[0]
    assert row.status == "acknowledged" and row.acknowledged_at == acknowledged_at


# ---- listing ----------------------------------------------------------------------------------


def test_notifications_list_filters(client: TestClient, auth: Any, db: Database, clock: ManualClock) -> None:
    now = clock.now()
    with transaction(db) as s:
        for handover, client_id, channel in ((1, "c1", "email"), (1, "c2", "phone"), (2, "c1", "email")):
            service.enqueue(
                s,
                kind="client",
                template="client_intro",
                locale="en",
                channel=channel,
                recipient="a@client.example",
                data=INTRO,
                not_before=now,
                handover_id=handover,
                client_id=client_id,
                now=now,
            )
        service.emit(s, "handover.created", {"handover_id": 1}, now=now)  # events are not notifications

    def ids(query: str) -> list[tuple[int | None, str | None, str]]:
        r = client.get(f"/v1/notifications{query}", headers=auth("hr"))
        assert r.status_code == 200, r.text
        return [(n["handover_id"], n["client"], n["status"]) for n in r.json()["items"]]

    assert ids("") == [(1, "c1", "pending"), (1, "c2", "skipped"), (2, "c1", "pending")]
    assert ids("?handover=1") == [(1, "c1", "pending"), (1, "c2", "skipped")]
    assert ids("?client=c1") == [(1, "c1", "pending"), (2, "c1", "pending")]
    assert ids("?status=skipped&handover=1") == [(1, "c2", "skipped")]
    assert ids("?limit=1&offset=2") == [(2, "c1", "pending")]
    skipped = client.get("/v1/notifications?status=skipped", headers=auth()).json()["items"][0]
    assert "phone" in skipped["last_error"] and skipped["attempts"] == 0
    assert client.get("/v1/notifications?status=bogus", headers=auth()).status_code == 422
    one = client.get(f"/v1/notifications/{skipped['id']}", headers=auth()).json()
    assert one["id"] == skipped["id"]
    assert client.get("/v1/notifications/999999", headers=auth()).status_code == 404
    # A manager sees only the notifications of handovers they may see (none exist here).
    assert client.get("/v1/notifications", headers=auth("manager", emp="m1")).json()["items"] == []


def test_undeliverable_email_is_dead_and_announced(
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
) -> None:
    """A permanent SMTP refusal (5xx) is final at once, and the CRM hears about it (notification.failed)."""
    receiver.start()
    make_endpoint(receiver, ["notification.failed"])
    with transaction(db) as s:
        nid = service.enqueue(
            s,
            kind="client",
            template="client_intro",
            locale="zh-CN",
            channel="email",
            recipient="nobody@bounce.example",
            data=INTRO,
            not_before=clock.now(),
            handover_id=3,
            client_id="c-1",
            now=clock.now(),
        )
    worker = deliverer()
    worker.run()
    [row] = outbox(db, id=nid)
    assert (row.status, row.attempts) == ("dead", 1)
    assert "550" in (row.last_error or "")
    worker.run()  # the announcement
    [event] = receiver.received
    assert event.verified
    assert event.json["type"] == "notification.failed"
    assert event.json["data"]["notification_id"] == nid and event.json["data"]["client"] == "c-1"
    assert smtp.mails == []


def test_ack_link_secret_settings() -> None:
    from pydantic import ValidationError

    from app.core.config import Settings

    with pytest.raises(ValidationError, match="HANDOVER_ACK_LINK_SECRET must be at least 32"):
        Settings(environment="production", jwt_secret="p" * 40, ack_link_secret="short")
    with pytest.raises(ValidationError, match="ack_link_secret is required"):
        Settings(environment="production", jwt_algorithms=["RS256"], jwt_public_key="pem")
    key = "A" * 43 + "="  # production needs an audit signing key (any 32 bytes here)
    derived = Settings(environment="production", jwt_secret="p" * 40, audit_signing_key=key)
    assert derived.ack_link_key not in (b"p" * 40, b"")  # derived, not the JWT secret itself
    explicit = Settings(environment="production", jwt_secret="p" * 40, ack_link_secret="a" * 40, audit_signing_key=key)
    assert explicit.ack_link_key == b"a" * 40
    with pytest.raises(ValidationError, match="delivery_lease_seconds"):
        Settings(outbound_timeout_seconds=30, delivery_lease_seconds=60)


def test_a_malformed_row_is_dead_and_does_not_block_the_queue(
    db: Database, clock: ManualClock, smtp: SmtpServer, deliverer: MakeDeliverer
) -> None:
    now = clock.now()
    with transaction(db) as s:
        bad = service.enqueue(
            s,
            kind="internal",
            template="signoff_reminder",
            locale="en",
            channel="email",
            recipient="e1@example.com",
            data={"side": "incoming", "items": [{"item_id": "not-a-number"}]},
            not_before=now,
            priority=5,
            now=now,
        )
        good = service.enqueue(
            s,
            kind="client",
            template="client_intro",
            locale="en",
            channel="email",
            recipient="ada@client.example",
            data=INTRO,
            not_before=now,
            now=now,
        )
    deliverer().run()
    [row] = outbox(db, id=bad)
    assert row.status == "dead" and "cannot prepare" in (row.last_error or "")
    assert outbox(db, id=good)[0].status == "sent" and len(smtp.mails) == 1
