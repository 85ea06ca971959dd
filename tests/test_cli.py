from __future__ import annotations

import subprocess
import sys

from jose import jwt

from app.cli import main
from app.core.config import DEV_JWT_SECRET


def test_token_prints_a_verifiable_token_on_the_last_line(capsys, monkeypatch) -> None:
    monkeypatch.setenv("HANDOVER_ENVIRONMENT", "development")
    from app.core.config import get_settings

    get_settings.cache_clear()
    try:
        assert main(["token", "--role", "manager", "--emp", "m1", "--ttl", "120"]) == 0
    finally:
        get_settings.cache_clear()
    token = capsys.readouterr().out.strip().splitlines()[-1]
    claims = jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"], audience="handover-service")
    assert claims["role"] == "manager" and claims["emp"] == "m1" and claims["exp"] - claims["iat"] == 120


def test_token_refused_outside_development(monkeypatch, capsys) -> None:
    monkeypatch.setenv("HANDOVER_ENVIRONMENT", "production")
    monkeypatch.setenv("HANDOVER_JWT_SECRET", "p" * 40)
    monkeypatch.setenv("HANDOVER_AUDIT_SIGNING_KEY", "A" * 43 + "=")  # valid production settings: refused for the role
    from app.core.config import get_settings

    get_settings.cache_clear()
    try:
        assert main(["token", "--role", "admin"]) == 2
        assert "outside development" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_help_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True, check=True)
    assert "serve" in out.stdout and "migrate" in out.stdout and "token" in out.stdout
