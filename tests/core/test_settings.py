from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import DEV_JWT_SECRET, Settings


def test_dev_secret_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="development JWT secret"):
        Settings(environment="production", jwt_secret=DEV_JWT_SECRET)
    Settings(environment="development")  # fine there


def test_short_secret_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(environment="production", jwt_secret="short")


def test_algorithm_families_cannot_mix() -> None:
    with pytest.raises(ValidationError, match="must not mix"):
        Settings(jwt_algorithms=["HS256", "RS256"], jwt_public_key="x")


def test_none_and_unknown_algorithms_refused() -> None:
    with pytest.raises(ValidationError, match="unsupported"):
        Settings(jwt_algorithms=["none"])


def test_asymmetric_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="public_key"):
        Settings(jwt_algorithms=["RS256"])


def test_leeway_capped_at_60_seconds() -> None:
    with pytest.raises(ValidationError):
        Settings(jwt_leeway_seconds=61)


def test_algorithms_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOVER_JWT_ALGORITHMS", "ES256")
    monkeypatch.setenv("HANDOVER_JWT_PUBLIC_KEY", "pem")
    assert Settings().jwt_algorithms == ["ES256"]
