"""Outbox delivery fixtures (a pytest plugin, so every package can use them): a real SMTP server, a real webhook
receiver, endpoints, and a deliverer bound as app.worker binds it."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.notify.worker import Deliverer
from app.transfer import messaging
from tests.support.receivers import Receiver, SmtpServer


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.handler.mails.clear()
    return smtp_server


@pytest.fixture
def receiver(clock: ManualClock) -> Iterator[Receiver]:
    """Not started: a test may first want its port to refuse connections."""
    r = Receiver(clock)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def notify_settings(settings: Settings, smtp: SmtpServer) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allow_private": True,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_tls": "none",
            "smtp_from": "Handover <handover@example.com>",
            "public_base_url": "https://handover.example.com",
            "outbound_timeout_seconds": 5.0,
        }
    )


@pytest.fixture
def allow_private(app: FastAPI, notify_settings: Settings) -> Iterator[Settings]:
    """The API under test accepts 127.0.0.1 receivers (as with HANDOVER_WEBHOOK_ALLOW_PRIVATE=true).

    Saved and restored by hand: monkeypatch would delete the attribute from Starlette's State on undo.
    """
    original = app.state.settings
    app.state.settings = notify_settings
    try:
        yield notify_settings
    finally:
        app.state.settings = original


@pytest.fixture
def make_endpoint(client: TestClient, auth: Any, allow_private: Settings) -> Callable[..., dict[str, Any]]:
    def make(receiver: Receiver, event_types: list[str] | None = None) -> dict[str, Any]:
        r = client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": event_types or ["*"], "description": "test CRM"},
            headers=auth(),
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        receiver.secrets.append(body["secret"])
        return body

    return make


@pytest.fixture
def deliverer(db: Database, clock: ManualClock, notify_settings: Settings) -> Iterator[Callable[..., Deliverer]]:
    made: list[Deliverer] = []

    def make(**kwargs: Any) -> Deliverer:
        kwargs.setdefault("settings", notify_settings)
        kwargs.setdefault("rng", random.Random(5))
        kwargs.setdefault("checks", messaging.check_at_send)  # as app.worker binds it
        d = Deliverer(kwargs.pop("database", db), clock, **kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
