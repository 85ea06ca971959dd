"""Log lines written while a request is served carry its request id, and its W3C trace when it sent one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.middleware import JsonLogFormatter, parse_traceparent
from app.main import create_app
from tests.conftest import make_settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("handover")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def boom_app(database_url: str) -> Iterator[FastAPI]:
    app = create_app(make_settings(database_url))

    @app.get("/boom")
    def boom() -> None:
        logging.getLogger("handover.test").error("something failed inside the handler")
        raise RuntimeError("boom")

    yield app
    app.state.db.dispose()


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_error_logs_carry_the_request_id_and_the_trace(boom_app: FastAPI, logged: io.StringIO) -> None:
    with TestClient(boom_app, raise_server_exceptions=False) as client:
        r = client.get("/boom", headers={"X-Request-ID": "req-42", "traceparent": TRACEPARENT})
    assert r.status_code == 500 and r.headers["x-request-id"] == "req-42"
    lines = _lines(logged)
    inside = next(x for x in lines if x["msg"] == "something failed inside the handler")
    unhandled = next(x for x in lines if str(x["msg"]).startswith("unhandled RuntimeError"))
    access = next(x for x in lines if x["logger"] == "handover.access")
    for line in (inside, unhandled, access):
        assert line["request_id"] == "req-42", line
        assert (line["trace_id"], line["parent_id"]) == (TRACE_ID, PARENT_ID), line


def test_a_log_line_outside_a_request_has_no_request_id(boom_app: FastAPI, logged: io.StringIO) -> None:
    with TestClient(boom_app, raise_server_exceptions=False) as client:
        client.get("/healthz", headers={"traceparent": "not-a-trace"})
    logging.getLogger("handover.test").warning("between requests")
    lines = _lines(logged)
    access = next(x for x in lines if x["logger"] == "handover.access")
    assert len(str(access["request_id"])) == 32 and "trace_id" not in access  # an invalid traceparent is ignored
    outside = next(x for x in lines if x["msg"] == "between requests")
    assert "request_id" not in outside


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT, (TRACE_ID, PARENT_ID)),
        (f"01-{TRACE_ID}-{PARENT_ID}-01-future", (TRACE_ID, PARENT_ID)),  # a later version may add fields
        (f"00-{TRACE_ID}-{PARENT_ID}-01-extra", None),  # version 00 has exactly four
        (f"ff-{TRACE_ID}-{PARENT_ID}-01", None),
        (f"00-{'0' * 32}-{PARENT_ID}-01", None),
        (f"00-{TRACE_ID}-{'0' * 16}-01", None),
        (f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", None),
        ("", None),
    ],
)
def test_traceparent_parsing(value: str, expected: tuple[str, str] | None) -> None:
    assert parse_traceparent(value) == expected
