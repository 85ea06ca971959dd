"""Approval deadlines (issue 15 point 3): the date, and the worker's daily reminders and escalation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory.models import Employee
from app.notify.models import OutboxMessage
from app.transfer import deadlines, service
from app.transfer.models import Handover
from app.worker import run_once
from tests.conftest import START
from tests.support.company import EFFECTIVE, approve, plan
from tests.support.receivers import Receiver, SmtpServer, outbox

UTC = dt.UTC
# START is Monday 2026-11-02 09:00 UTC; EFFECTIVE Monday 2026-11-16 09:00: three working days before is
# Wednesday 2026-11-11 09:00 (Friday 13th, Thursday 12th, Wednesday 11th).
DEADLINE = dt.datetime(2026, 11, 11, 9, 0, tzinfo=UTC)


# ---- the date -----------------------------------------------------------------------------------


def at(day: int, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("effective", "days", "expected"),
    [
        (at(16), 3, at(11)),  # Monday: back over the weekend to Wednesday
        (at(16), 1, at(13)),  # Monday: the Friday before
        (at(16), 5, at(9)),  # Monday: a week before
        (at(21, 10), 3, at(18, 10)),  # Saturday: Friday, Thursday, Wednesday
        (at(22, 10), 3, at(18, 10)),  # Sunday: the same Wednesday
        (at(18), 3, at(13)),  # Wednesday: Tuesday, Monday, then Friday before the weekend
        (at(20, 23, 30), 2, at(18, 23, 30)),  # the time of day is kept
        (at(16), 0, at(16)),  # no lead: the effective time itself
    ],
)
def test_working_days_before(effective: dt.datetime, days: int, expected: dt.datetime) -> None:
    assert deadlines.working_days_before(effective, days) == expected
    assert deadlines.approval_deadline(effective, opened_at=START, lead_working_days=days) == expected


def test_deadline_is_never_after_the_effective_time_nor_before_the_opening() -> None:
    # Opened on the Friday before a Monday exit: the three working days are already past, the deadline is now.
    assert deadlines.approval_deadline(at(16), opened_at=at(13, 12), lead_working_days=3) == at(13, 12)
    # Opened after the effective time (someone who already left): the effective time, in the past.
    assert deadlines.approval_deadline(at(16), opened_at=at(17), lead_working_days=3) == at(16)
    # Any time zone in, the same instant out, in UTC.
    cet = dt.timezone(dt.timedelta(hours=1))
    got = deadlines.approval_deadline(at(16).astimezone(cet), opened_at=START.astimezone(cet), lead_working_days=3)
    assert got == at(11) and got.tzinfo == UTC
    with pytest.raises(ValueError):
        deadlines.working_days_before(at(16), -1)


@given(
    effective=st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2028, 1, 1), timezones=st.just(UTC)),
    opened_before=st.timedeltas(min_value=dt.timedelta(days=-10), max_value=dt.timedelta(days=60)),
    days=st.integers(min_value=0, max_value=30),
)
def test_deadline_properties(effective: dt.datetime, opened_before: dt.timedelta, days: int) -> None:
    opened = effective - opened_before
    got = deadlines.approval_deadline(effective, opened_at=opened, lead_working_days=days)
    assert got <= effective
    assert got >= min(opened, effective)
    plain = deadlines.working_days_before(effective, days)
    assert plain.time() == effective.time()
    # Exactly `days` weekdays lie in [plain, effective) counted by date.
    weekdays = sum(
        1 for n in range((effective.date() - plain.date()).days) if (plain + dt.timedelta(days=n)).weekday() < 5
    )
    assert weekdays == days
    assert days == 0 or plain.weekday() < 5


# ---- the worker -----------------------------------------------------------------------------------


@pytest.fixture
def worker_db(notify_settings: Settings, db: Database) -> Iterator[Database]:
    """The worker's own engine, as `handover worker` has (with the test SMTP server)."""
    database = Database(notify_settings)
    yield database
    database.dispose()


def reminders(db: Database, hid: int) -> list[OutboxMessage]:
    return outbox(db, handover_id=hid, template="approval_reminder")


def overdue_audit(db: Database, hid: int) -> list[dict[str, Any]]:
    with db.session(write=False) as s:
        return [
            {"actor": a, **d}
            for a, d in s.execute(
                select(AuditEntry.actor, AuditEntry.data)
                .where(AuditEntry.action == "handover.overdue", AuditEntry.entity_id == str(hid))
                .order_by(AuditEntry.seq)
            )
        ]


def get(client: TestClient, auth: Any, hid: int) -> dict[str, Any]:
    r = client.get(f"/v1/handovers/{hid}", headers=auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_reminders_at_the_deadline_then_daily_escalating_until_approved(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    receiver: Receiver,
    make_endpoint: Any,
    worker_db: Database,
    open_handover: int,
) -> None:
    hid = open_handover
    receiver.start()
    make_endpoint(receiver, ["handover.overdue"])
    body = get(client, auth, hid)
    assert dt.datetime.fromisoformat(body["approval_deadline"]) == DEADLINE
    assert body["reminders_sent"] == 0
    plan(client, auth, hid)

    def run(when: dt.datetime) -> int:
        clock.set(when)
        done = run_once(worker_db, clock)
        assert all(v >= 0 for v in done.values()), done
        return done["remind_overdue_approvals"]

    # Nothing before the deadline; exactly one at it; none again the same day, however often the worker runs.
    assert run(DEADLINE - dt.timedelta(seconds=1)) == 0
    assert run(DEADLINE) == 1
    assert run(DEADLINE + dt.timedelta(seconds=5)) == 0
    assert run(DEADLINE + dt.timedelta(hours=23, minutes=59)) == 0
    [first] = reminders(db, hid)
    assert (first.recipient, first.locale, first.status) == ("m1@example.com", "en", "sent")
    assert first.payload["role"] == "approver" and first.payload["reminder"]["number"] == 1
    [mail] = smtp.to("m1@example.com")
    assert mail.message["Subject"] == f"Handover {hid} of Leo Leaver is not approved (reminder 1)"
    assert "2026-11-11" in mail.message.get_content() and "2026-11-16" in mail.message.get_content()
    assert not smtp.to("ceo@example.com")

    # A day later the second, to the approver and, escalated, to the approver's manager (m1's is the CEO).
    assert run(DEADLINE + dt.timedelta(days=1)) == 1
    assert run(DEADLINE + dt.timedelta(days=1, hours=1)) == 0
    assert run(DEADLINE + dt.timedelta(days=2)) == 1
    assert len(smtp.to("m1@example.com")) == 3
    escalations = smtp.to("ceo@example.com")
    assert [m.message["Subject"] for m in escalations] == [
        f"Escalation: Handover {hid} of Leo Leaver is not approved (reminder {n})" for n in (2, 3)
    ]
    assert "Mia Manager has not yet approved" in escalations[0].message.get_content()
    body = get(client, auth, hid)
    assert body["reminders_sent"] == 3

    # One handover.overdue event per reminder (not per recipient), signed, with the count and the escalation.
    events = [e.json for e in receiver.received]
    assert [e["type"] for e in events] == ["handover.overdue"] * 3
    assert all(e.verified for e in receiver.received)
    assert [(e["data"]["reminder"], e["data"]["escalated_to"]) for e in events] == [(1, None), (2, "ceo"), (3, "ceo")]
    assert {e["data"]["handover_id"] for e in events} == {hid}
    assert events[0]["data"]["approval_deadline"].startswith("2026-11-11T09:00:00")
    # One audit entry per reminder, naming the notifications it wrote.
    entries = overdue_audit(db, hid)
    assert [(e["reminder"], e["escalated_to"], len(e["notifications"])) for e in entries] == [
        (1, None, 1),
        (2, "ceo", 2),
        (3, "ceo", 2),
    ]
    assert {e["actor"] for e in entries} == {"system:worker"}

    # Approved: no reminder ever after, whatever time passes.
    approve(client, auth, hid)
    assert run(DEADLINE + dt.timedelta(days=3)) == 0
    assert run(DEADLINE + dt.timedelta(days=4)) == 0
    assert len(reminders(db, hid)) == 5
    assert len(overdue_audit(db, hid)) == 3 and len(receiver.received) == 3
    assert get(client, auth, hid)["reminders_sent"] == 3


def test_a_stopped_worker_sends_one_reminder_not_the_missed_ones(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, worker_db: Database, open_handover: int
) -> None:
    clock.set(DEADLINE + dt.timedelta(days=4, hours=3))
    with transaction(worker_db) as s:
        assert deadlines.remind_due(s, clock.now(), settings=worker_db.settings) == 1
    with transaction(worker_db) as s:
        assert deadlines.remind_due(s, clock.now(), settings=worker_db.settings) == 0
    clock.advance(dt.timedelta(days=1))
    with transaction(worker_db) as s:
        assert deadlines.remind_due(s, clock.now(), settings=worker_db.settings) == 1
    assert [m.payload["reminder"] for m in reminders(db, open_handover)][:1] == [{"number": 1, "days_overdue": 4}]
    assert len(overdue_audit(db, open_handover)) == 2


def test_reminder_in_the_recipients_language(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    worker_db: Database,
    open_handover: int,
) -> None:
    """The approver reads Chinese only, their manager has no language (the default, en)."""
    with transaction(db) as s:
        s.execute(update(Employee).where(Employee.external_id == "m1").values(languages=["zh"]))
    for when in (DEADLINE, DEADLINE + dt.timedelta(days=1)):
        clock.set(when)
        run_once(worker_db, clock)
    by_recipient = {(m.recipient, m.payload["reminder"]["number"]): m.locale for m in reminders(db, open_handover)}
    assert by_recipient == {
        ("m1@example.com", 1): "zh-CN",
        ("m1@example.com", 2): "zh-CN",
        ("ceo@example.com", 2): "en",
    }
    zh = smtp.to("m1@example.com")
    assert [m.message["Content-Language"] for m in zh] == ["zh-CN", "zh-CN"]
    assert zh[0].message["Subject"] == f"交接单 {open_handover}（Leo Leaver）尚未批准（第1次提醒）"
    assert "批准截止日期为2026-11-11" in zh[0].message.get_content()
    [ceo] = smtp.to("ceo@example.com")
    assert ceo.message["Content-Language"] == "en" and ceo.message["Subject"].startswith("Escalation: ")


def test_a_reminder_written_before_approval_is_withdrawn_and_cancel_stops_them(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    smtp: SmtpServer,
    deliverer: Any,
    worker_db: Database,
    open_handover: int,
) -> None:
    hid = open_handover
    plan(client, auth, hid)
    clock.set(DEADLINE)
    with transaction(worker_db) as s:
        assert deadlines.remind_due(s, clock.now(), settings=worker_db.settings) == 1
    approve(client, auth, hid)  # before the outbox sent it
    deliverer().run()
    [withdrawn] = reminders(db, hid)
    assert withdrawn.status == "withdrawn" and "approved" in (withdrawn.last_error or "")
    assert not [m for m in smtp.mails if "not approved" in str(m.message["Subject"])]

    # Another leaver, cancelled after one reminder: none after.
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e2", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    assert dt.datetime.fromisoformat(r.json()["approval_deadline"]) == DEADLINE  # opened now, at DEADLINE: the same
    clock.advance(dt.timedelta(days=1))
    with transaction(worker_db) as s:
        assert deadlines.remind_due(s, clock.now(), settings=worker_db.settings) == 1
    r = client.post(f"/v1/handovers/{other}/cancel", json={"reason": "stays"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    clock.advance(dt.timedelta(days=1))
    with transaction(worker_db) as s:
        assert deadlines.remind_due(s, clock.now(), settings=worker_db.settings) == 0
    assert len(overdue_audit(db, other)) == 1


def test_setting_reschedule_and_backfill(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    hid = open_handover
    one_day = settings.model_copy(update={"approval_lead_working_days": 1})
    with transaction(db) as s:
        h = s.get(Handover, hid)
        assert h is not None and h.approval_deadline == DEADLINE
        # Overdue once, then the effective time moves two weeks later: not overdue any more, the count restarts.
        clock.set(DEADLINE)
        assert deadlines.remind_due(s, clock.now(), settings=one_day) == 1
        later = EFFECTIVE + dt.timedelta(days=14)  # Monday 30th
        service.reschedule(s, h, effective_at=later, actor="test", now=clock.now(), settings=one_day)
        assert h.approval_deadline == dt.datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # the Friday before
        assert (h.reminders_sent, h.last_reminded_at) == (0, None)
        # Opened before deadlines existed: the worker gives it one from the setting, then reminds as due.
        h.approval_deadline = None
        s.flush()
        assert deadlines.remind_due(s, clock.now(), settings=one_day) == 0
        assert h.approval_deadline == dt.datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert Settings(database_url="sqlite://").approval_lead_working_days == 3
    with pytest.raises(ValueError):
        Settings(database_url="sqlite://", approval_lead_working_days=-1)


def test_no_approver_the_reminder_is_on_record_as_not_sent(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, worker_db: Database, company: dict[str, Any]
) -> None:
    """The CEO has no manager: the handover names no approver. The reminder is stored as skipped with the reason
    (visible in the list of notifications), and the event and the audit entry still say the handover is late."""
    r = client.post(
        "/v1/handovers",
        json={"leaver": "ceo", "reason": "retirement", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    hid = r.json()["id"]
    for when in (DEADLINE, DEADLINE + dt.timedelta(days=1)):
        clock.set(when)
        with transaction(worker_db) as s:
            assert deadlines.remind_due(s, clock.now(), settings=worker_db.settings) == 1
    rows = reminders(db, hid)
    assert [(m.status, m.recipient, m.last_error) for m in rows] == [
        ("skipped", None, "approver (none) has no email address")
    ] * 2
    assert [(e["reminder"], e["approver"], e["escalated_to"]) for e in overdue_audit(db, hid)] == [
        (1, None, None),
        (2, None, None),
    ]
    listed = client.get(f"/v1/notifications?handover={hid}&status=skipped", headers=auth()).json()["items"]
    assert len(listed) == 2
