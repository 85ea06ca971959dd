"""`handover demo` runs end to end on a fresh SQLite file and explains the plan (SQLite only by nature)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from sqlalchemy import create_engine, func, select

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
    ):
        assert phrase in text, phrase
    match = re.search(r"Clients:\s+(\d+) by tier", text)
    assert match, text
    clients, statuses, items = _counts(url)
    assert clients == 3000 and statuses == ["approved"] and items == int(match.group(1)) > 0

    again = io.StringIO()
    run_demo(url, out=again)
    assert _counts(url) == (clients, statuses, items)

    def story(output: str) -> list[str]:
        return [line for line in output.splitlines() if line.startswith(("Company:", "Leaver:", "Clients:", "Result:"))]

    assert story(again.getvalue()) == story(text) and len(story(text)) == 4  # same seed, same story
