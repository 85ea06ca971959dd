"""A 500 or a 503 answered from middleware keeps the keep-alive connection usable (issue 18, defect 7).

Starlette's ServerErrorMiddleware sends the 500 and then re-raises; uvicorn then drops the connection without
`Connection: close`, and a client's next request on it gets a reset. Through a real uvicorn and one httpx client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.auth import mint_token
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.conftest import make_settings
from tests.live import live_server


def _local_port(response: httpx.Response) -> int | None:
    """The client's port of the connection that carried `response`; None once that connection is closed."""
    sock = response.extensions["network_stream"].get_extra_info("socket")
    return int(sock.getsockname()[1]) if sock.fileno() != -1 else None


def _headers(settings: Settings, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, role='admin', sub='keepalive')}", **extra}


@pytest.fixture
def small_pool_app(database_url: str, clock: ManualClock, db: Database) -> Iterator[FastAPI]:
    settings = make_settings(
        database_url, database_pool_size=1, database_max_overflow=0, database_pool_timeout_seconds=0.2
    )
    app = create_app(settings, clock=clock)

    @app.get("/test-only/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    try:
        yield app
    finally:
        app.state.db.dispose()


def _assert_same_connection_still_works(client: httpx.Client, failed: httpx.Response, port: int | None) -> None:
    assert port is not None
    assert "close" not in failed.headers.get("connection", "").lower()
    after = client.get("/healthz")
    assert after.status_code == 200
    assert _local_port(after) == port, "the server dropped the connection after the error"


def test_an_unexpected_error_answers_500_and_keeps_the_connection(
    small_pool_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with live_server(small_pool_app) as url, httpx.Client(base_url=url, timeout=10) as client:
        port = _local_port(client.get("/healthz"))
        failed = client.get("/test-only/boom", headers={"X-Request-ID": "boom-1"})
        assert _local_port(failed) == port
        assert failed.status_code == 500
        assert failed.headers["content-type"].startswith("application/problem+json")
        body: dict[str, Any] = failed.json()
        assert body["request_id"] == "boom-1" and "a bug" not in failed.text
        [logged] = [r for r in caplog.records if r.name == "handover.errors"]
        assert getattr(logged, "fields", {}).get("request_id") == "boom-1" and logged.exc_info is not None
        _assert_same_connection_still_works(client, failed, port)


def test_a_503_from_the_idempotency_lookup_keeps_the_connection(small_pool_app: FastAPI) -> None:
    """The pool's only connection is busy: the Idempotency-Key lookup in middleware times out waiting for one."""
    settings: Settings = small_pool_app.state.settings
    with live_server(small_pool_app) as url, httpx.Client(base_url=url, timeout=10) as client:
        held = small_pool_app.state.db.engine.connect()
        try:
            keyed = _headers(settings, **{"Idempotency-Key": "k-keepalive"})
            failed = client.post("/v1/handovers", json={}, headers=keyed)
            port = _local_port(failed)
            assert failed.status_code == 503, failed.text
            assert failed.headers["content-type"].startswith("application/problem+json")
            assert int(failed.headers["retry-after"]) > 0
        finally:
            held.close()
        _assert_same_connection_still_works(client, failed, port)
        again = client.post("/v1/handovers", json={}, headers=keyed)
        assert again.status_code == 422 and _local_port(again) == port
