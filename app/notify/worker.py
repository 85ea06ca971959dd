"""The delivery loop: claim due outbox rows under a lease, deliver outside any transaction, record each result.

Claim: one short transaction selects due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so workers on several
machines take disjoint rows; SQLite's write lock makes it the single worker), stamps them with a lease and a
claim token, renders what they carry, and commits. Delivery happens with no transaction open. Each result is
recorded in its own transaction, which also extends the lease of the rest of the batch. A worker that dies
anywhere loses nothing: its rows come due again when the lease ends, and receivers deduplicate by webhook-id.

Lanes: every webhook endpoint is a lane, and email is one. A claim takes at most `delivery_lane_batch` rows per
lane (so one endpoint's backlog cannot fill the batch), and the lanes of a batch are sent in parallel, at most
`delivery_lanes` at once. A lane stops at its first failure (an email lane only at a failure that is not the
recipient's): the rest of its rows go back unattempted, so a hung receiver costs its lane one timeout per batch
and nobody else anything. Circuit breaker: after `delivery_breaker_failures` failed attempts in a row an endpoint
is paused (`paused_until` on its row, which every worker's claim respects), for a pause that doubles each time it
opens again, up to the maximum; a success closes it. Every failure, dead letter, pause and disable is logged as a
JSON line with the message and endpoint ids (never a URL, secret or address).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.clock import Clock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.core.metrics import DELIVERIES
from app.core.signing import signed_headers
from app.notify import events, rendering, service
from app.notify.channels import (
    EmailChannel,
    HttpWebhookChannel,
    Outcome,
    SmtpEmailChannel,
    WebhookChannel,
    build_email,
)
from app.notify.models import DUE_STATUSES, Delivery, OutboxMessage, WebhookEndpoint

logger = logging.getLogger("handover.notify")

# Waits after the 1st … 7th failed try; the 8th failure is final ("dead"). Jitter spreads a burst of retries.
BACKOFF = tuple(dt.timedelta(seconds=s) for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600))
MAX_ATTEMPTS = len(BACKOFF) + 1
JITTER = 0.1
RUN_BUDGET_SECONDS = 30.0
RECORD_EVERY = 20
RECORD_SECONDS = 0.5  # one worker pass delivers for at most this long, then lets the other jobs run


def next_delay(attempts: int, rng: random.Random) -> dt.timedelta | None:
    """The wait after `attempts` failed tries, ±10 %; None when that try was the last."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return BACKOFF[attempts - 1] * (1 + rng.uniform(-JITTER, JITTER))


@dataclass
class Outgoing:
    """A notification about to be rendered and sent: its `context` may still be changed by the checks."""

    id: int
    handover_id: int | None
    template: str
    context: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """Why a message is not sent after all: it ends as `status` (withdrawn, skipped or dead) with `reason`."""

    status: str
    reason: str
    attempted: bool = False


class SendChecks(Protocol):
    """What the workflow that wrote a batch of notifications says about them just before they go out (bound in
    the composition root, `app.worker`): a verdict for each one that must not be sent; it may update the others'
    contexts in place (current dates, items still open)."""

    def __call__(self, session: Session, batch: Sequence[Outgoing]) -> dict[int, Verdict]: ...


def no_checks(session: Session, batch: Sequence[Outgoing]) -> dict[int, Verdict]:
    return {}


@dataclass
class Prepared:
    """One claimed message, ready to send without the database."""

    id: int
    message_id: str
    category: str
    channel: str
    endpoint_id: int | None = None
    url: str | None = None
    secret: str | None = None
    body: bytes | None = None
    email: EmailMessage | None = None
    subject: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Result:
    prepared: Prepared
    outcome: Outcome
    at: dt.datetime


@dataclass(frozen=True)
class Claim:
    """A leased batch: `claimed` rows, of which `batch` are to be sent (the rest ended while being prepared)."""

    token: str
    batch: list[Prepared]
    claimed: int


class _Final(Exception):
    """The message ends without being sent (skipped, withdrawn, dead); `attempted` logs it as a try."""

    def __init__(self, status: str, reason: str, *, attempted: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.attempted = attempted


@dataclass
class Deliverer:
    """One worker's delivery loop; give each thread or process its own."""

    db: Database
    clock: Clock
    settings: Settings | None = None
    webhooks: WebhookChannel | None = None
    emails: EmailChannel | None = None
    rng: random.Random = field(default_factory=random.Random)
    stop: threading.Event = field(default_factory=threading.Event)
    batch_size: int | None = None
    checks: SendChecks = no_checks
    _gone: set[int] = field(default_factory=set)
    _sources: dict[tuple[str, str], rendering.Source | None] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        self.settings = self.settings or self.db.settings
        self.webhooks = self.webhooks or HttpWebhookChannel(self.settings)
        self.emails = self.emails or SmtpEmailChannel(self.settings)
        self.lease = dt.timedelta(seconds=self.settings.delivery_lease_seconds)
        self.limit = self.batch_size or self.settings.delivery_batch_size

    @property
    def cfg(self) -> Settings:
        assert self.settings is not None
        return self.settings

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for channel in (self.webhooks, self.emails):
            if channel is not None:
                channel.close()

    # ---- claim -------------------------------------------------------------------------------

    def claim(self, limit: int | None = None, *, exclude: set[int | None] | None = None) -> Claim:
        """Leases due rows to this worker (committed before anything is sent) and prepares them: lane by lane, at
        most `delivery_lane_batch` rows of each, none of a paused endpoint nor of a lane in `exclude` (this
        worker's lanes in flight; None is the email lane), at most as many lanes as there are free threads."""
        token = uuid.uuid4().hex
        now = self.clock.now()
        limit = limit or self.limit
        m = OutboxMessage
        with transaction(self.db) as session:
            due = (
                m.status.in_(DUE_STATUSES),
                m.next_attempt_at <= now,
                or_(m.locked_until.is_(None), m.locked_until <= now),
            )
            busy = exclude or set()
            paused = select(WebhookEndpoint.id).where(WebhookEndpoint.paused_until > now)
            lanes_stmt = (
                select(m.endpoint_id)
                .where(*due, or_(m.endpoint_id.is_(None), m.endpoint_id.not_in(paused)))
                .group_by(m.endpoint_id)
                .order_by(func.max(m.priority).desc(), func.min(m.next_attempt_at))
                .limit(max(1, self.cfg.delivery_lanes - len(busy)))
            )
            endpoints_busy = sorted(i for i in busy if i is not None)
            if endpoints_busy:
                lanes_stmt = lanes_stmt.where(or_(m.endpoint_id.is_(None), m.endpoint_id.not_in(endpoints_busy)))
            if None in busy:
                lanes_stmt = lanes_stmt.where(m.endpoint_id.is_not(None))
            lanes = list(session.scalars(lanes_stmt))
            ids: list[int] = []
            for lane in lanes:
                if len(ids) >= limit:
                    break
                stmt = (
                    select(m.id)
                    .where(*due, m.endpoint_id.is_(None) if lane is None else m.endpoint_id == lane)
                    .order_by(m.priority.desc(), m.next_attempt_at, m.id)
                    .limit(min(self.cfg.delivery_lane_batch, limit - len(ids)))
                    .with_for_update(skip_locked=True)
                )
                ids.extend(session.scalars(stmt))
            if not ids:
                return Claim(token, [], 0)
            session.execute(
                update(m)
                .where(m.id.in_(ids))
                .values(locked_until=now + self.lease, claim_token=token)
                .execution_options(synchronize_session=False)
            )
            return Claim(token, self._prepare(session, ids, now), len(ids))

    def _prepare(self, session: Session, ids: list[int], now: dt.datetime) -> list[Prepared]:
        m = OutboxMessage
        rows = list(
            session.scalars(select(m).where(m.id.in_(ids)).order_by(m.priority.desc(), m.next_attempt_at, m.id))
        )
        endpoint_ids = {r.endpoint_id for r in rows if r.endpoint_id is not None}
        endpoints = {
            e.id: e for e in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids)))
        }
        outgoing = {
            r.id: Outgoing(r.id, r.handover_id, r.template or "", copy.deepcopy(r.payload))
            for r in rows
            if r.category == "notification"
        }
        verdicts = self._verdicts(session, list(outgoing.values())) if outgoing else {}
        locales = service.available_locales(session) if any(r.category == "notification" for r in rows) else {}
        self._sources.clear()  # template edits reach the next batch
        out = []
        for row in rows:
            try:
                out.append(self._prepare_one(session, row, endpoints, outgoing.get(row.id), verdicts, locales, now))
            except _Final as final:
                self._finish_unsent(session, row, final, now)
            except SQLAlchemyError:
                raise  # the claim is rolled back and tried again: nothing is lost
            except Exception as exc:  # one malformed row must not block the queue behind it
                logger.exception("outbox row %s cannot be prepared", row.id)
                self._finish_unsent(session, row, _Final("dead", f"cannot prepare: {exc}"[:500], attempted=True), now)
        return out

    def _verdicts(self, session: Session, batch: list[Outgoing]) -> dict[int, Verdict]:
        """The bound checks for the batch; if they fail, one message at a time, so a malformed one is dead and
        does not block the queue behind it (database errors roll the claim back instead: nothing is lost)."""
        try:
            return self.checks(session, batch)
        except SQLAlchemyError:
            raise
        except Exception:
            verdicts: dict[int, Verdict] = {}
            for one in batch:
                try:
                    verdicts.update(self.checks(session, [one]))
                except SQLAlchemyError:
                    raise
                except Exception as exc:
                    logger.exception("outbox row %s cannot be checked", one.id)
                    verdicts[one.id] = Verdict("dead", f"cannot prepare: {exc}"[:500], attempted=True)
            return verdicts

    def _endpoint(self, row: OutboxMessage, endpoints: dict[int, WebhookEndpoint]) -> WebhookEndpoint:
        endpoint = endpoints.get(row.endpoint_id) if row.endpoint_id is not None else None
        if endpoint is None or endpoint.status == "deleted":
            raise _Final("withdrawn", "the webhook endpoint was deleted")
        if endpoint.status != "active":
            raise _Final("dead", f"the webhook endpoint is {endpoint.status}: {endpoint.status_reason}")
        return endpoint

    def _prepare_one(
        self,
        session: Session,
        row: OutboxMessage,
        endpoints: dict[int, WebhookEndpoint],
        outgoing: Outgoing | None,
        verdicts: dict[int, Verdict],
        locales: dict[str, set[str]],
        now: dt.datetime,
    ) -> Prepared:
        p = Prepared(id=row.id, message_id=row.message_id, category=row.category, channel=row.channel)
        if row.category == "event":
            endpoint = self._endpoint(row, endpoints)
            p.endpoint_id, p.url, p.secret = endpoint.id, endpoint.url, endpoint.secret
            p.body = _json_bytes(row.payload)
            return p
        template = row.template or ""
        verdict = verdicts.get(row.id)
        if verdict is not None:
            raise _Final(verdict.status, verdict.reason, attempted=verdict.attempted)
        context = outgoing.context if outgoing is not None else copy.deepcopy(row.payload)
        locale = service.pick_locale([row.locale], locales.get(template, set()), self.cfg.default_locale)
        if (template, locale) not in self._sources:
            self._sources[(template, locale)] = service.template_source(session, template, locale)
        source = self._sources[(template, locale)]
        if source is None:
            raise _Final("dead", f"no template {template} in {locale}", attempted=True)
        row.locale = locale
        ack = service.ack_url(self.cfg, row.id, row.message_id) if template == "client_intro" else None
        if ack is not None:
            context["ack_url"] = ack
        try:
            rendered = rendering.render(source, context)
        except rendering.TemplateError as exc:
            raise _Final("dead", f"template {template}/{locale} failed: {exc}", attempted=True) from exc
        p.subject, p.text = rendered.subject, rendered.body
        if row.channel == "email":
            if not row.recipient:
                raise _Final("skipped", "no email address")
            p.email = build_email(
                sender=self.cfg.smtp_from,
                to=row.recipient,
                subject=rendered.subject,
                body=rendered.body,
                locale=locale,
                message_id=row.message_id,
                now=now,
            )
            return p
        endpoint = self._endpoint(row, endpoints)
        p.endpoint_id, p.url, p.secret = endpoint.id, endpoint.url, endpoint.secret
        p.body = _json_bytes(
            {
                "type": f"notification.{template}",
                "timestamp": now.isoformat(),
                "data": events.payload(
                    f"notification.{template}",
                    events.NotificationMessageEvent(
                        notification_id=row.id,
                        template=template,
                        locale=locale,
                        handover_id=row.handover_id,
                        client=row.client_id,
                        contact=context.get("recipient"),
                        subject=rendered.subject,
                        body=rendered.body,
                        ack_url=ack,
                    ),
                ),
            }
        )
        return p

    def _finish_unsent(self, session: Session, row: OutboxMessage, final: _Final, now: dt.datetime) -> None:
        row.status, row.last_error, row.next_attempt_at = final.status, final.reason, None
        row.locked_until, row.claim_token = None, None
        if final.attempted:
            row.attempts += 1
            row.last_attempt_at = now
            session.add(
                Delivery(
                    message_pk=row.id,
                    endpoint_id=row.endpoint_id,
                    attempt=row.attempts,
                    attempted_at=now,
                    duration_ms=0,
                    succeeded=False,
                    error=final.reason,
                )
            )
        session.flush()
        DELIVERIES.labels(row.channel, final.status).inc()
        if final.status == "dead":
            log_event("delivery.dead", "message is dead", row, error=final.reason)
            _announce_failure(session, row, now)

    # ---- deliver and record ------------------------------------------------------------------

    def _send(self, p: Prepared, now: dt.datetime) -> Outcome:
        if p.endpoint_id is not None and p.endpoint_id in self._gone:
            return Outcome(ok=False, error="the endpoint answered 410 Gone earlier in this batch", permanent=True)
        try:
            if p.email is not None:
                assert self.emails is not None
                return self.emails.send(p.email)
            assert self.webhooks is not None and p.url and p.secret and p.body is not None
            headers = signed_headers(p.secret, p.message_id, now, p.body)
            return self.webhooks.send(p.url, headers, p.body, now)
        except Exception as exc:  # a channel bug must cost one try, not the whole batch
            logger.exception("delivery %s raised", p.id)
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])

    def _record(self, token: str, results: list[Result], rest: list[int]) -> None:
        """Writes a group of results in one transaction, and extends the lease of the rows still to send."""
        if not results and not rest:
            return
        now = self.clock.now()
        m = OutboxMessage
        with transaction(self.db) as session:
            ids = [r.prepared.id for r in results]
            rows = {row.id: row for row in session.scalars(select(m).where(m.id.in_(ids)).with_for_update())}
            attempts = []
            died = []
            counted: list[tuple[str, str]] = []
            for result in results:
                row = rows.get(result.prepared.id)
                if row is not None:
                    was = row.status
                    attempts.append(self._apply(row, result, token))
                    counted.append((row.channel, "sent" if result.outcome.ok else row.status))
                    if row.status == "dead" and was != "dead":
                        died.append(row)
            if attempts:
                session.execute(insert(Delivery), attempts)
            session.flush()
            for result in results:
                if not result.outcome.ok:
                    log_event(
                        "delivery.failed",
                        "delivery attempt failed",
                        rows.get(result.prepared.id),
                        endpoint=result.prepared.endpoint_id,
                        http_status=result.outcome.http_status,
                        error=result.outcome.error,
                        duration_ms=result.outcome.duration_ms,
                    )
            self._breakers(session, results, now)
            for endpoint_id in {r.prepared.endpoint_id for r in results if r.outcome.gone}:
                if endpoint_id is not None:
                    service.disable_endpoint(session, endpoint_id, reason="the receiver answered 410 Gone", now=now)
            for row in died:
                log_event("delivery.dead", "message is dead", row, error=row.last_error)
                _announce_failure(session, row, now)
            if rest:
                session.execute(
                    update(m)
                    .where(m.id.in_(rest), m.claim_token == token)
                    .values(locked_until=now + self.lease)
                    .execution_options(synchronize_session=False)
                )
        for channel, outcome in counted:  # once committed
            DELIVERIES.labels(channel, outcome).inc()

    def _apply(self, row: OutboxMessage, result: Result, token: str) -> dict[str, Any]:
        """The row's next state after one attempt; returns the attempt's delivery row."""
        p, outcome, at = result.prepared, result.outcome, result.at
        was = row.status
        row.attempts += 1
        row.last_attempt_at = at
        if p.subject is not None:
            row.subject, row.body = p.subject, p.text
        if row.claim_token == token:
            row.locked_until, row.claim_token = None, None
        if outcome.ok:
            # Sent is a fact even if the row was withdrawn meanwhile; acknowledged stays acknowledged.
            if was != "acknowledged":
                row.status = "sent"
            row.sent_at = row.sent_at or at
            row.next_attempt_at, row.last_error = None, None
        else:
            row.last_error = outcome.error
            if was in DUE_STATUSES:
                delay = None if outcome.gone or outcome.permanent else next_delay(row.attempts, self.rng)
                if delay is None:
                    row.status, row.next_attempt_at = "dead", None
                else:
                    if outcome.retry_after is not None:
                        delay = max(delay, outcome.retry_after)
                    row.status, row.next_attempt_at = "failed", at + delay
        return {
            "message_pk": row.id,
            "endpoint_id": p.endpoint_id,
            "attempt": row.attempts,
            "attempted_at": at,
            "duration_ms": outcome.duration_ms,
            "succeeded": outcome.ok,
            "http_status": outcome.http_status,
            "error": outcome.error,
            "response_excerpt": outcome.excerpt,
        }

    def release(self, token: str, ids: list[int]) -> None:
        """Hands unsent claims back at once (on SIGTERM) instead of making them wait for the lease."""
        if not ids:
            return
        m = OutboxMessage
        with transaction(self.db) as session:
            session.execute(
                update(m)
                .where(m.id.in_(ids), m.claim_token == token)
                .values(locked_until=None, claim_token=None)
                .execution_options(synchronize_session=False)
            )

    def _breakers(self, session: Session, results: list[Result], now: dt.datetime) -> None:
        """Each endpoint's breaker after these attempts, in order: a success closes it; the Nth failure in a row
        opens it (pauses the endpoint), and so does each failure after that (the half-open probe), for twice as
        long each time, up to the maximum.

        Plain UPDATEs, never SELECT … FOR UPDATE: the attempts just inserted hold a key-share lock on the
        endpoint's row (their foreign key), which FOR UPDATE would wait on, so two workers recording for the same
        endpoint would deadlock; an UPDATE of non-key columns does not conflict with it."""
        by_endpoint: dict[int, list[Result]] = {}
        for r in results:
            if r.prepared.endpoint_id is not None:
                by_endpoint.setdefault(r.prepared.endpoint_id, []).append(r)
        cfg = self.cfg
        ep = WebhookEndpoint
        for endpoint_id, group in sorted(by_endpoint.items()):
            last_ok = max((i for i, r in enumerate(group) if r.outcome.ok), default=None)
            failures = len(group) - (last_ok + 1 if last_ok is not None else 0)
            if last_ok is not None:
                session.execute(
                    update(ep)
                    .where(ep.id == endpoint_id)
                    .where(or_(ep.failure_streak != 0, ep.pauses != 0, ep.paused_until.is_not(None)))
                    .values(failure_streak=0, pauses=0, paused_until=None)
                    .execution_options(synchronize_session=False)
                )
            if not failures:
                continue
            state = session.execute(
                update(ep)
                .where(ep.id == endpoint_id)
                .values(failure_streak=ep.failure_streak + failures)
                .returning(ep.failure_streak, ep.pauses)
                .execution_options(synchronize_session=False)
            ).first()
            if state is None or state.failure_streak < cfg.delivery_breaker_failures:
                continue
            pauses = state.pauses + 1
            seconds = min(
                cfg.delivery_breaker_pause_seconds * 2 ** min(pauses - 1, 30), cfg.delivery_breaker_max_pause_seconds
            )
            until = now + dt.timedelta(seconds=seconds)
            session.execute(
                update(ep)
                .where(ep.id == endpoint_id)
                .values(pauses=pauses, paused_until=until)
                .execution_options(synchronize_session=False)
            )
            logger.warning(
                "webhook endpoint paused",
                extra={
                    "fields": {
                        "event": "endpoint.paused",
                        "endpoint": endpoint_id,
                        "failures_in_a_row": state.failure_streak,
                        "pause_seconds": seconds,
                        "paused_until": until.isoformat(),
                    }
                },
            )

    @staticmethod
    def _stops_lane(p: Prepared, outcome: Outcome) -> bool:
        """A failure that says the receiver is unwell: any failed webhook, an email failure not the recipient's."""
        if outcome.ok:
            return False
        return p.email is None or not outcome.permanent

    def _lane(self, flight: _Flight, key: int | None, lane: list[Prepared], done: queue.SimpleQueue[Any]) -> None:
        """Sends one lane's rows in order; stops at a stop request or its first unhealthy failure."""
        try:
            for p in lane:
                if self.stop.is_set():
                    return
                at = self.clock.now()
                outcome = self._send(p, at)
                done.put((flight, Result(p, outcome, at)))
                if self._stops_lane(p, outcome):
                    return
        finally:
            done.put((flight, key))

    def _dispatch(self, claim: Claim, busy: set[int | None], done: queue.SimpleQueue[Any]) -> _Flight:
        lanes: dict[int | None, list[Prepared]] = {}
        for p in claim.batch:
            lanes.setdefault(p.endpoint_id, []).append(p)
        flight = _Flight(claim.token, claim.batch, len(lanes))
        pool = self._executor()
        for key, lane in lanes.items():
            busy.add(key)
            pool.submit(self._lane, flight, key, lane, done)
        return flight

    def _flush(self, flight: _Flight) -> None:
        self._record(flight.token, flight.results, [q.id for q in flight.rows if q.id not in flight.attempted])
        flight.results = []

    def _drive(self, first: Claim | None, budget_seconds: float | None) -> int:
        """The loop behind `run` and `deliver`: lanes in parallel, each claim taking only lanes not in flight, a
        new claim whenever a lane is done. A hung lane holds its own thread, never the others' next rows. Returns
        the rows finished (claimed, less those handed back unattempted)."""
        started = time.monotonic()
        done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        busy: set[int | None] = set()
        flights: list[_Flight] = []
        total = 0
        claim_more = first is None
        if first is not None:
            total += first.claimed - len(first.batch)
            if first.batch:
                flights.append(self._dispatch(first, busy, done))
        flushed = time.monotonic()
        while True:
            over = self.stop.is_set() or (budget_seconds is not None and time.monotonic() - started > budget_seconds)
            if claim_more and not over and len(busy) < self.cfg.delivery_lanes:
                claim_more = False
                claim = self.claim(exclude=busy)
                total += claim.claimed - len(claim.batch)  # those ended while being prepared
                if claim.batch:
                    flights.append(self._dispatch(claim, busy, done))
                elif claim.claimed:
                    claim_more = True  # every row ended unsent: look again
                elif not busy:
                    break  # nothing is due
            if not busy:
                if over or first is not None:
                    break
                claim_more = True
                continue
            try:
                flight, item = done.get(timeout=RECORD_SECONDS)
            except queue.Empty:  # nothing new for a while: write what has come in, extend the leases
                flight, item = None, None
            if isinstance(item, Result):
                assert flight is not None
                flight.results.append(item)
                flight.attempted.add(item.prepared.id)
                if item.outcome.gone and item.prepared.endpoint_id is not None:
                    self._gone.add(item.prepared.endpoint_id)
            elif flight is not None:  # a lane is done
                busy.discard(item)
                flight.lanes_left -= 1
                claim_more = first is None
            if time.monotonic() - flushed >= RECORD_SECONDS or any(len(f.results) >= RECORD_EVERY for f in flights):
                for f in flights:
                    if f.results:
                        self._flush(f)
                flushed = time.monotonic()
            for f in [f for f in flights if f.lanes_left == 0]:
                self._record(f.token, f.results, [])
                self.release(f.token, [q.id for q in f.rows if q.id not in f.attempted])
                total += len(f.attempted)
                flights.remove(f)
        return total

    def deliver(self, token: str, batch: list[Prepared]) -> int:
        """Sends one claimed batch, its lanes in parallel; returns how many messages were attempted (the rest were
        handed back: a lane stopped at a failure, or a stop was requested)."""
        return self._drive(Claim(token, batch, len(batch)), None)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.cfg.delivery_lanes, thread_name_prefix="delivery-lane")
        return self._pool

    def run_batch(self) -> int:
        """Claims and delivers one batch; returns how many rows it finished (0: nothing is due)."""
        claim = self.claim()
        return claim.claimed - len(claim.batch) + self.deliver(claim.token, claim.batch)

    def run(self, budget_seconds: float | None = RUN_BUDGET_SECONDS) -> int:
        """Delivers until nothing is due, a stop is requested, or the time budget is spent (lanes in flight then
        finish their rows); returns the rows finished."""
        return self._drive(None, budget_seconds)


@dataclass(eq=False)
class _Flight:
    """One claim being delivered: its lanes still sending, the rows attempted, results not yet written."""

    token: str
    rows: list[Prepared]
    lanes_left: int
    attempted: set[int] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)


def log_event(event: str, text: str, row: OutboxMessage | None, **fields: Any) -> None:
    """One JSON log line (app.core.middleware.JsonLogFormatter) with the message's and endpoint's ids; errors are
    cut to 300 characters, and no URL, secret or address is ever logged."""
    data: dict[str, Any] = {"event": event}
    if row is not None:
        data.update(
            message=row.id,
            message_id=row.message_id,
            endpoint=row.endpoint_id,
            category=row.category,
            channel=row.channel,
            attempts=row.attempts,
            status=row.status,
        )
    for key, value in fields.items():
        if value is not None:
            data[key] = value[:300] if isinstance(value, str) else value
    logger.warning(text, extra={"fields": data})


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _announce_failure(session: Session, row: OutboxMessage, now: dt.datetime) -> None:
    if row.category != "notification":
        return
    service.emit(
        session,
        "notification.failed",
        events.NotificationFailedEvent(
            notification_id=row.id,
            template=row.template,
            channel=row.channel,
            recipient=row.recipient,
            handover_id=row.handover_id,
            client=row.client_id,
            attempts=row.attempts,
            last_error=row.last_error,
        ),
        now=now,
    )


def deliver_due(
    db: Database, clock: Clock, stop: threading.Event | None = None, *, checks: SendChecks = no_checks
) -> int:
    """The `handover worker` job: deliver what is due, within the pass's time budget."""
    deliverer = Deliverer(db, clock, stop=stop or threading.Event(), checks=checks)
    try:
        return deliverer.run()
    finally:
        deliverer.close()
