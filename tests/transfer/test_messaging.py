"""Approval tells the successors, the manager and every client contact, in their language, through their channel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete, func, insert, select, update

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory.models import ClientContact, Employee
from app.notify import rendering, service
from app.notify.models import OutboxMessage
from app.notify.worker import Deliverer
from app.transfer import messaging
from app.transfer.models import Handover, HandoverItem
from tests.support.company import EFFECTIVE, approve, plan
from tests.support.receivers import Receiver, SmtpServer, outbox

MakeDeliverer = Callable[..., Deliverer]

# Risk per client: c5 highest, c6 and c7 unscored (last).
RISK = {"c0": 20.0, "c1": 55.5, "c2": 70.0, "c3": 10.0, "c4": 40.0, "c5": 91.25, "c6": None, "c7": None}


def prepare(db: Database, hid: int) -> dict[str, str]:
    """Risk scores, and contacts that exercise every channel and locale fallback; returns client → receiver."""
    with transaction(db) as s:
        for client_id, score in RISK.items():
            s.execute(
                update(HandoverItem)
                .where(HandoverItem.handover_id == hid, HandoverItem.client_id == client_id)
                .values(
                    risk_score=None if score is None else Decimal(str(score)),
                    risk_band=None if score is None else ("high" if score >= 70 else "low"),
                )
            )
        s.execute(update(ClientContact).where(ClientContact.client_id == "c2").values(preferred_channel="webhook"))
        s.execute(update(ClientContact).where(ClientContact.client_id == "c4").values(preferred_channel="phone"))
        s.execute(
            insert(ClientContact),
            [
                {
                    "client_id": "c1",
                    "position": 1,
                    "name": "李雷",
                    "email": "li@client.example",
                    "locale": "zh",
                    "preferred_channel": "email",
                    "is_primary": False,
                },
                {
                    "client_id": "c3",
                    "position": 1,
                    "name": "Amélie",
                    "email": "amelie@client.example",
                    "locale": "fr-FR",
                    "preferred_channel": "email",
                    "is_primary": False,
                },
            ],
        )
        rows = s.execute(
            select(HandoverItem.client_id, HandoverItem.successor_id, HandoverItem.interim_owner_id).where(
                HandoverItem.handover_id == hid
            )
        ).all()
    return {c: succ or interim for c, succ, interim in rows}


def approved(client: TestClient, auth: Any, db: Database, hid: int) -> dict[str, str]:
    """Approved over HTTP (which enqueues everything at once); the outbox is then emptied so each test can
    call `on_handover_approved` itself on the data it prepared."""
    plan(client, auth, hid)
    approve(client, auth, hid)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.handover_id == hid))
        s.execute(delete(OutboxMessage).where(OutboxMessage.handover_id == hid))
        s.commit()
    return prepare(db, hid)


def employees(db: Database) -> dict[str, tuple[str, str]]:
    with db.session(write=False) as s:
        return {e: (n, m) for e, n, m in s.execute(select(Employee.external_id, Employee.name, Employee.email))}


def test_approval_tells_everyone_in_their_language(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
    notify_settings: Settings,
    open_handover: int,
) -> None:
    hid = open_handover
    owners = approved(client, auth, db, hid)
    people = employees(db)
    receiver.start()
    make_endpoint(receiver, ["notification.client_intro"])
    with transaction(db) as s:
        counts = messaging.on_approved(s, [hid], now=clock.now(), settings=notify_settings)[hid]
    successors = sorted(set(owners.values()))
    assert counts["successor_briefing"] == len(successors)
    assert counts["manager_summary"] == 1
    assert counts["client_intro"] == 10  # eight primary contacts and two more
    assert counts["skipped"] == 1  # the contact who prefers the phone

    deliverer().run()

    # Successors: one briefing each, their clients highest risk first, in their language.
    for successor in successors:
        name, address = people[successor]
        [mail] = [
            m for m in smtp.to(address) if "briefing" in m.message["Subject"] or "交接简报" in m.message["Subject"]
        ]
        text = mail.message.get_content()
        mine = sorted(
            (c for c, o in owners.items() if o == successor), key=lambda c: (RISK[c] is None, -(RISK[c] or 0))
        )
        positions = [text.index(f"({c})") if f"({c})" in text else text.index(f"（{c}）") for c in mine]
        assert positions == sorted(positions), (successor, mine)
        zh = successor == "e1"  # 王芳 speaks only Chinese
        assert mail.message["Content-Language"] == ("zh-CN" if zh else "en")
        assert ("交接简报" if zh else "Handover briefing") in mail.message["Subject"]
        assert name in text

    # The manager's summary.
    [summary] = [m for m in smtp.to("m1@example.com") if "approved" in m.message["Subject"]]
    assert summary.message["Subject"] == "Handover 1 approved: 8 client(s) of Leo Leaver".replace("1", str(hid), 1)
    assert "High-risk clients: 2" in summary.message.get_content()

    # Client intros by email: language from the contact, successor named, From/To right, an ack link.
    intro_mails = [m for m in smtp.mails if m.rcpt_tos[0].endswith("@client.example")]
    assert len(intro_mails) == 8  # c2 goes by webhook, c4 by phone (skipped)
    for mail in intro_mails:
        msg = mail.message
        address = mail.rcpt_tos[0]
        client_id = {"li@client.example": "c1", "amelie@client.example": "c3"}.get(address, address.split("@")[0])
        successor_name = people[owners[client_id]][0]
        assert msg["To"] == address and mail.mail_from == "handover@example.com"
        assert msg["From"] == "Handover <handover@example.com>"
        expected = {"c1@client.example": "zh-CN", "li@client.example": "zh-CN", "amelie@client.example": "en"}.get(
            address, "zh-CN" if int(client_id[1:]) % 2 else "en"
        )
        assert msg["Content-Language"] == expected, address
        assert successor_name in msg["Subject"]
        body = msg.get_content()
        assert "/ack?sig=" in body and "2026-11-16" in body
        if expected == "zh-CN":
            assert "您的新客户经理是" in msg["Subject"] and "您好" in body
        else:
            assert "Your new account manager" in msg["Subject"] and "Dear" in body

    # High-risk clients first: intros arrive in risk order (unscored last), after the internal messages.
    order = [m.rcpt_tos[0] for m in smtp.mails]
    internal = [people[s][1] for s in successors] + ["m1@example.com"]
    assert sorted(order[: len(internal)]) == sorted(internal)
    primary = [a.split("@")[0] for a in order[len(internal) :] if a.startswith("c")]
    ranked = sorted((c for c in RISK if c not in ("c2", "c4")), key=lambda c: (RISK[c] is None, -(RISK[c] or 0)))
    assert primary[:4] == ranked[:4]  # c5, c1, c0, c3: the scored ones, in order
    assert set(primary[4:]) == {"c6", "c7"}

    # The contact who prefers the CRM's channel: a signed notification.client_intro event.
    [event] = receiver.received
    assert event.verified
    assert event.json["type"] == "notification.client_intro"
    data = event.json["data"]
    assert data["client"] == "c2" and data["locale"] == "en" and data["contact"]["email"] == "c2@client.example"
    assert "/ack?sig=" in data["ack_url"] and data["subject"].startswith("Your new account manager")

    # The phone contact is on record as not told, with the reason.
    [phone] = outbox(db, client_id="c4")
    assert phone.status == "skipped" and "phone" in (phone.last_error or "")
    listed = client.get(f"/v1/notifications?handover={hid}&status=sent", headers=auth()).json()["items"]
    assert len(listed) == len(successors) + 1 + 9


def test_signoff_reminders_go_three_days_before_and_only_for_unsigned_items(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    deliverer: MakeDeliverer,
    notify_settings: Settings,
    open_handover: int,
) -> None:
    hid = open_handover
    owners = approved(client, auth, db, hid)
    people = employees(db)
    with transaction(db) as s:
        messaging.on_approved(s, [hid], now=clock.now(), settings=notify_settings)[hid]
    worker = deliverer()
    worker.run()
    reminders = outbox(db, template="signoff_reminder")
    assert reminders and {r.status for r in reminders} == {"pending"}
    assert {r.not_before for r in reminders} == {EFFECTIVE - dt.timedelta(days=3)}
    smtp.mails.clear()

    # Before the reminders are due: the leaver signs every item but c0; one successor signs all of theirs.
    done_successor = owners["c5"]
    with transaction(db) as s:
        s.execute(
            update(HandoverItem)
            .where(HandoverItem.handover_id == hid, HandoverItem.client_id != "c0")
            .values(outgoing_signed_at=clock.now(), outgoing_signed_by="e0")
        )
        s.execute(
            update(HandoverItem)
            .where(HandoverItem.handover_id == hid, HandoverItem.successor_id == done_successor)
            .values(incoming_signed_at=clock.now(), incoming_signed_by=done_successor)
        )
    clock.set(EFFECTIVE - dt.timedelta(days=3, seconds=1))
    assert worker.run() == 0
    clock.advance(dt.timedelta(seconds=1))
    worker.run()

    [leaver_mail] = smtp.to("e0@example.com")
    text = leaver_mail.message.get_content()
    assert "(c0)" in text or "（c0）" in text
    assert all(f"(c{i})" not in text and f"（c{i}）" not in text for i in range(1, 8))
    assert smtp.to(people[done_successor][1]) == []
    [skipped] = [r for r in outbox(db, template="signoff_reminder") if r.recipient == people[done_successor][1]]
    assert skipped.status == "skipped" and "signed" in (skipped.last_error or "")
    others = {o for o in owners.values() if o != done_successor}
    assert all(len(smtp.to(people[o][1])) == 1 for o in others)


def test_intros_days_before_then_cancel_withdraws_what_was_not_sent(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    deliverer: MakeDeliverer,
    notify_settings: Settings,
    open_handover: int,
) -> None:
    hid = open_handover
    approved(client, auth, db, hid)
    settings = notify_settings.model_copy(update={"client_intro_days_before": 7})
    with transaction(db) as s:
        messaging.on_approved(s, [hid], now=clock.now(), settings=settings)[hid]
    intros = [r for r in outbox(db, template="client_intro") if r.status == "pending"]
    assert {r.not_before for r in intros} == {EFFECTIVE - dt.timedelta(days=7)}
    worker = deliverer(settings=settings)
    worker.run()
    assert all(m.rcpt_tos[0].endswith("@example.com") for m in smtp.mails)  # only the internal ones so far

    # The effective time moves: what waits moves with it, and renders with the new date.
    later = EFFECTIVE + dt.timedelta(days=2)
    with transaction(db) as s:
        s.execute(update(Handover).where(Handover.id == hid).values(effective_at=later))
        messaging.on_rescheduled(s, s.get(Handover, hid), now=clock.now(), settings=settings)
    assert {r.not_before for r in outbox(db, template="client_intro", status="pending")} == {
        later - dt.timedelta(days=7)
    }
    clock.set(later - dt.timedelta(days=7))
    worker.run(budget_seconds=None)
    [first] = [m for m in smtp.mails if m.rcpt_tos == ["c0@client.example"]]
    assert later.date().isoformat() in first.message.get_content()

    # Cancel: reminders (not due yet) are withdrawn; what was sent stays sent.
    r = client.post(f"/v1/handovers/{hid}/cancel", json={"reason": "stays"}, headers=auth("hr"))
    assert r.status_code == 200, r.text  # the cancellation withdraws in its own transaction
    assert len(outbox(db, template="signoff_reminder", status="withdrawn")) > 0
    with transaction(db) as s:
        assert messaging.on_cancelled(s, handover_id=hid) == 0  # nothing left to withdraw
    clock.set(later)
    sent_before = len(smtp.mails)
    worker.run()
    assert len(smtp.mails) == sent_before
    statuses = {r.status for r in outbox(db)}
    assert "pending" not in statuses and "failed" not in statuses


def test_cancel_before_intros_go_withdraws_them(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    notify_settings: Settings,
    open_handover: int,
) -> None:
    hid = open_handover
    approved(client, auth, db, hid)
    settings = notify_settings.model_copy(update={"client_intro_days_before": 7})
    with transaction(db) as s:
        messaging.on_approved(s, [hid], now=clock.now(), settings=settings)[hid]
        service.emit(s, "handover.approved", {"handover_id": hid}, now=clock.now())
    with transaction(db) as s:
        messaging.on_cancelled(s, handover_id=hid)
    intros = outbox(db, template="client_intro")
    assert {r.status for r in intros} == {"withdrawn", "skipped"}
    assert all(r.status == "withdrawn" for r in outbox(db, category="notification") if r.status != "skipped")


def test_locale_fallback() -> None:
    available = {"en", "zh-CN"}
    assert service.pick_locale(["zh-CN"], available, "en") == "zh-CN"
    assert service.pick_locale(["zh"], available, "en") == "zh-CN"
    assert service.pick_locale(["ZH-cn"], available, "en") == "zh-CN"
    assert service.pick_locale(["fr"], available, "en") == "en"
    assert service.pick_locale(["fr"], available, "zh-CN") == "zh-CN"
    assert service.pick_locale(["fr", "zh"], available, "en") == "zh-CN"
    assert service.pick_locale([None], available, "de") == "en"


def test_approval_plans_once_and_a_missed_cancel_still_stops_sending(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    deliverer: MakeDeliverer,
    notify_settings: Settings,
    open_handover: int,
) -> None:
    hid = open_handover
    approved(client, auth, db, hid)
    with transaction(db) as s:
        assert messaging.on_approved(s, [hid], now=clock.now(), settings=notify_settings)[hid]
    rows = len(outbox(db))
    with transaction(db) as s:
        assert messaging.on_approved(s, [hid], now=clock.now(), settings=notify_settings)[hid] == {}
    assert len(outbox(db)) == rows
    r = client.post(f"/v1/handovers/{hid}/cancel", headers=auth("hr"))  # on_handover_cancelled not called
    assert r.status_code == 200, r.text
    deliverer().run()
    assert smtp.mails == []
    assert {r.status for r in outbox(db)} <= {"withdrawn", "skipped", "pending"}
    assert {r.status for r in outbox(db) if r.not_before <= clock.now()} <= {"withdrawn", "skipped"}


def test_manager_summary_counts_critical_with_high_critical_first(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, notify_settings: Settings, open_handover: int
) -> None:
    """Issue 15 point 9: the summary's high-risk count and list dropped `critical` clients (a strategic client
    with satisfaction 1 and a competitor destination is critical, so such a handover reported only its high ones).
    Critical ones are counted with the high ones and listed first, even when a rule made one critical at a score
    below a high one's."""
    hid = open_handover
    approved(client, auth, db, hid)
    bands = {"c0": ("critical", 62.0), "c1": ("critical", 95.0), "c2": ("high", 99.0), "c3": ("critical", 70.0)}
    bands |= {"c4": ("high", 40.0), "c5": ("medium", 30.0), "c6": ("low", 1.0), "c7": (None, None)}
    with transaction(db) as s:
        for client_id, (band, score) in bands.items():
            s.execute(
                update(HandoverItem)
                .where(HandoverItem.handover_id == hid, HandoverItem.client_id == client_id)
                .values(risk_band=band, risk_score=None if score is None else Decimal(str(score)))
            )
    with transaction(db) as s:
        messaging.on_approved(s, [hid], now=clock.now(), settings=notify_settings)
    [summary] = outbox(db, handover_id=hid, template="manager_summary")
    data = summary.payload
    assert data["totals"]["high_risk"] == 5  # three critical and two high
    listed = [(c["external_id"], c["risk_band"]) for c in data["high_risk_clients"]]
    assert listed == [("c1", "critical"), ("c3", "critical"), ("c0", "critical"), ("c2", "high"), ("c4", "high")]
    for locale, line in (("en", "High-risk clients: 5"), ("zh-CN", "高风险客户：5")):
        text = rendering.render(rendering.builtins()[("manager_summary", locale)], data).body
        assert line in text
        assert text.index("(c1)" if locale == "en" else "（c1）") < text.index("(c2)" if locale == "en" else "（c2）")
    assert "风险极高" in rendering.render(rendering.builtins()[("manager_summary", "zh-CN")], data).body
