"""The verified-token cache: a remembered token still expires on time, and nothing forged or failed is remembered."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jose import jwt

from app.core.auth import TokenVerifier, mint_token
from app.core.config import Settings
from app.core.errors import Unauthorized


class Seconds:
    """A clock for the verifier that tests move by hand (epoch seconds)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _token(settings: Settings, now: dt.datetime, ttl: dt.timedelta = dt.timedelta(minutes=5), **kw: Any) -> str:
    return mint_token(settings, role="integration", sub="crm", scope="access:check", ttl=ttl, now=now, **kw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_cached_token_expires_at_its_exp(settings: Settings, now: dt.datetime) -> None:
    clock = Seconds(now.timestamp())
    verifier = TokenVerifier(settings, clock=clock)
    token = _token(settings, now, ttl=dt.timedelta(minutes=5))
    exp = int((now + dt.timedelta(minutes=5)).timestamp())

    assert verifier.principal(token).sub == "crm"
    assert len(verifier._cache) == 1
    clock.t = exp + settings.jwt_leeway_seconds  # the last second jose would accept
    assert verifier.verify(token)["sub"] == "crm"
    clock.t = exp + settings.jwt_leeway_seconds + 1
    with pytest.raises(Unauthorized):
        verifier.principal(token)
    assert len(verifier._cache) == 0  # an expired token is dropped, not kept
    with pytest.raises(Unauthorized):
        verifier.verify(token)


def test_cached_token_not_yet_valid_is_refused_on_every_use(settings: Settings, now: dt.datetime) -> None:
    nbf = int(now.timestamp())
    clock = Seconds(nbf)
    verifier = TokenVerifier(settings, clock=clock)
    token = _token(settings, now, extra={"nbf": nbf})
    assert verifier.principal(token).sub == "crm"
    clock.t = nbf - settings.jwt_leeway_seconds - 1
    with pytest.raises(Unauthorized):
        verifier.principal(token)
    clock.t = nbf
    assert verifier.principal(token).sub == "crm"


def test_tampered_token_is_refused_after_the_genuine_one_was_cached(settings: Settings, now: dt.datetime) -> None:
    verifier = TokenVerifier(settings, clock=Seconds(now.timestamp()))
    token = _token(settings, now)
    assert verifier.principal(token).scopes == frozenset({"access:check"})
    header, payload, signature = token.split(".")

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "access:check access:admin"
    escalated = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]  # the first character is all signature bits
    for forged in (escalated, f"{header}.{payload}.{flipped}", f"{header}.{payload}.", token + "x"):
        for _ in range(2):  # refused again: a failure is never remembered
            with pytest.raises(Unauthorized):
                verifier.principal(forged)
    assert list(verifier._cache) == [token]


def test_token_with_unknown_role_is_not_cached(settings: Settings, now: dt.datetime) -> None:
    verifier = TokenVerifier(settings, clock=Seconds(now.timestamp()))
    claims = {
        "sub": "x",
        "role": "superuser",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + 300,
    }
    token = str(jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256"))
    with pytest.raises(Unauthorized):
        verifier.principal(token)
    assert len(verifier._cache) == 0


def test_cache_is_bounded_least_recently_used_first(settings: Settings, now: dt.datetime) -> None:
    verifier = TokenVerifier(settings, clock=Seconds(now.timestamp()), cache_size=2)
    a, b, c = (_token(settings, now, extra={"jti": k}) for k in "abc")
    verifier.verify(a)
    verifier.verify(b)
    verifier.verify(a)  # a is now the most recently used
    verifier.verify(c)
    assert list(verifier._cache) == [a, c]


def test_cache_off_still_verifies(settings: Settings, now: dt.datetime) -> None:
    verifier = TokenVerifier(settings, clock=Seconds(now.timestamp()), cache_size=0)
    token = _token(settings, now)
    assert verifier.verify(token)["sub"] == "crm"
    assert verifier.verify(token)["sub"] == "crm"
    assert len(verifier._cache) == 0


@pytest.fixture
def moved_verifier(app: FastAPI, settings: Settings) -> Iterator[Seconds]:
    """The app's verifier swapped for one on a hand-moved clock (real TokenVerifier, real keys)."""
    original = app.state.verifier
    clock = Seconds(dt.datetime.now(dt.UTC).timestamp())
    app.state.verifier = TokenVerifier(settings, clock=clock)
    try:
        yield clock
    finally:
        app.state.verifier = original


def test_access_check_refuses_a_cached_token_once_it_expires(
    client: TestClient, settings: Settings, moved_verifier: Seconds, now: dt.datetime
) -> None:
    token = _token(settings, now, ttl=dt.timedelta(minutes=1))
    headers = {"Authorization": f"Bearer {token}"}
    body = {"employee": "nobody", "client": "nothing", "action": "view"}
    first = client.post("/v1/access/check", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert client.post("/v1/access/check", json=body, headers=headers).status_code == 200
    moved_verifier.t = now.timestamp() + 60 + settings.jwt_leeway_seconds + 1
    late = client.post("/v1/access/check", json=body, headers=headers)
    assert late.status_code == 401, late.text
    assert late.headers["content-type"].startswith("application/problem+json")
