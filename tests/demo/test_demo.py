"""`handover demo` runs end to end on a fresh SQLite file and explains the plan (SQLite only by nature)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from sqlalchemy import and_, create_engine, func, select

from app.book.models import Record, RecordMove
from app.demo.run import run_demo
from app.directory.models import Client
from app.transfer.models import Handover, HandoverItem


def _counts(url: str) -> tuple[int, list[str], int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            clients = conn.scalar(select(func.count()).select_from(Client)) or 0
            statuses = list(conn.scalars(select(Handover.status)))
            items = conn.scalar(select(func.count()).select_from(HandoverItem)) or 0
    finally:
        engine.dispose()
    return clients, statuses, items


def _book(url: str) -> tuple[int, int, int]:
    """(records moved by the handover, open records its receivers hold on its clients, the leaver's open ones)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            moved = conn.scalar(select(func.count()).select_from(RecordMove)) or 0
            received = select(HandoverItem.client_id, HandoverItem.transferred_to_id).subquery()
            held = conn.scalar(
                select(func.count())
                .select_from(Record)
                .join(
                    received,
                    and_(received.c.client_id == Record.client_id, received.c.transferred_to_id == Record.owner_id),
                )
                .where(Record.status == "open")
            )
            leaver = conn.scalar(select(Handover.leaver_id))
            left = conn.scalar(
                select(func.count()).where(
                    Record.owner_id == leaver,
                    Record.status == "open",
                    Record.client_id.in_(select(HandoverItem.client_id)),
                )
            )
    finally:
        engine.dispose()
    return moved, held or 0, left or 0


def test_demo_runs_and_starts_fresh_each_time(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "demo.db")
    out = io.StringIO()
    run_demo(url, out=out)
    text = out.getvalue()
    for phrase in (
        "Leaver:",
        "Manager:",
        "Effective:",
        "(in 14 days)",
        "approved by admin:demo",
        "Who gets which client and why",
        "why:",
        "runner-up",
        "Per successor",
        "Interim owners",
        "Load per successor",
        "3,000 clients",
        "At the effective time: the handover is executed",
        "open records went with their clients",
        "closed records stay with the leaver",
        "Records now owned by the receivers",
    ):
        assert phrase in text, phrase
    # The records moved with the clients: what the demo says is what the database holds.
    moved_line = re.search(
        r"Records moved:\s+(\d+) open records went with their clients \(deal (\d+), task (\d+)", text
    )
    assert moved_line, text
    moved, held, left = _book(url)
    assert moved == int(moved_line.group(1)) > 0 and held == moved and left == 0
    assert int(moved_line.group(2)) > 0 and int(moved_line.group(3)) > 0
    kept = re.search(r"Records kept:\s+(\d+) closed records", text)
    assert kept and int(kept.group(1)) > 0
    match = re.search(r"Clients:\s+(\d+) by tier", text)
    assert match, text
    clients, statuses, items = _counts(url)
    assert clients == 3000 and statuses == ["executed"] and items == int(match.group(1)) > 0

    again = io.StringIO()
    run_demo(url, out=again)
    assert _counts(url) == (clients, statuses, items)

    def story(output: str) -> list[str]:
        return [line for line in output.splitlines() if line.startswith(("Company:", "Leaver:", "Clients:", "Result:"))]

    assert story(again.getvalue()) == story(text) and len(story(text)) == 4  # same seed, same story
