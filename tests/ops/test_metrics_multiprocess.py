"""/metrics of a real `handover serve --workers 2`: every scrape adds up every worker's counts.

Before, each scrape showed the counts of whichever worker answered it (14, 5, 14, 12 for the same 31 requests)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.auth import mint_token
from app.core.db import Database
from tests.conftest import TEST_SECRET, make_settings
from tests.ops.test_metrics import PENDING, enqueue_emails, samples

HANDOVER = shutil.which("handover", path=str(Path(sys.executable).parent)) or "handover"
N = 31
POOL_SIZE = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, base: str, database_url: str, proc: subprocess.Popen[bytes], tmp: Path) -> None:
        self.base, self.database_url, self.proc, self.tmp = base, database_url, proc, tmp


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    database_url = f"sqlite:///{tmp_path}/handover.db"
    port = _free_port()
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HANDOVER_", "PROMETHEUS_"))}
    env.update(
        {
            "TMPDIR": str(tmp_path / "tmp"),
            "HANDOVER_ENVIRONMENT": "test",
            "HANDOVER_DATABASE_URL": database_url,
            "HANDOVER_DATABASE_POOL_SIZE": str(POOL_SIZE),
            "HANDOVER_JWT_SECRET": TEST_SECRET,
            "HANDOVER_JWT_ISSUER": "https://id.example.test",
            "HANDOVER_LOG_LEVEL": "WARNING",
        }
    )
    proc = subprocess.Popen(
        [HANDOVER, "serve", "--workers", "2", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)  # waiting for processes to boot, not for a schedule
        yield Server(base, database_url, proc, tmp_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _scrape(server: Server, token: str) -> dict[str, float]:
    r = httpx.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return samples(r.text)


def _healthz_count(values: dict[str, float]) -> float:
    return sum(v for k, v in values.items() if k.startswith("handover_http_requests_total{") and "/healthz" in k)


def test_every_scrape_adds_up_every_worker(server: Server) -> None:
    token = mint_token(make_settings(server.database_url), role="admin", sub="test-admin")
    for _ in range(N):
        assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200  # a new connection each
    served = set()
    for _ in range(8):
        values = _scrape(server, token)
        assert _healthz_count(values) == N
        assert values["handover_db_pool_size"] == 2 * POOL_SIZE  # both workers' pools: both are counted
        assert values["handover_db_pool_overflow"] >= 0
        assert all(v >= 0 for k, v in values.items() if k.startswith("handover_db_pool_"))
        assert not [k for k in values if k.startswith("handover_worker_")]  # the worker's, on its own port
        served.add(values.get('handover_http_requests_total{method="GET",route="/metrics",status="200"}', 0))
    assert len(served) == 8  # each scrape sees the earlier ones (a request is counted once answered)

    now = dt.datetime.now(dt.UTC)
    db = Database(make_settings(server.database_url))
    try:
        enqueue_emails(db, 3, due=now - dt.timedelta(minutes=5), now=now - dt.timedelta(minutes=5))  # due 5 min ago
    finally:
        db.dispose()
    values = _scrape(server, token)
    assert values[PENDING] == 3
    assert 300 <= values["handover_outbox_oldest_due_age_seconds"] < 300 + 60
    assert values["handover_handovers_due"] == 0


def _workers(parent: int) -> list[int]:
    """uvicorn's worker processes: children of serve started by multiprocessing's spawn."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds uvicorn's workers through /proc")
def test_a_killed_worker_keeps_its_counts_and_drops_its_gauges_and_serve_cleans_up(server: Server) -> None:
    token = mint_token(make_settings(server.database_url), role="admin", sub="test-admin")
    for _ in range(N):
        assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    workers = _workers(server.proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:  # uvicorn starts a new worker in its place; waiting for it to boot, not for a schedule
        now = _workers(server.proc.pid)
        if len(now) == 2 and workers[0] not in now:
            try:
                values = _scrape(server, token)
            except httpx.TransportError:
                values = {}
            if values.get("handover_db_pool_size") == 2 * POOL_SIZE:
                break
        assert time.monotonic() < deadline, "no new worker"
        time.sleep(0.2)
    for _ in range(4):
        values = _scrape(server, token)
        assert values["handover_db_pool_size"] == 2 * POOL_SIZE  # the dead worker's pool is no longer counted
        assert _healthz_count(values) == N  # its requests still are
    # serve said where it listens, and removes its metrics directory when it ends
    assert [p.name for p in (server.tmp / "tmp").iterdir()][0].startswith("handover-metrics-")
    server.proc.terminate()
    server.proc.wait(timeout=30)
    out = server.proc.stdout.read().decode() if server.proc.stdout else ""
    assert f"handover: serving on {server.base} (2 worker(s)); API docs at {server.base}/docs" in out, out
    assert list((server.tmp / "tmp").iterdir()) == []
