"""Signed HR events (Standard Webhooks) for POST /v1/hooks/hr, as the HR system sends them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from app.core.clock import ManualClock
from app.core.signing import sign
from tests.support.company import EFFECTIVE

URL = "/v1/hooks/hr"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET = new_secret()
OLD_SECRET = new_secret()  # still accepted while the sender rotates


def signed(
    event: dict[str, Any] | bytes,
    *,
    clock: ManualClock,
    msg_id: str | None = None,
    secret: str = SECRET,
    ts: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(clock.now().timestamp()) if ts is None else ts
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }
    return body, headers


def deliver(client: TestClient, event: dict[str, Any] | bytes, *, clock: ManualClock, **kwargs: Any) -> Response:
    body, headers = signed(event, clock=clock, **kwargs)
    response: Response = client.post(URL, content=body, headers=headers)
    return response


def exit_event(employee: str = "e0", effective_at: dt.datetime = EFFECTIVE, **data: Any) -> dict[str, Any]:
    return {
        "type": "employee.exit",
        "timestamp": "2026-11-02T08:59:00Z",
        "data": {
            "employee": employee,
            "effective_at": effective_at.isoformat(),
            "reason": "resignation",
            "destination_competitor": True,
            **data,
        },
    }


def ok(response: Response) -> dict[str, Any]:
    """The 200 body of a processed (or replayed) event."""
    assert response.status_code == 200, (response.status_code, response.text)
    data: dict[str, Any] = response.json()
    return data
