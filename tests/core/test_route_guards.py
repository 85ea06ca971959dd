"""Every route, enumerated from the app, refuses a missing token (401) and a token without its scope (403)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.auth import required_scopes
from app.core.routes import iter_api_routes

# Routes that authenticate otherwise (or not at all), by design.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/hooks/hr"),
    ("GET", "/v1/notifications/{notification_id}/ack"),  # a signed link instead of a token
    ("POST", "/v1/notifications/{notification_id}/ack"),  # the same link's confirm button
    ("GET", "/docs"),  # the API documentation and its assets, public as FastAPI's own pages were
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/docs/assets/{name}"),
    ("GET", "/redoc"),
}


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for route in iter_api_routes(app):
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            out.append((method, route.path))
    return out


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_route_list_is_not_empty(app: FastAPI) -> None:
    routes = api_routes(app)
    assert ("PUT", "/v1/employees/{external_id}") in routes
    assert len(routes) >= 10


def test_every_route_needs_a_token_and_its_scope(client: TestClient, app: FastAPI, auth: Any) -> None:
    no_scope = auth("integration", scope="")
    failures = []
    for method, path in api_routes(app):
        if (method, path) in PUBLIC:
            continue
        url = _concrete(path)
        anonymous = client.request(method, url)
        if anonymous.status_code != 401 or not anonymous.headers.get("www-authenticate"):
            failures.append(f"{method} {path} without token: {anonymous.status_code}")
        scopeless = client.request(method, url, headers=no_scope)
        if scopeless.status_code != 403:
            failures.append(f"{method} {path} without scope: {scopeless.status_code}")
        for response in (anonymous, scopeless):
            assert response.headers["content-type"].startswith("application/problem+json")
    assert not failures, failures


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_is_public(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_required_scopes_read_from_each_route_match_the_contract(app: FastAPI) -> None:
    """The Idempotency-Key middleware checks these scopes before a replay: they are the ones each route asks for."""
    paths = app.openapi()["paths"]
    for route in iter_api_routes(app):
        if not route.include_in_schema:  # /docs and its assets: public pages, not part of the contract
            assert required_scopes(route.dependant) is None, route.path
            continue
        for method in route.methods - {"HEAD", "OPTIONS"}:
            security = paths[route.path][method.lower()].get("security")
            expected = None if not security else frozenset(s for req in security for s in req.get("bearerAuth", []))
            assert required_scopes(route.dependant) == expected, (method, route.path)
