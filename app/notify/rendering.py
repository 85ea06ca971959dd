"""Notification templates: the built-in files, the sandbox that renders them, and the sample contexts.

Pure: no database. Templates are editable by administrators, so they run in Jinja's sandbox with
StrictUndefined (a misspelt variable fails instead of printing nothing) and bounds on time and memory
(app/notify/sandbox.py), and every edit is rendered against a sample of the context its key receives
before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from app.notify import sandbox

TEMPLATE_DIR = Path(__file__).parent / "templates"
KEYS = (
    "client_intro",
    "successor_briefing",
    "manager_summary",
    "signoff_reminder",
    "follow_up_due",
    "approval_reminder",
)
BUILTIN_LOCALES = ("en", "zh-CN")
MAX_SUBJECT_CHARS = 300
MAX_BODY_CHARS = sandbox.MAX_TEXT


class TemplateError(Exception):
    """A template that does not compile or render; `field` is subject or body, for the 422 field error."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@lru_cache(maxsize=1)
def _env() -> sandbox.BoundedSandbox:
    return sandbox.BoundedSandbox(autoescape=False, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Source:
    subject: str
    body: str


@lru_cache(maxsize=1)
def builtins() -> dict[tuple[str, str], Source]:
    """`<key>.<locale>.j2`: the first line is the subject, then one blank line, then the body."""
    out: dict[tuple[str, str], Source] = {}
    for path in sorted(TEMPLATE_DIR.glob("*.j2")):
        key, _, locale = path.name.removesuffix(".j2").partition(".")
        subject, _, body = path.read_text(encoding="utf-8").partition("\n\n")
        out[(key, locale)] = Source(subject=subject.strip(), body=body)
    return out


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def _render_one(field: str, source: str, context: Mapping[str, Any]) -> str:
    try:
        template = _env().from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(field, f"line {exc.lineno}: {exc.message}") from exc
    try:
        with sandbox.bounded():
            return template.render(**context)
    except sandbox.RenderLimit as exc:
        raise TemplateError(field, f"the template does too much: {exc}") from exc
    except Exception as exc:  # any failure of an edited template is the template's fault
        raise TemplateError(field, f"{type(exc).__name__}: {exc}") from exc


def render(source: Source, context: Mapping[str, Any]) -> Rendered:
    """Subject on one line (a newline would end the header), body as plain text."""
    subject = re.sub(r"\s+", " ", _render_one("subject", source.subject, context)).strip()
    if not subject:
        raise TemplateError("subject", "renders empty")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise TemplateError("subject", f"renders longer than {MAX_SUBJECT_CHARS} characters")
    body = _render_one("body", source.body, context).strip() + "\n"
    if len(body) > MAX_BODY_CHARS:
        raise TemplateError("body", f"renders longer than {MAX_BODY_CHARS} characters")
    return Rendered(subject=subject, body=body)


_CHECKLIST = [
    {"key": "client_profile", "done": True},
    {"key": "contacts", "done": False},
    {"key": "open_projects", "done": False},
    {"key": "contracts_financials", "done": False},
    {"key": "open_issues", "done": False},
    {"key": "handover_meeting", "done": False},
]

# What each key's template receives; service.py builds exactly these shapes, and a test holds it to that.
SAMPLES: dict[str, dict[str, Any]] = {
    "client_intro": {
        "contact": {"name": "Ada Client"},
        "client": {"name": "Acme Ltd", "external_id": "c-1"},
        "leaver": {"name": "Leo Leaver"},
        "successor": {"name": "Sam Successor", "email": "sam@example.com", "title": "Account Director"},
        "effective_date": "2026-11-16",
        "ack_url": "https://handover.example.com/v1/notifications/1/ack?sig=sample",
    },
    "successor_briefing": {
        "successor": {"name": "Sam Successor"},
        "leaver": {"name": "Leo Leaver"},
        "handover": {"id": 1, "effective_date": "2026-11-16"},
        "clients": [
            {
                "name": "Acme Ltd",
                "external_id": "c-1",
                "tier": "strategic",
                "risk_band": "high",
                "risk_score": 81.5,
                "checklist": _CHECKLIST,
            },
            {
                "name": "Beta GmbH",
                "external_id": "c-2",
                "tier": "standard",
                "risk_band": None,
                "risk_score": None,
                "checklist": _CHECKLIST,
            },
        ],
    },
    "manager_summary": {
        "manager": {"name": "Mia Manager"},
        "leaver": {"name": "Leo Leaver"},
        "handover": {"id": 1, "effective_date": "2026-11-16"},
        "totals": {"clients": 2, "high_risk": 1, "interim": 0, "intros": 3},
        "intro_date": "2026-11-02",
        "successors": [{"name": "Sam Successor", "clients": 2}],
        "high_risk_clients": [{"name": "Acme Ltd", "external_id": "c-1", "risk_band": "high", "successor": "Sam"}],
    },
    "signoff_reminder": {
        "recipient": {"name": "Sam Successor"},
        "side": "incoming",
        "leaver": {"name": "Leo Leaver"},
        "handover": {"id": 1, "effective_date": "2026-11-16"},
        "items": [{"item_id": 1, "client": "Acme Ltd", "external_id": "c-1"}],
    },
    "follow_up_due": {
        "recipient": {"name": "Sam Successor"},
        "client": {"name": "Acme Ltd", "external_id": "c-1"},
        "handover": {"id": 1},
        "follow_up": {"days": 7, "due_date": "2026-11-23", "assignee": {"id": "e-1", "name": "Sam Successor"}},
    },
    "approval_reminder": {
        "recipient": {"name": "Mia Manager"},
        "role": "approver",
        "leaver": {"name": "Leo Leaver"},
        "approver": {"id": "m-1", "name": "Mia Manager"},
        "handover": {"id": 1, "status": "planned", "effective_date": "2026-11-16", "deadline_date": "2026-11-11"},
        "reminder": {"number": 1, "days_overdue": 0},
    },
}


def validate(key: str, source: Source) -> Rendered:
    """Renders against the key's sample context: a broken edit is refused now, not found at send time."""
    return render(source, SAMPLES[key])
