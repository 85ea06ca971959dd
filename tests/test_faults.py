"""Faults: the database goes away and comes back while the app keeps running.

The outage tests are PostgreSQL only: the app reaches the server through a TCP proxy the test starts on
127.0.0.1, stops (dropping every connection, as a restart or a network cut would) and starts again. While it is
down every request that needs the database answers 503 problem+json with Retry-After, /readyz too, /healthz stays
200; once it is back the same app object answers 200 again (pool pre-ping replaces the dead connections), with
no restart. SQLite has no server to lose; its test simulates the outage where the middleware meets it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.core.auth import mint_token
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.core.idempotency import IdempotencyMiddleware
from app.main import create_app
from tests.conftest import make_settings
from tests.support.company import EFFECTIVE


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `stop()` closes the listener and cuts every open connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.listener: socket.socket | None = None
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave the port listening.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied(backend: str, database_url: str, clock: ManualClock, db: Database) -> Iterator[tuple[TcpProxy, FastAPI]]:
    if backend != "postgresql" or not os.environ.get("HANDOVER_TEST_DATABASE_URL"):
        pytest.skip("needs PostgreSQL: the proxy stands between the app and the server")
    url = make_url(database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    settings = make_settings(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    app = create_app(settings, clock=clock)
    try:
        yield proxy, app
    finally:
        proxy.stop()
        app.state.db.dispose()


def _headers(settings: Settings, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, role='admin', sub='faults')}", **extra}


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["status"] == 503


def test_database_down_is_503_with_retry_after_and_recovers_without_restart(
    proxied: tuple[TcpProxy, FastAPI],
) -> None:
    proxy, app = proxied
    settings: Settings = app.state.settings
    headers = _headers(settings)
    employee = {"name": "Fay Fault", "email": "f1@example.com", "seniority": 2}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        assert client.put("/v1/employees/f1", json=employee, headers=headers).status_code == 201

        proxy.stop()
        _assert_unavailable(client.get("/readyz"))
        _assert_unavailable(client.get("/v1/employees", headers=headers))
        _assert_unavailable(client.get("/v1/employees/f1", headers=headers))
        _assert_unavailable(client.put("/v1/employees/f1", json=employee, headers=headers))
        handover = {"leaver": "f1", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()}
        _assert_unavailable(
            client.post("/v1/handovers", json=handover, headers=_headers(settings, **{"Idempotency-Key": "k-1"}))
        )
        assert client.get("/healthz").status_code == 200  # the process is alive; only readiness fails

        proxy.start()
        assert client.get("/readyz").status_code == 200
        r = client.get("/v1/employees/f1", headers=headers)
        assert r.status_code == 200, r.text
        r = client.post("/v1/handovers", json=handover, headers=_headers(settings, **{"Idempotency-Key": "k-1"}))
        assert r.status_code == 201, r.text


def test_a_token_naming_a_person_during_an_outage_is_503_not_500(proxied: tuple[TcpProxy, FastAPI]) -> None:
    """Tokens with `emp` are checked against the directory (has the person left?): that query fails too."""
    proxy, app = proxied
    settings: Settings = app.state.settings
    token = mint_token(settings, role="account_manager", sub="faults-am", emp="e0")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        proxy.stop()
        _assert_unavailable(client.get("/v1/clients", headers={"Authorization": f"Bearer {token}"}))
        proxy.start()
        assert client.get("/v1/clients", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_database_outage_met_in_middleware_is_a_503_too(
    client: TestClient, auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the Idempotency-Key lookup runs in middleware, outside the route's error handlers, and a lost
    database there answered 500. Any backend: the outage is simulated where the lookup meets it."""

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("SELECT idempotency_key", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(IdempotencyMiddleware, "_claim", refused)
    r = client.post("/v1/handovers", json={}, headers={**auth(), "Idempotency-Key": "k-2"})
    _assert_unavailable(r)


def test_no_free_database_connection_is_a_503_with_retry_after_not_a_500(
    database_url: str, clock: ManualClock, db: Database
) -> None:
    """Overload: every pooled connection stays busy for the pool timeout. Before, SQLAlchemy's pool TimeoutError
    answered 500; now 503 problem+json with Retry-After, and the next request, once a connection is free, is 200.
    Both paths: a route's own session, and the Idempotency-Key lookup in middleware."""
    settings = make_settings(
        database_url, database_pool_size=1, database_max_overflow=0, database_pool_timeout_seconds=0.2
    )
    app = create_app(settings, clock=clock)
    headers = _headers(settings)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/v1/employees", headers=headers).status_code == 200
            held = app.state.db.engine.connect()  # the pool's only connection, busy elsewhere
            try:
                _assert_unavailable(client.get("/v1/employees", headers=headers))
                keyed = _headers(settings, **{"Idempotency-Key": "k-pool"})
                _assert_unavailable(client.post("/v1/handovers", json={}, headers=keyed))
            finally:
                held.close()
            assert client.get("/v1/employees", headers=headers).status_code == 200
    finally:
        app.state.db.dispose()
