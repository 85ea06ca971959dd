"""Checklist templates per client tier (which entries, their labels, which are required before sign-off) and a
handover's confidentiality steps (issue 16 point 4).

A tier never configured uses DEFAULT_ENTRIES: today's six keys, of which the client profile, the contacts and the
handover meeting are required, the others optional. Every mitigation the risk score put on an item
(`mitigation:<action>`) is required too, whatever the template says."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.directory.models import CLIENT_TIERS, Client
from app.transfer.errors import ConfidentialityLocked
from app.transfer.models import ChecklistTemplate as Template
from app.transfer.models import Handover, HandoverItem

DEFAULT_ENTRIES: tuple[dict[str, Any], ...] = (
    {"key": "client_profile", "label": "Client profile reviewed", "required": True},
    {"key": "contacts", "label": "Contacts introduced", "required": True},
    {"key": "open_projects", "label": "Open projects handed over", "required": False},
    {"key": "contracts_financials", "label": "Contracts and financials reviewed", "required": False},
    {"key": "open_issues", "label": "Open issues handed over", "required": False},
    {"key": "handover_meeting", "label": "Handover meeting held", "required": True},
)
CONFIDENTIALITY_STEPS = ("nda_reminder_acknowledged", "company_data_returned", "non_compete_notice_given")
CONFIDENTIALITY_CLOSED = ("cancelled", "undone")


def template(session: Session, tier: str) -> Template | None:
    return session.get(Template, tier)


def entries(session: Session, tier: str) -> list[dict[str, Any]]:
    row = template(session, tier)
    return list(row.entries) if row is not None else [dict(e) for e in DEFAULT_ENTRIES]


def templates(session: Session, *, limit: int, offset: int) -> list[tuple[str, Template | None]]:
    """Tiers in their fixed order, each with its configured template (None: the default): a page like any list."""
    tiers = CLIENT_TIERS[offset : offset + limit]
    rows = {t.tier: t for t in session.scalars(select(Template).where(Template.tier.in_(tiers)))} if tiers else {}
    return [(tier, rows.get(tier)) for tier in tiers]


def put_template(
    session: Session, tier: str, new_entries: list[dict[str, Any]], *, actor: str, now: dt.datetime
) -> Template:
    row = template(session, tier)
    before = list(row.entries) if row is not None else [dict(e) for e in DEFAULT_ENTRIES]
    if row is None:
        row = Template(tier=tier, entries=new_entries, version=1, updated_by=actor, updated_at=now)
        session.add(row)
    else:
        row.entries, row.version, row.updated_by, row.updated_at = new_entries, row.version + 1, actor, now
    audit.record(
        session,
        actor=actor,
        action="checklist_template.put",
        entity_type="checklist_template",
        entity_id=tier,
        data={"before": before, "after": new_entries, "version": row.version},
        at=now,
    )
    session.flush()
    return row


def open_required(session: Session, item: HandoverItem) -> list[str]:
    """The item's required entries not done: its tier's required keys, then its mitigations, in that order."""
    client = session.get(Client, item.client_id)
    tier = client.tier if client is not None else "standard"
    stored = item.checklist or {}
    required = [e["key"] for e in entries(session, tier) if e.get("required")]
    required += [k for k in stored if k.startswith("mitigation:")]
    return [k for k in required if not (stored.get(k) or {}).get("done")]


def set_confidentiality(
    session: Session, h: Handover, step: str, *, done: bool, note: str | None, actor: str, now: dt.datetime
) -> Handover:
    if h.status in CONFIDENTIALITY_CLOSED:
        raise ConfidentialityLocked(
            f"The confidentiality steps of a {h.status} handover cannot change.",
            extra={"status": h.status},
        )
    steps = dict(h.confidentiality or {})
    steps[step] = {"done": done, "note": note, "by": actor, "at": now.isoformat()}
    h.confidentiality = steps
    h.version += 1
    h.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="handover.confidentiality",
        entity_type="handover",
        entity_id=str(h.id),
        data={"step": step, "done": done},
        at=now,
    )
    session.flush()
    return h
