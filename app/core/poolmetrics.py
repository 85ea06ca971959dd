"""Database pool gauges, kept up to date by the pool's own events (true in multiprocess mode too).

A scrape-time read of the pool (the earlier collector) sees only the process that answers the scrape, and
QueuePool.overflow() is negative while fewer connections than the pool size are open (it read -9): here
`handover_db_pool_overflow` is the checked-out connections beyond the pool size, 0 while within it, never negative.
Every gauge is summed over the live processes.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import event
from sqlalchemy.pool import QueuePool

from app.core.db import Database


class PoolGauges:
    def __init__(self, db: Database, registry: CollectorRegistry) -> None:
        pool = db.engine.pool
        self.size = pool.size() if isinstance(pool, QueuePool) else 0
        self._lock = threading.Lock()
        self._out = 0

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry, multiprocess_mode="livesum")

        self.size_gauge = gauge("handover_db_pool_size", "Configured pool size (summed over the live processes).")
        self.max_overflow = gauge("handover_db_pool_max_overflow", "Connections allowed beyond the pool size.")
        self.checked_out = gauge("handover_db_pool_checked_out", "Connections in use.")
        self.overflow = gauge(
            "handover_db_pool_overflow", "Connections in use beyond the pool size; 0 while within it, never negative."
        )
        self.size_gauge.set(self.size)
        self.max_overflow.set(db.settings.database_max_overflow if isinstance(pool, QueuePool) else 0)
        self._publish()
        event.listen(pool, "checkout", self._checkout)
        event.listen(pool, "checkin", self._checkin)

    # On every checkout and checkin (the access check's hot path): one gauge write, the second only beyond the pool.
    def _checkout(self, *_: Any) -> None:
        with self._lock:
            self._out += 1
            self.checked_out.set(self._out)
            if self._out > self.size:
                self.overflow.set(self._out - self.size)

    def _checkin(self, *_: Any) -> None:
        with self._lock:
            self._out = max(0, self._out - 1)
            self.checked_out.set(self._out)
            if self._out >= self.size:
                self.overflow.set(self._out - self.size)

    def _publish(self) -> None:
        self.checked_out.set(self._out)
        self.overflow.set(max(0, self._out - self.size))
