"""Limits, checked across the whole API: routes are enumerated from the app, so a new one is covered too.

Body over the limit → 413 on every body-taking route; page size over the maximum → 422 on every list; batch over
its maximum → 422; PostgreSQL connections carry `statement_timeout`; every outbound call has a timeout.
"""

from __future__ import annotations

import ast
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.notify.channels import HttpWebhookChannel
from tests.conftest import START, make_settings
from tests.support.company import EFFECTIVE

ROOT = Path(__file__).resolve().parents[2]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _operations(app: FastAPI) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


# ---- bodies --------------------------------------------------------------------------------------------------


def test_every_body_taking_route_refuses_an_oversized_body(
    client: TestClient, auth: Any, app: FastAPI, settings: Settings
) -> None:
    limit = settings.max_body_bytes
    body = b'{"x": "' + b"a" * limit + b'"}'
    routes = [(m, p, op) for m, p, op in _operations(app) if "requestBody" in op]
    assert len(routes) >= 20
    failures = []
    for method, path, op in routes:
        r = client.request(
            method, _concrete(path), content=body, headers={**auth(), "content-type": "application/json"}
        )
        if r.status_code != 413 or not r.headers["content-type"].startswith("application/problem+json"):
            failures.append(f"{method} {path}: {r.status_code}")
        if "413" not in op["responses"] or "415" not in op["responses"]:
            failures.append(f"{method} {path}: 413/415 not documented")
    assert not failures, failures


def test_a_chunked_body_over_the_limit_is_refused_too(client: TestClient, auth: Any, settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"items": ["'
        for _ in range(settings.max_body_bytes // 65536 + 1):
            yield b"a" * 65536
        yield b'"]}'

    r = client.post("/v1/employees/batch", content=chunks(), headers={**auth(), "content-type": "application/json"})
    assert r.status_code == 413, r.text


# ---- pages ---------------------------------------------------------------------------------------------------


def test_every_list_route_refuses_a_page_over_the_maximum(
    client: TestClient, auth: Any, app: FastAPI, settings: Settings
) -> None:
    lists = [
        (m, p, op)
        for m, p, op in _operations(app)
        if any(prm["name"] == "limit" and prm["in"] == "query" for prm in op.get("parameters", []))
    ]
    assert len(lists) >= 10
    failures = []
    for method, path, op in lists:
        declared = next(prm for prm in op["parameters"] if prm["name"] == "limit")["schema"]
        maxima = [sub.get("maximum") for sub in declared.get("anyOf", [declared]) if sub.get("type") == "integer"]
        if maxima != [settings.max_page_size]:
            failures.append(f"{method} {path}: declared maximum {maxima}")
        over = client.request(method, _concrete(path), params={"limit": settings.max_page_size + 1}, headers=auth())
        if over.status_code != 422 or over.json()["errors"][0]["loc"] != ["query", "limit"]:
            failures.append(f"{method} {path}: limit over the maximum → {over.status_code}")
        at_max = client.request(method, _concrete(path), params={"limit": settings.max_page_size}, headers=auth())
        if at_max.status_code not in (200, 404):  # 404: a list under an id that does not exist
            failures.append(f"{method} {path}: limit at the maximum → {at_max.status_code}")
    assert not failures, failures


# ---- batches -------------------------------------------------------------------------------------------------


def _employee(i: int) -> dict[str, Any]:
    return {"external_id": f"b{i}", "name": f"B {i}", "email": f"b{i}@example.com", "seniority": 1}


BATCHES: dict[tuple[str, str], tuple[str, Callable[[int], Any], dict[str, Any]]] = {
    ("POST", "/v1/employees/batch"): ("items", _employee, {}),
    ("POST", "/v1/clients/batch"): (
        "items",
        lambda i: {"external_id": f"k{i}", "name": f"K {i}", "tier": "standard", "owner": "e1"},
        {},
    ),
    ("POST", "/v1/records/batch"): (
        "items",
        lambda i: {"kind": "task", "external_id": f"r{i}", "title": f"R {i}", "owner": "e1", "client": "c0"},
        {},
    ),
    ("POST", "/v1/simulations"): ("leavers", lambda i: f"e{i}", {"effective_at": EFFECTIVE.isoformat()}),
    ("POST", "/v1/access/check/batch"): (
        "checks",
        lambda i: {"employee": "e0", "client": f"c{i}", "action": "view"},
        {},
    ),
    ("POST", "/v1/access/events"): (
        "events",
        lambda i: {"employee": "e0", "client": "c0", "action": "view", "occurred_at": START.isoformat()},
        {},
    ),
    ("POST", "/v1/risk/score"): ("clients", lambda i: f"c{i}", {}),
    ("POST", "/v1/handover-plans"): ("handover_ids", lambda i: i + 1, {}),
    ("POST", "/v1/handover-approvals"): ("handover_ids", lambda i: i + 1, {}),
}


def _batch_field(app: FastAPI, method: str, path: str) -> tuple[str, int] | None:
    op = app.openapi()["paths"][path][method.lower()]
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    for field, prop in app.openapi()["components"]["schemas"].get(name, {}).get("properties", {}).items():
        for sub in prop.get("anyOf", [prop]):
            if sub.get("type") == "array" and sub.get("maxItems", 0) >= 100:
                return field, int(sub["maxItems"])
    return None


def test_every_batch_route_has_a_row(app: FastAPI) -> None:
    found = {(m, p) for m, p, _ in _operations(app) if m == "POST" and _batch_field(app, m, p)}
    assert found == set(BATCHES)


@pytest.mark.parametrize("key", sorted(BATCHES), ids=lambda k: k[1])
def test_a_batch_over_its_maximum_is_a_422(
    client: TestClient, auth: Any, app: FastAPI, company: Any, key: tuple[str, str]
) -> None:
    field, make, extra = BATCHES[key]
    found = _batch_field(app, *key)
    assert found is not None and found[0] == field
    maximum = found[1]
    r = client.post(key[1], json={field: [make(i) for i in range(maximum + 1)], **extra}, headers=auth())
    assert r.status_code == 422, r.text[:300]
    assert {"loc": ["body", field], "type": "too_long"}.items() <= r.json()["errors"][0].items()
    r = client.post(key[1], json={field: [make(i) for i in range(maximum)], **extra}, headers=auth())
    assert all(e["type"] != "too_long" for e in r.json().get("errors") or []), r.text[:300]


# ---- PostgreSQL statement_timeout ---------------------------------------------------------------------------


def test_postgresql_connections_carry_a_statement_timeout(
    backend: str, database_url: str, settings: Settings, db: Database
) -> None:
    if backend != "postgresql":
        pytest.skip("statement_timeout is a PostgreSQL setting")
    ms = settings.statement_timeout_ms
    with db.engine.connect() as conn:
        shown = conn.exec_driver_sql("SHOW statement_timeout").scalar()
    assert shown in {f"{ms}ms", f"{ms // 1000}s" if ms % 1000 == 0 else ""}, shown
    short = Database(make_settings(database_url, statement_timeout_ms=200))
    try:
        started = time.perf_counter()
        with short.engine.connect() as conn, pytest.raises(OperationalError, match="statement timeout"):
            conn.exec_driver_sql("SELECT pg_sleep(5)")
        assert time.perf_counter() - started < 3
    finally:
        short.dispose()


# ---- outbound calls ------------------------------------------------------------------------------------------

OUTBOUND = {
    ("httpx", "Client"),
    ("httpx", "AsyncClient"),
    ("httpx", "get"),
    ("httpx", "post"),
    ("httpx", "put"),
    ("httpx", "request"),
    ("httpx", "stream"),
    ("smtplib", "SMTP"),
    ("smtplib", "SMTP_SSL"),
    ("smtplib", "LMTP"),
    ("socket", "create_connection"),
    ("urllib.request", "urlopen"),
    ("requests", "get"),
    ("requests", "post"),
    ("requests", "request"),
}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def test_every_outbound_call_in_the_app_has_a_timeout() -> None:
    """An AST walk over app/: each client constructor or one-shot call of httpx, smtplib, socket, urllib or
    requests names `timeout`. (A client built with one applies it to every request it sends.)"""
    trees = {file: ast.parse(file.read_text(encoding="utf-8")) for file in sorted((ROOT / "app").rglob("*.py"))}
    # Our own subclasses of those clients (the SMTP channel's watched connections) are outbound calls too.
    subclasses: set[str] = set()
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in subclasses:
                    bases = {_dotted(b) for b in node.bases}
                    if bases & ({f"{m}.{n}" for m, n in OUTBOUND} | subclasses):
                        subclasses.add(node.name)
                        grew = True
    calls, missing = 0, []
    for file, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            module, _, name = _dotted(node.func).rpartition(".")
            if (module, name) in OUTBOUND or (not module and name in subclasses):
                calls += 1
                if not any(kw.arg == "timeout" for kw in node.keywords):
                    missing.append(f"{file.relative_to(ROOT)}:{node.lineno} {module}.{name}")
    assert calls >= 3, "no outbound calls found: has the notify module moved?"
    assert not missing, missing


@pytest.fixture
def silent_receiver() -> Iterator[int]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_receiver_that_never_answers_times_out(silent_receiver: int, database_url: str) -> None:
    settings = make_settings(
        database_url, webhook_allow_private=True, outbound_timeout_seconds=0.3, delivery_lease_seconds=5
    )
    channel = HttpWebhookChannel(settings)
    try:
        started = time.perf_counter()
        outcome = channel.send(f"http://127.0.0.1:{silent_receiver}/hook", {}, b"{}", ManualClock(START).now())
        assert time.perf_counter() - started < 2
    finally:
        channel.close()
    assert not outcome.ok
    assert outcome.error is not None and outcome.error.startswith("timeout")
