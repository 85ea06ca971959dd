"""Database pool gauges, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool

from app.core.db import Database


class PoolCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self.db.engine.pool
        if isinstance(pool, QueuePool):
            for name, value, doc in (
                ("handover_db_pool_size", pool.size(), "Configured pool size."),
                ("handover_db_pool_checked_out", pool.checkedout(), "Connections in use."),
                ("handover_db_pool_checked_in", pool.checkedin(), "Idle connections."),
                ("handover_db_pool_overflow", pool.overflow(), "Connections beyond the pool size."),
            ):
                yield GaugeMetricFamily(name, doc, value=value)
