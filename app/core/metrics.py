"""Prometheus metrics that stay true with several processes.

`handover serve --workers N` (N > 1) gives uvicorn's workers a fresh `PROMETHEUS_MULTIPROC_DIR` before they
start: each process writes its counters, histograms and gauges to files there, and a scrape, whichever worker
answers it, adds every process's files up (prometheus-client's MultiProcessCollector). With one process the
plain in-memory registry is used. Gauges say how they combine across processes (`multiprocess_mode`); values
read from the database (the outbox, due handovers: app/ops/metrics.py) are computed at scrape time and are true
with any number of processes.

The worker's own metrics (deliveries, pass duration) are defined here, in the default registry: `handover worker`
serves them on `HANDOVER_WORKER_METRICS_PORT` (it runs as its own container in the compose deploy, where it
shares no directory with the API).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db$")

DELIVERIES = Counter(
    "handover_outbox_deliveries_total",
    "Outbox messages finished or attempted by the worker, by channel and result: sent; failed (retried later);"
    " dead (no more tries); withdrawn or skipped (not sent, the workflow no longer wanted it).",
    ["channel", "result"],
)


@cache
def worker_pass() -> Histogram:
    """Made on first use: unlabelled, it would otherwise show up (all zero) in every process that imports this
    module, the API's multiprocess scrape included."""
    return Histogram(
        "handover_worker_pass_duration_seconds",
        "How long one `handover worker` pass over every job took.",
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    )


WORKER_JOB = Histogram(
    "handover_worker_job_duration_seconds",
    "How long each worker job took within a pass.",
    ["job"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
WORKER_JOB_FAILURES = Counter("handover_worker_job_failures_total", "Worker jobs that raised, by job.", ["job"])


def multiprocess_dir() -> str | None:
    """The directory this process writes its metrics to, or None when it keeps them in memory.

    prometheus-client picks the mode once, when it is imported: the variable set later changes nothing, so the
    answer is what the library does, not what the environment says now."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())


def scrape_registry(own: CollectorRegistry, collectors: Iterable[Collector]) -> CollectorRegistry:
    """What /metrics exposes: this process's registry, or, in multiprocess mode, every process's files."""
    path = multiprocess_dir()
    if path is None:
        for collector in collectors:
            own.register(collector)
        return own
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    for collector in collectors:
        registry.register(collector)
    return registry


def mark_dead_processes(path: str | None = None) -> list[int]:
    """Drops the live gauges of processes that are gone (a worker uvicorn restarted), so `livesum` gauges count
    only the living. Counters and histograms keep a dead worker's counts: they are history, and a total that fell
    would read as a counter reset."""
    path = path or multiprocess_dir()
    if path is None:
        return []
    dead = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_FILE.search(name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return sorted(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
