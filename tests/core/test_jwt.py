"""The JWT attack matrix: every forged, stale or misdirected token is a 401."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jose import jwt

from app.core.auth import mint_token
from app.core.config import Settings
from app.main import create_app
from tests.conftest import make_settings

URL = "/v1/employees"


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
def rs_settings(database_url: str, rsa_keys: tuple[str, str]) -> Settings:
    return make_settings(database_url, jwt_algorithms=["RS256"], jwt_public_key=rsa_keys[1], jwt_key_id="k1")


@pytest.fixture
def rs_client(rs_settings: Settings, db: Any) -> Any:
    with TestClient(create_app(rs_settings), raise_server_exceptions=False) as c:
        yield c


def _claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims: dict[str, Any] = {
        "sub": "u1",
        "role": "admin",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _get(c: TestClient, token: str) -> Any:
    return c.get(URL, headers={"Authorization": f"Bearer {token}"})


def _assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_rs256_valid_token_passes(rs_client: TestClient, rs_settings: Settings, rsa_keys: tuple[str, str]) -> None:
    token = mint_token(rs_settings, role="admin", sub="u1", private_key=rsa_keys[0])
    assert _get(rs_client, token).status_code == 200


def test_alg_none_is_refused(rs_client: TestClient, rs_settings: Settings) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(rs_settings))}."
    _assert_401(_get(rs_client, token))


def test_hs256_signed_with_the_public_key_is_refused(
    rs_client: TestClient, rs_settings: Settings, rsa_keys: tuple[str, str]
) -> None:
    import hashlib
    import hmac

    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    payload = _b64(_claims(rs_settings))
    signing_input = f"{header}.{payload}".encode()
    sig = hmac.new(rsa_keys[1].encode(), signing_input, hashlib.sha256).digest()
    _assert_401(_get(rs_client, f"{header}.{payload}.{_b64(sig)}"))


def test_unknown_kid_is_refused(rs_client: TestClient, rs_settings: Settings, rsa_keys: tuple[str, str]) -> None:
    token = jwt.encode(_claims(rs_settings), rsa_keys[0], algorithm="RS256", headers={"kid": "other"})
    _assert_401(_get(rs_client, token))


def test_token_signed_by_another_key_is_refused(rs_client: TestClient, rs_settings: Settings) -> None:
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    token = jwt.encode(_claims(rs_settings), other, algorithm="RS256", headers={"kid": "k1"})
    _assert_401(_get(rs_client, token))


def _hs(settings: Settings, **overrides: Any) -> str:
    return str(
        jwt.encode(
            _claims(settings, **overrides),
            settings.jwt_secret.get_secret_value(),
            algorithm="HS256",
        )
    )


def test_valid_hs256_token_passes(client: TestClient, settings: Settings) -> None:
    assert _get(client, _hs(settings)).status_code == 200


def test_expired_within_leeway_passes(client: TestClient, settings: Settings) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    token = _hs(settings, iat=now - 600, exp=now - (settings.jwt_leeway_seconds - 10))
    assert _get(client, token).status_code == 200


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "nbf_future",
        "wrong_aud",
        "iss_superstring",
        "missing_exp",
        "missing_iat",
        "missing_sub",
        "missing_aud",
        "missing_iss",
        "unknown_role",
        "wrong_secret",
        "edited_payload",
        "garbage",
        "empty_sub",
    ],
)
def test_hs256_attack_matrix(client: TestClient, settings: Settings, case: str) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    leeway = settings.jwt_leeway_seconds
    if case == "expired":
        token = _hs(settings, iat=now - 3600, exp=now - leeway - 5)
    elif case == "nbf_future":
        token = _hs(settings, nbf=now + leeway + 60)
    elif case == "wrong_aud":
        token = _hs(settings, aud="another-service")
    elif case == "iss_superstring":
        token = _hs(settings, iss=settings.jwt_issuer + ".evil.example")
    elif case.startswith("missing_"):
        claims = _claims(settings)
        claims.pop(case.removeprefix("missing_"))
        token = str(jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256"))
    elif case == "unknown_role":
        token = _hs(settings, role="superuser")
    elif case == "wrong_secret":
        token = str(jwt.encode(_claims(settings), "x" * 48, algorithm="HS256"))
    elif case == "edited_payload":
        header, _, sig = _hs(settings, role="auditor").split(".")
        token = f"{header}.{_b64(_claims(settings, role='admin'))}.{sig}"
    elif case == "garbage":
        token = "not-a-jwt"
    else:
        token = _hs(settings, sub="")
    _assert_401(_get(client, token))


def test_missing_and_non_bearer_credentials(client: TestClient, settings: Settings) -> None:
    _assert_401(client.get(URL))
    _assert_401(client.get(URL, headers={"Authorization": f"Basic {_hs(settings)}"}))


def test_missing_scope_is_403(client: TestClient, auth: Any) -> None:
    response = client.get(URL, headers=auth("integration", scope="audit:read"))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "directory:read" in response.json()["detail"]


def test_role_scopes_can_be_narrowed_by_scope_claim(client: TestClient, auth: Any) -> None:
    assert client.get(URL, headers=auth("hr")).status_code == 200
    assert client.get(URL, headers=auth("hr", scope="audit:read")).status_code == 403
