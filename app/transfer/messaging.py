"""What a handover tells whom: the messages approval sets in motion, and what is re-checked when they are sent.

Approval writes, in one bulk insert per 5,000 rows: a briefing for every successor (their clients, highest risk
first, each with its checklist), a summary for the leaver's manager, an introduction for every client contact in
their language through their channel (at the configured time, highest risk first), and sign-off reminders three
days before the effective time. The outbox (`app.notify`) stores and delivers them and knows no handover; at send
time it asks `check_at_send` (bound in `app.worker`) whether each message still holds.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.directory import service as directory
from app.directory.models import Client, ClientContact
from app.notify import service as notify
from app.notify.worker import Outgoing, Verdict
from app.transfer.deadlines import AWAITING_APPROVAL
from app.transfer.models import CHECKLIST_KEYS, Handover, HandoverItem

SIGNOFF_REMINDER_LEAD = dt.timedelta(days=3)
MAX_HIGH_RISK_LISTED = 20
# The bands the manager's summary counts and lists as high risk, most severe first (critical before high).
HIGH_RISK_BANDS = ("critical", "high")
APPROVAL_ROWS_PER_INSERT = 5_000
SIGNABLE_ITEM_STATUSES = ("approved", "transferred")
APPROVAL_TEMPLATES = ("successor_briefing", "client_intro")


def _date(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).date().isoformat()


def _score(value: Any) -> float | None:
    return None if value is None else float(value)


def _risk_priority(score: Any) -> int:
    """Higher risk first; unscored clients after every scored one."""
    return 0 if score is None else round(float(score) * 100) + 1


def intro_time(effective_at: dt.datetime, now: dt.datetime, settings: Settings) -> dt.datetime:
    if settings.client_intro_days_before is None:
        return now
    return max(now, effective_at - dt.timedelta(days=settings.client_intro_days_before))


def reminder_time(effective_at: dt.datetime, now: dt.datetime) -> dt.datetime:
    return max(now, effective_at - SIGNOFF_REMINDER_LEAD)


class _Item(NamedTuple):
    """An approved item as the messages need it."""

    id: int
    client_id: str
    client_name: str
    tier: str
    risk_score: Any
    risk_band: str | None
    checklist: dict[str, Any] | None
    receiver: str | None  # the successor, else the interim owner
    successor: str | None
    outgoing_signed_at: dt.datetime | None
    incoming_signed_at: dt.datetime | None


class _Contact(NamedTuple):
    client_id: str
    id: int
    name: str
    email: str | None
    phone: str | None
    locale: str | None
    channel: str


@dataclass(frozen=True)
class _Shared:
    """What every handover of one approval looks up once: people, contacts, locales, the intro subscribers."""

    people: dict[str, directory.Person]
    contacts: dict[str, list[_Contact]]
    locales: dict[str, set[str]]
    intro_endpoints: list[int]
    picked: dict[tuple[str, tuple[str | None, ...], str], str] = field(default_factory=dict)

    def locale(self, template: str, wanted: tuple[str | None, ...], default: str) -> str:
        """`pick_locale`, remembered: a layoff asks the same question for tens of thousands of contacts."""
        key = (template, wanted, default)
        if key not in self.picked:
            self.picked[key] = notify.pick_locale(wanted, self.locales[template], default)
        return self.picked[key]


def on_approved(
    session: Session, handover_ids: Sequence[int], *, now: dt.datetime, settings: Settings
) -> dict[int, dict[str, int]]:
    """Everything approval sets in motion, for handovers approved together: the lookups once for all of them and
    one bulk insert per 5,000 rows, in handover order, as approving them one after another would write.

    Returns the number of rows per template (and `skipped`) per handover; {} for one whose messages exist already.
    """
    i = HandoverItem
    handovers = session.scalars(select(Handover).where(Handover.id.in_(handover_ids))).all()
    by_id = {h.id: h for h in handovers}
    done = notify.already_sent_for(session, list(handover_ids), APPROVAL_TEMPLATES)
    todo = [by_id[hid] for hid in dict.fromkeys(handover_ids) if hid in by_id and hid not in done]
    out: dict[int, dict[str, int]] = {hid: {} for hid in handover_ids}
    if not todo:
        return out
    ids = [h.id for h in todo]
    items_of: dict[int, list[_Item]] = defaultdict(list)
    for row in session.execute(
        select(
            i.handover_id,
            i.id,
            i.client_id,
            Client.name,
            Client.tier,
            i.risk_score,
            i.risk_band,
            i.checklist,
            func.coalesce(i.successor_id, i.interim_owner_id),
            i.successor_id,
            i.outgoing_signed_at,
            i.incoming_signed_at,
        )
        .join(Client, Client.external_id == i.client_id)
        .where(i.handover_id.in_(ids), i.status == "approved")
        .order_by(i.handover_id, i.risk_score.is_(None), i.risk_score.desc(), i.id)
    ):
        items_of[row[0]].append(_Item(*row[1:]))
    wanted = {h.leaver_id for h in todo} | {h.manager_id for h in todo if h.manager_id}
    wanted |= {r.receiver for rows in items_of.values() for r in rows if r.receiver}
    contacts: dict[str, list[_Contact]] = defaultdict(list)
    cc = ClientContact
    for c in session.execute(
        select(cc.client_id, cc.id, cc.name, cc.email, cc.phone, cc.locale, cc.preferred_channel)
        .where(cc.client_id.in_(select(i.client_id).where(i.handover_id.in_(ids), i.status == "approved")))
        .order_by(cc.client_id, cc.position, cc.id)
    ):
        contacts[c[0]].append(_Contact(*c))
    shared = _Shared(
        directory.people(session, wanted),
        contacts,
        notify.available_locales(session),
        notify.subscribers(session, "notification.client_intro"),
    )
    rows: list[dict[str, Any]] = []
    for n, h in enumerate(todo, 1):
        out[h.id] = _approval_rows(h, items_of.pop(h.id, []), shared, rows, now=now, settings=settings)
        if len(rows) >= APPROVAL_ROWS_PER_INSERT or n == len(todo):
            # In slices, so a layoff's 75,000 notifications are never all in memory at once.
            notify.insert_messages(session, rows)
            rows = []
    return out


def _approval_rows(
    h: Handover,
    items: Sequence[_Item],
    shared: _Shared,
    rows: list[dict[str, Any]],
    *,
    now: dt.datetime,
    settings: Settings,
) -> dict[str, int]:
    """Appends one handover's notifications to `rows`; returns the count per template (and `skipped`)."""
    people = shared.people
    first = len(rows)
    default = settings.default_locale
    leaver = people.get(h.leaver_id) or directory.Person(h.leaver_id, None, None, None, [])
    effective_date = _date(h.effective_at)
    handover_ctx = {"id": h.id, "effective_date": effective_date}
    counts: dict[str, int] = defaultdict(int)

    def name_of(person_id: str) -> str:
        return people[person_id].name if person_id in people else person_id

    def internal(template: str, person_id: str, data: dict[str, Any], at: dt.datetime) -> None:
        person = people.get(person_id)
        locale = shared.locale(template, tuple(person.languages) if person else (), default)
        rows.append(
            notify.message_row(
                kind="internal",
                template=template,
                locale=locale,
                channel="email",
                recipient=person.email if person else None,
                endpoint_id=None,
                data=data,
                not_before=at,
                now=now,
                handover_id=h.id,
                priority=notify.PRIORITY_INTERNAL,
                skip=None if person and person.email else f"employee {person_id} has no email address",
                for_bulk=True,
            )
        )
        counts[template] += 1

    # Successor briefings: one per receiver (successor or interim owner), their clients highest risk first.
    by_receiver: dict[str, list[_Item]] = defaultdict(list)
    for item in items:
        if item.receiver:
            by_receiver[item.receiver].append(item)
    for person_id, mine in by_receiver.items():
        clients = _briefing_clients(mine)
        internal(
            "successor_briefing",
            person_id,
            {
                "successor": {"name": name_of(person_id)},
                "leaver": {"name": leaver.name},
                "handover": handover_ctx,
                "clients": clients,
            },
            now,
        )

    # Client intros: one per contact, in the contact's language, through the contact's channel.
    intro_at = intro_time(h.effective_at, now, settings)
    intros = 0
    for item in items:
        intros += _intro_rows(
            h, item, people, shared, rows, leaver=leaver.name, intro_at=intro_at, now=now, settings=settings
        )
    counts["client_intro"] = intros

    # The manager's summary, after the intros are counted.
    if h.manager_id:
        successors = sorted(
            ({"id": p, "name": name_of(p), "clients": len(mine)} for p, mine in by_receiver.items()),
            key=lambda s: (-len(by_receiver.get(str(s["id"]), [])), str(s["name"])),
        )
        # Critical and high, critical first; within a band highest score first (the items' order).
        high = sorted(
            (r for r in items if r.risk_band in HIGH_RISK_BANDS), key=lambda r: HIGH_RISK_BANDS.index(r.risk_band)
        )
        manager = people.get(h.manager_id)
        internal(
            "manager_summary",
            h.manager_id,
            {
                "manager": {"name": manager.name if manager else h.manager_id},
                "leaver": {"name": leaver.name},
                "handover": handover_ctx,
                "totals": {
                    "clients": len(items),
                    "high_risk": len(high),
                    "interim": sum(1 for r in items if r.successor is None),
                    "intros": intros,
                },
                "intro_date": _date(intro_at),
                "successors": successors,
                "high_risk_clients": [
                    {
                        "name": r.client_name,
                        "external_id": r.client_id,
                        "risk_band": r.risk_band,
                        "successor": name_of(r.receiver) if r.receiver else None,
                    }
                    for r in high[:MAX_HIGH_RISK_LISTED]
                ],
            },
            now,
        )

    # Sign-off reminders: per person and side, for items unsigned now; `check_at_send` re-checks them.
    remind_at = reminder_time(h.effective_at, now)
    sides: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        entry = {"item_id": item.id, "client": item.client_name, "external_id": item.client_id}
        if item.outgoing_signed_at is None:
            sides[(h.leaver_id, "outgoing")].append(entry)
        if item.incoming_signed_at is None and item.receiver:
            sides[(item.receiver, "incoming")].append(entry)
    for (person_id, side), entries in sides.items():
        internal(
            "signoff_reminder",
            person_id,
            {
                "recipient": {"name": name_of(person_id)},
                "side": side,
                "leaver": {"name": leaver.name},
                "handover": handover_ctx,
                "items": entries,
            },
            remind_at,
        )
    counts["skipped"] = sum(1 for row in rows[first:] if row["status"] == "skipped")
    return dict(counts)


def _briefing_clients(mine: Sequence[_Item]) -> list[dict[str, Any]]:
    """A successor briefing's clients, in the items' order (highest risk first)."""
    return [
        {
            "name": r.client_name,
            "external_id": r.client_id,
            "tier": r.tier,
            "risk_band": r.risk_band,
            "risk_score": _score(r.risk_score),
            "checklist": [{"key": k, "done": bool((r.checklist or {}).get(k, {}).get("done"))} for k in CHECKLIST_KEYS],
        }
        for r in mine
    ]


def _intro_rows(
    h: Handover,
    item: _Item,
    people: dict[str, directory.Person],
    shared: _Shared,
    rows: list[dict[str, Any]],
    *,
    leaver: str,
    intro_at: dt.datetime,
    now: dt.datetime,
    settings: Settings,
) -> int:
    """Appends the introductions of one item's client (one per contact, in the contact's language, through the
    contact's channel) naming its receiver; returns how many contacts."""
    new_owner = people.get(item.receiver) if item.receiver else None
    contacts = shared.contacts.get(item.client_id, [])
    for c in contacts:
        data = {
            "contact": {"name": c.name},
            "client": {"name": item.client_name, "external_id": item.client_id},
            "leaver": {"name": leaver},
            "successor": {
                "name": new_owner.name if new_owner else "",
                "email": new_owner.email if new_owner else "",
                "title": new_owner.title if new_owner else None,
            },
            "effective_date": _date(h.effective_at),
            "recipient": {"contact_id": c.id, "name": c.name, "email": c.email, "phone": c.phone},
        }
        common: dict[str, Any] = {
            "kind": "client",
            "template": "client_intro",
            "locale": shared.locale("client_intro", (c.locale,), settings.default_locale),
            "data": data,
            "not_before": intro_at,
            "now": now,
            "handover_id": h.id,
            "client_id": item.client_id,
            "priority": _risk_priority(item.risk_score),
            "for_bulk": True,
        }
        if c.channel == "email":
            skip = None if c.email else "the contact has no email address"
            rows.append(notify.message_row(channel="email", recipient=c.email, endpoint_id=None, skip=skip, **common))
        elif c.channel == "webhook" and shared.intro_endpoints:
            for endpoint_id in shared.intro_endpoints:
                rows.append(notify.message_row(channel="webhook", recipient=None, endpoint_id=endpoint_id, **common))
        elif c.channel == "webhook":
            skip = "no webhook endpoint subscribes to notification.client_intro"
            rows.append(notify.message_row(channel="webhook", recipient=None, endpoint_id=None, skip=skip, **common))
        else:
            skip = f"the contact prefers {c.channel}, which this service does not deliver"
            rows.append(notify.message_row(channel=c.channel, recipient=None, endpoint_id=None, skip=skip, **common))
    return len(contacts)


@dataclass(frozen=True)
class Rerouted:
    """An approved item whose receiver a re-check changed: `old` had it, `new` has it now (None: nobody)."""

    item_id: int
    client_id: str
    old: str
    new: str | None


REROUTED_TEMPLATES = ("successor_briefing", "client_intro", "signoff_reminder")
REROUTED = "the client went to another successor when the handover was re-checked"


def on_replanned(
    session: Session, h: Handover, moves: Sequence[Rerouted], *, now: dt.datetime, settings: Settings
) -> dict[str, int]:
    """Approval's messages follow items a re-check gave to someone else (at execution, typically): what was not
    sent yet and names a moved client is withdrawn (the client's introductions; the old receiver's briefing and
    incoming sign-off reminder, sent again without the moved clients when others remain), and the new receivers
    get a briefing of their new clients and the clients an introduction naming them. One read of the case's
    unsent messages; a handover whose approval wrote no messages yet (approval itself) is left alone, so nothing
    is written twice. Returns the counts (`withdrawn`, `reissued`, `successor_briefing`, `client_intro`)."""
    if not moves or h.id not in notify.already_sent_for(session, [h.id], APPROVAL_TEMPLATES):
        return {}
    moved = {m.client_id for m in moves}
    moved_items = {m.item_id for m in moves}
    withdraw: list[int] = []
    rows: list[dict[str, Any]] = []
    for u in notify.unsent_for(session, handover_id=h.id, templates=REROUTED_TEMPLATES):
        if u.template == "client_intro":
            if u.client_id in moved:
                withdraw.append(u.id)
            continue
        if u.template == "successor_briefing":
            key, listed = "clients", list(u.payload.get("clients") or [])
            keep = [c for c in listed if c.get("external_id") not in moved]
        elif u.payload.get("side") == "incoming":
            key, listed = "items", list(u.payload.get("items") or [])
            keep = [i for i in listed if int(i.get("item_id", 0)) not in moved_items]
        else:
            continue  # the leaver's outgoing side: they still sign every item off
        if len(keep) == len(listed):
            continue
        withdraw.append(u.id)
        if keep:
            rows.append(
                notify.message_row(
                    kind=u.kind,
                    template=u.template,
                    locale=u.locale,
                    channel=u.channel,
                    recipient=u.recipient,
                    endpoint_id=None,
                    data={**u.payload, key: keep},
                    not_before=u.not_before,
                    now=now,
                    handover_id=h.id,
                    priority=u.priority,
                    for_bulk=True,
                )
            )
    counts: dict[str, int] = {
        "withdrawn": notify.withdraw_ids(session, withdraw, reason=REROUTED),
        "reissued": len(rows),
    }
    i = HandoverItem
    items = [
        _Item(*row)
        for row in session.execute(
            select(
                i.id,
                i.client_id,
                Client.name,
                Client.tier,
                i.risk_score,
                i.risk_band,
                i.checklist,
                func.coalesce(i.successor_id, i.interim_owner_id),
                i.successor_id,
                i.outgoing_signed_at,
                i.incoming_signed_at,
            )
            .join(Client, Client.external_id == i.client_id)
            .where(
                i.id.in_(sorted(moved_items)),
                i.status == "approved",
                func.coalesce(i.successor_id, i.interim_owner_id).is_not(None),
            )
            .order_by(i.risk_score.is_(None), i.risk_score.desc(), i.id)
        )
    ]
    cc = ClientContact
    contacts: dict[str, list[_Contact]] = defaultdict(list)
    for c in session.execute(
        select(cc.client_id, cc.id, cc.name, cc.email, cc.phone, cc.locale, cc.preferred_channel)
        .where(cc.client_id.in_([r.client_id for r in items]))
        .order_by(cc.client_id, cc.position, cc.id)
    ):
        contacts[c[0]].append(_Contact(*c))
    people = directory.people(session, {h.leaver_id} | {r.receiver for r in items if r.receiver})
    shared = _Shared(
        people, contacts, notify.available_locales(session), notify.subscribers(session, "notification.client_intro")
    )
    leaver = people[h.leaver_id].name if h.leaver_id in people else h.leaver_id
    by_receiver: dict[str, list[_Item]] = defaultdict(list)
    for r in items:
        if r.receiver:
            by_receiver[r.receiver].append(r)
    for person_id, mine in by_receiver.items():
        person = people.get(person_id)
        rows.append(
            notify.message_row(
                kind="internal",
                template="successor_briefing",
                locale=shared.locale(
                    "successor_briefing", tuple(person.languages) if person else (), settings.default_locale
                ),
                channel="email",
                recipient=person.email if person else None,
                endpoint_id=None,
                data={
                    "successor": {"name": person.name if person else person_id},
                    "leaver": {"name": leaver},
                    "handover": {"id": h.id, "effective_date": _date(h.effective_at)},
                    "clients": _briefing_clients(mine),
                },
                not_before=now,
                now=now,
                handover_id=h.id,
                priority=notify.PRIORITY_INTERNAL,
                skip=None if person and person.email else f"employee {person_id} has no email address",
                for_bulk=True,
            )
        )
    counts["successor_briefing"] = len(by_receiver)
    intro_at = intro_time(h.effective_at, now, settings)
    counts["client_intro"] = sum(
        _intro_rows(h, r, people, shared, rows, leaver=leaver, intro_at=intro_at, now=now, settings=settings)
        for r in items
    )
    notify.insert_messages(session, rows)
    return counts


def on_cancelled(session: Session, *, handover_id: int) -> int:
    """Withdraws every notification of the handover not sent yet; returns how many. Events are not touched."""
    return notify.withdraw(session, handover_id=handover_id, reason="the handover was cancelled")


def on_rescheduled(session: Session, h: Handover, *, now: dt.datetime, settings: Settings) -> None:
    """The effective time moved: intros (when tied to it) and reminders not tried yet move with it. Dates inside
    the messages need no update: `check_at_send` gives them the handover's effective time when they are sent."""
    notify.move_pending(session, handover_id=h.id, template="signoff_reminder", at=reminder_time(h.effective_at, now))
    if settings.client_intro_days_before is not None:
        notify.move_pending(
            session, handover_id=h.id, template="client_intro", at=intro_time(h.effective_at, now, settings)
        )


# ---- at send time -------------------------------------------------------------------------------


def check_at_send(session: Session, batch: Sequence[Outgoing]) -> dict[int, Verdict]:
    """The outbox's question before it sends a batch of notifications: does each still hold?

    A message of a cancelled or undone handover is withdrawn, and an approval reminder of one approved meanwhile;
    dates in the others follow the handover's current effective time (so a reschedule rewrites nothing); a sign-off
    reminder lists only the items still unsigned on its side, and is skipped when none is left. Two queries for the
    whole batch.
    """
    verdicts: dict[int, Verdict] = {}
    handover_ids = {p.handover_id for p in batch if p.handover_id is not None}
    handovers = {
        hid: (at, status)
        for hid, at, status in session.execute(
            select(Handover.id, Handover.effective_at, Handover.status).where(Handover.id.in_(handover_ids))
        )
    }
    reminders: list[Outgoing] = []
    for p in batch:
        if p.handover_id in handovers:
            effective_at, status = handovers[p.handover_id]
            if status in ("cancelled", "undone"):
                verdicts[p.id] = Verdict("withdrawn", f"the handover was {status}")
                continue
            if p.template == "approval_reminder" and status not in AWAITING_APPROVAL:
                verdicts[p.id] = Verdict("withdrawn", f"the handover was {status} before the reminder was sent")
                continue
            _refresh_dates(p.context, effective_at)
        if p.template == "signoff_reminder":
            reminders.append(p)
    verdicts.update(_still_unsigned(session, reminders))
    return verdicts


def _refresh_dates(context: dict[str, Any], effective_at: dt.datetime) -> None:
    date = _date(effective_at)
    if "effective_date" in context:
        context["effective_date"] = date
    handover = context.get("handover")
    if isinstance(handover, dict) and "effective_date" in handover:
        handover["effective_date"] = date


def _item_ids(p: Outgoing) -> list[int]:
    return [int(i["item_id"]) for i in p.context.get("items") or [] if isinstance(i, dict) and "item_id" in i]


def _still_unsigned(session: Session, reminders: Sequence[Outgoing]) -> dict[int, Verdict]:
    """Each reminder keeps only its side's items still unsigned; one with none left is skipped."""
    if not reminders:
        return {}
    ids = sorted({i for p in reminders for i in _item_ids(p)})
    item = HandoverItem
    open_sides: dict[str, set[int]] = {"outgoing": set(), "incoming": set()}
    for item_id, out_at, in_at in session.execute(
        select(item.id, item.outgoing_signed_at, item.incoming_signed_at).where(
            item.id.in_(ids), item.status.in_(SIGNABLE_ITEM_STATUSES)
        )
    ):
        if out_at is None:
            open_sides["outgoing"].add(item_id)
        if in_at is None:
            open_sides["incoming"].add(item_id)
    verdicts: dict[int, Verdict] = {}
    for p in reminders:
        still = open_sides["outgoing" if p.context.get("side") == "outgoing" else "incoming"]
        p.context["items"] = [i for i in p.context.get("items") or [] if int(i["item_id"]) in still]
        if not p.context["items"]:
            verdicts[p.id] = Verdict("skipped", "every item was signed off before the reminder was due")
    return verdicts
