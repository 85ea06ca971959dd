"""The /metrics registry: requests and the pool (per process, added up across processes), and the work queues,
read from the database at scrape time so that they are true with any number of API processes and workers."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.clock import Clock
from app.core.db import Database
from app.core.metrics import scrape_registry
from app.core.middleware import Metrics
from app.core.poolmetrics import PoolGauges
from app.notify import stats as outbox_stats

logger = logging.getLogger("handover.metrics")

# The workflow's count of due handovers, bound by the composition root (ops does not import transfer).
DueCount = Callable[[Session, dt.datetime], int]


class QueueCollector(Collector):
    """Outbox depth by category and status, the oldest due message's wait, approved handovers past their time.

    Read-only queries through each owning module's functions, in one short read transaction per scrape."""

    def __init__(self, db: Database, clock: Clock, due_handovers: DueCount) -> None:
        self.db, self.clock, self.due_handovers = db, clock, due_handovers

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected lazily: registering must not query the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock.now()
        up = GaugeMetricFamily("handover_queue_scrape_ok", "1 when the queue gauges below could be read.")
        try:
            with self.db.session(write=False) as session:
                depth = outbox_stats.outbox_depth(session)
                oldest = outbox_stats.oldest_due_age(session, now)
                due = self.due_handovers(session, now)
        except SQLAlchemyError as exc:
            logger.warning("queue metrics unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        outbox = GaugeMetricFamily(
            "handover_outbox_messages", "Outbox messages by category and status.", labels=["category", "status"]
        )
        for (category, status), n in sorted(depth.items()):
            outbox.add_metric([category, status], n)
        yield outbox
        yield GaugeMetricFamily(
            "handover_outbox_oldest_due_age_seconds",
            "How long the longest-waiting due outbox message has waited past its time (0: none waiting).",
            value=oldest,
        )
        yield GaugeMetricFamily(
            "handover_handovers_due",
            "Approved handovers whose effective time has passed and that no worker has executed yet.",
            value=due,
        )


def build(
    db: Database, clock: Clock, due_handovers: DueCount, extra: Sequence[Collector] = ()
) -> tuple[Metrics, CollectorRegistry]:
    """The request metrics the middleware records into, and the registry /metrics exposes (with `extra`
    collectors the composition root binds, read at scrape time)."""
    own = CollectorRegistry()
    metrics = Metrics(own)
    PoolGauges(db, own)
    return metrics, scrape_registry(own, [QueueCollector(db, clock, due_handovers), *extra])
