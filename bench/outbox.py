"""Scenario 6: outbox deliveries per second to a local HTTP receiver; one worker, and two on PostgreSQL.

The receiver (a threaded http.server on 127.0.0.1) counts every `webhook-id` it sees, so "each delivered
exactly once" is checked where it matters: at the receiver. Baseline: the same bodies POSTed to the same
receiver by a plain httpx loop with no database (the floor of one sender).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from sqlalchemy import func, select

from app.core.clock import SystemClock
from app.core.db import Database, transaction
from bench.common import settings_for, utcnow


class Receiver:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                with receiver.lock:
                    receiver.seen[self.headers.get("webhook-id") or "?"] += 1
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()


def _settings(url: str) -> Any:
    return settings_for(url, webhook_allow_private=True)


def prepare(url: str, receiver_url: str, n: int) -> list[bytes]:
    """One endpoint subscribed to client.reassigned, and n events in the outbox; returns sample bodies."""
    from app.notify import service as notify

    settings = _settings(url)
    db = Database(settings)
    now = utcnow()
    try:
        with transaction(db) as session:
            notify.create_endpoint(
                session,
                url=receiver_url,
                event_types=["client.reassigned"],
                description="bench receiver",
                actor="bench",
                now=now,
                settings=settings,
            )
        with transaction(db) as session:
            for i in range(n):
                notify.emit(
                    session,
                    "client.reassigned",
                    {"client": f"cli-{i:06d}", "from": "emp-00001", "to": "emp-00002", "handover_id": 1},
                    now=now,
                )
    finally:
        db.dispose()
    return [
        json.dumps(
            {
                "type": "client.reassigned",
                "timestamp": now.isoformat(),
                "data": {"client": f"cli-{i:06d}", "from": "emp-00001", "to": "emp-00002", "handover_id": 1},
            },
            separators=(",", ":"),
        ).encode()
        for i in range(n)
    ]


def _work(url: str) -> int:
    """One worker: deliver until nothing is due (the worker's own loop, no time budget)."""
    from app.notify.worker import Deliverer

    db = Database(_settings(url))
    deliverer = Deliverer(db=db, clock=SystemClock())
    try:
        return deliverer.run(budget_seconds=None)
    finally:
        deliverer.close()
        db.dispose()


def deliver(url: str, workers: int) -> float:
    """Seconds until every due row is delivered, with `workers` processes (spawned, each its own pool)."""
    start = time.perf_counter()
    if workers == 1:
        _work(url)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_work, args=(url,)) for _ in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=600)
            if p.exitcode != 0:
                raise RuntimeError(f"outbox worker exited with {p.exitcode}")
    return time.perf_counter() - start


def sent_count(url: str) -> tuple[int, int]:
    from app.notify.models import OutboxMessage

    db = Database(_settings(url))
    try:
        with transaction(db, write=False) as session:
            total = session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
            sent = (
                session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent"))
                or 0
            )
    finally:
        db.dispose()
    return int(sent), int(total)


def raw_posts(receiver_url: str, bodies: list[bytes]) -> float:
    start = time.perf_counter()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        for i, body in enumerate(bodies):
            client.post(
                receiver_url, content=body, headers={"webhook-id": f"raw_{i}", "content-type": "application/json"}
            )
    return time.perf_counter() - start


def exactly_once(receiver: Receiver, n: int) -> tuple[bool, str]:
    with receiver.lock:
        seen = dict(receiver.seen)
    dupes = sum(1 for v in seen.values() if v > 1)
    ok = len(seen) == n and dupes == 0
    return ok, f"{len(seen):,} distinct ids for {n:,} messages, {dupes} delivered more than once"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
