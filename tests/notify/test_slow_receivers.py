"""Receivers that answer, but slowly: the outbound timeout bounds a whole request, not each socket read.

A slowloris receiver trickles its answer (a byte every half second): every single read finishes well inside the
timeout, so a per-read timeout never fires and one send could outlast the worker's lease (when another worker
takes the batch and sends it again). The channels hold each request to an overall deadline instead: the send
fails after about one timeout, counts as a failed attempt, and is retried on the usual schedule.

The receivers sleep in their own threads; the tests never sleep to wait for a schedule (they move the clock).
"""

from __future__ import annotations

import datetime as dt
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.notify import service
from app.notify.channels import SmtpEmailChannel, build_email
from app.notify.models import Delivery
from app.notify.worker import BACKOFF, Deliverer
from tests.support.receivers import Receiver, free_port, outbox, wait_for

MakeDeliverer = Callable[..., Deliverer]

TIMEOUT = 1.0  # seconds: the outbound timeout under test
LEASE = 6  # seconds: the smallest lease the settings accept for it (6 × the timeout)
DRIP = 0.5  # seconds between two bytes of a trickled answer
TRICKLE = 8  # bytes trickled: DRIP × TRICKLE = 4 s, four timeouts; each read alone waits only DRIP


class Trickler:
    """An HTTP server on `port` that answers 200, trickling part of the answer a byte at a time.

    `where` picks the part: "headers" (the server is mid-way through its header block) or "body" (the headers
    are complete and announce a body that then drips in). It stops dripping once the client hangs up.
    """

    def __init__(self, port: int, where: str) -> None:
        self.port = port
        self.webhook_ids: list[str] = []
        self.hung_up = threading.Event()
        if where == "headers":
            parts = (b"HTTP/1.1 200 OK\r\n", b"x-d: .\r\n", b"content-length: 2\r\n\r\n{}")
        else:
            parts = (f"HTTP/1.1 200 OK\r\ncontent-length: {TRICKLE}\r\n\r\n".encode(), b'{"ok":1}', b"")
        assert len(parts[1]) == TRICKLE
        trickler = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                trickler.webhook_ids.append(self.headers.get("webhook-id", ""))
                head, drip, tail = parts
                try:
                    self.wfile.write(head)
                    for i in range(len(drip)):
                        time.sleep(DRIP)
                        self.wfile.write(drip[i : i + 1])
                    self.wfile.write(tail)
                except OSError:  # the client gave up and closed the connection
                    trickler.hung_up.set()
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fast(notify_settings: Settings) -> Settings:
    return notify_settings.model_copy(update={"outbound_timeout_seconds": TIMEOUT, "delivery_lease_seconds": LEASE})


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_receiver_costs_one_failed_attempt_then_the_retry_goes_through(
    where: str,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
    fast: Settings,
) -> None:
    make_endpoint(receiver, ["*"])
    slow = Trickler(receiver.port, where)  # the endpoint's address, answering slowly for now
    try:
        with transaction(db) as s:
            service.emit(s, "handover.created", {"handover_id": 1, "leaver": "e0"}, now=clock.now())
        worker = deliverer(settings=fast)
        started = time.monotonic()
        assert worker.run() == 1
        elapsed = time.monotonic() - started
        [row] = outbox(db)
        assert len(slow.webhook_ids) == 1 and slow.webhook_ids[0] == row.message_id
        assert (row.status, row.attempts, row.locked_until, row.claim_token) == ("failed", 1, None, None)
        assert (row.last_error or "").startswith("timeout"), row.last_error
        # The connection is closed, not left to drip on: the receiver sees the hang-up.
        wait_for(slow.hung_up.is_set)
    finally:
        slow.stop()

    assert row.next_attempt_at is not None
    wait = row.next_attempt_at - clock.now()
    assert BACKOFF[0] * 0.9 <= wait <= BACKOFF[0] * 1.1  # the usual schedule: a timeout is an ordinary failure
    with db.session(write=False) as s:
        [attempt] = s.scalars(select(Delivery).where(Delivery.message_pk == row.id))
    assert not attempt.succeeded and attempt.http_status is None
    # Held to about one timeout, not to the 4 s the whole answer would take (nor past the 6 s lease).
    assert TIMEOUT * 1000 * 0.9 <= attempt.duration_ms < TIMEOUT * 1000 * 2, attempt.duration_ms
    assert elapsed < 3 * TIMEOUT  # a sanity bound on the whole run (claim, send, record)

    receiver.start()  # the same address, now answering at once
    clock.advance(wait - dt.timedelta(seconds=1))
    assert worker.run() == 0  # not due yet
    clock.advance(dt.timedelta(seconds=1))
    assert worker.run() == 1
    [row] = outbox(db)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    [got] = receiver.received
    assert got.verified, got.error
    assert got.webhook_id == row.message_id  # the retry is the same message


class SlowSmtp:
    """A minimal SMTP server that accepts everything; with `drip` set, its greeting comes a byte at a time."""

    GREETING = b"220 slow\r\n"

    def __init__(self) -> None:
        self.drip = True
        self.accepted = 0
        self.hung_up = threading.Event()
        smtp = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    if smtp.drip:
                        for i in range(len(smtp.GREETING)):
                            self.wfile.write(smtp.GREETING[i : i + 1])
                            time.sleep(DRIP)
                    else:
                        self.wfile.write(smtp.GREETING)
                    in_data = False
                    for line in self.rfile:
                        if in_data:
                            if line == b".\r\n":
                                in_data = False
                                smtp.accepted += 1
                                self.wfile.write(b"250 queued\r\n")
                        elif line[:4].upper() == b"DATA":
                            in_data = True
                            self.wfile.write(b"354 go ahead\r\n")
                        elif line[:4].upper() == b"QUIT":
                            self.wfile.write(b"221 bye\r\n")
                            return
                        else:
                            self.wfile.write(b"250 ok\r\n")
                except OSError:
                    smtp.hung_up.set()

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_trickling_smtp_server_fails_the_attempt_within_the_timeout(clock: ManualClock) -> None:
    server = SlowSmtp()
    try:
        settings = Settings(
            smtp_host="127.0.0.1",
            smtp_port=server.port,
            smtp_tls="none",
            outbound_timeout_seconds=TIMEOUT,
            delivery_lease_seconds=LEASE,
        )
        channel = SmtpEmailChannel(settings)
        message = build_email(
            sender="Handover <handover@example.com>",
            to="someone@example.com",
            subject="Slow",
            body="Hello",
            locale="en",
            message_id="msg_slow",
            now=clock.now(),
        )
        outcome = channel.send(message)
        assert not outcome.ok and not outcome.permanent  # a failed attempt, retried on the usual schedule
        assert (outcome.error or "").startswith("timeout"), outcome.error
        assert TIMEOUT * 1000 * 0.9 <= outcome.duration_ms < TIMEOUT * 1000 * 2, outcome.duration_ms
        assert server.accepted == 0
        wait_for(server.hung_up.is_set)  # the connection was closed under the server

        server.drip = False  # behaving now: the next attempt goes through
        outcome = channel.send(message)
        assert outcome.ok, outcome.error
        assert server.accepted == 1
    finally:
        server.stop()


def test_the_lease_still_covers_several_timeouts() -> None:
    """Each request now ends within about one timeout; the lease must still outlast a send plus its recording."""
    with pytest.raises(ValueError, match="delivery_lease_seconds"):
        Settings(outbound_timeout_seconds=2, delivery_lease_seconds=11)
    assert Settings(outbound_timeout_seconds=2, delivery_lease_seconds=12).delivery_lease_seconds == 12
