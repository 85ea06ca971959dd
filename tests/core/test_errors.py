"""Every error is problem+json; nothing internal leaks."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app


def _is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail", "instance"):
        assert key in body
    assert body["status"] == status
    assert body["type"].startswith("urn:handover:problem:")
    return body


def test_unknown_path_is_404(client: TestClient, auth: Any) -> None:
    body = _is_problem(client.get("/v1/nothing-here", headers=auth()), 404)
    assert body["instance"] == "/v1/nothing-here"


def test_wrong_method_is_405(client: TestClient, auth: Any) -> None:
    _is_problem(client.delete("/v1/employees", headers=auth()), 405)


def test_body_over_limit_is_413(client: TestClient, auth: Any, settings: Settings) -> None:
    big = b'{"items": [' + b" " * (settings.max_body_bytes + 1) + b"]}"
    _is_problem(
        client.post(
            "/v1/employees/batch",
            content=big,
            headers={**auth(), "content-type": "application/json"},
        ),
        413,
    )


def test_chunked_body_over_limit_is_413(client: TestClient, auth: Any, settings: Settings) -> None:
    def chunks() -> Any:
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    response = client.post(
        "/v1/employees/batch",
        content=chunks(),
        headers={**auth(), "content-type": "application/json"},
    )
    _is_problem(response, 413)


def test_chunked_small_body_is_replayed(client: TestClient, auth: Any) -> None:
    def chunks() -> Any:
        yield b'{"name": "Ann", "email": "ann@example.com",'
        yield b' "seniority": 2}'

    response = client.put("/v1/employees/e1", content=chunks(), headers={**auth(), "content-type": "application/json"})
    assert response.status_code == 201, response.text


def test_non_json_body_is_415(client: TestClient, auth: Any) -> None:
    response = client.put(
        "/v1/employees/e1",
        content=b"name=Ann",
        headers={**auth(), "content-type": "application/x-www-form-urlencoded"},
    )
    _is_problem(response, 415)


def test_malformed_json_is_422_with_errors(client: TestClient, auth: Any) -> None:
    response = client.put(
        "/v1/employees/e1",
        content=b"{not json",
        headers={**auth(), "content-type": "application/json"},
    )
    body = _is_problem(response, 422)
    assert body["errors"] and body["errors"][0]["loc"][0] == "body"


def test_unexpected_error_is_a_bare_500(settings: Settings, db: Any) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("SELECT password FROM secrets -- stack detail")

    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
    body = _is_problem(response, 500)
    assert "SELECT" not in response.text and "Traceback" not in response.text
    assert body["detail"] == "An internal error occurred."


def test_database_unreachable_is_503_and_readyz_503(db: Any) -> None:
    from tests.conftest import make_settings

    app = create_app(make_settings("postgresql+psycopg://postgres@127.0.0.1:1/nowhere"))
    with TestClient(app, raise_server_exceptions=False) as c:
        ready = c.get("/readyz")
        _is_problem(ready, 503)
        assert ready.headers["retry-after"]
        from app.core.auth import mint_token

        token = mint_token(app.state.settings, role="admin", sub="x")
        response = c.get("/v1/employees", headers={"Authorization": f"Bearer {token}"})
        _is_problem(response, 503)
        assert response.headers["retry-after"]
        assert c.get("/healthz").status_code == 200


def test_request_id_is_echoed_or_generated(client: TestClient, auth: Any) -> None:
    given = client.get("/v1/employees", headers={**auth(), "X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = client.get("/v1/nothing", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert generated.json()["request_id"] == generated.headers["x-request-id"]


def test_access_log_is_json_without_tokens(client: TestClient, auth: Any) -> None:
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    from app.core.middleware import JsonLogFormatter

    handler = Capture()
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("handover.access")
    logger.addHandler(handler)
    old = logging.getLogger("handover").level
    logging.getLogger("handover").setLevel(logging.INFO)
    try:
        headers = auth()
        client.get("/v1/employees?limit=5", headers={**headers, "X-Request-ID": "req-77"})
    finally:
        logger.removeHandler(handler)
        logging.getLogger("handover").setLevel(old)
    lines = [json.loads(r) for r in records]
    line = next(x for x in lines if x.get("request_id") == "req-77")
    assert line["status"] == 200 and line["route"] == "/v1/employees" and line["actor"] == "admin:test-admin"
    token = headers["Authorization"].split()[1]
    assert all(token not in r for r in records)


def test_metrics_count_requests_by_route(client: TestClient, auth: Any) -> None:
    client.get("/v1/employees", headers=auth())
    text = client.get("/metrics", headers=auth()).text
    assert 'handover_http_requests_total{method="GET",route="/v1/employees",status="200"}' in text
    assert "handover_http_request_duration_seconds_bucket" in text
    assert "handover_db_pool_checked_out" in text
