from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
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


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HANDOVER = shutil.which("handover", path=str(Path(sys.executable).parent)) or "handover"


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "0"], ["serve", "--migrate"], ["worker"]])
def test_an_unreachable_database_is_one_line_and_exit_2(command: list[str], tmp_path: Path) -> None:
    url = f"postgresql+psycopg://handover:not-in-the-output@127.0.0.1:{_closed_port()}/handover"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HANDOVER_DATABASE_URL": url}
    proc = subprocess.run([HANDOVER, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("handover: database error (OperationalError):") and "Connection refused" in lines[0]
    assert "not-in-the-output" not in proc.stderr


def test_an_unopenable_sqlite_file_and_an_unknown_revision_are_one_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    missing = {**env, "HANDOVER_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/handover.db"}
    proc = subprocess.run([HANDOVER, "migrate"], env=missing, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unable to open database file" in proc.stderr
    ok = {**env, "HANDOVER_DATABASE_URL": f"sqlite:///{tmp_path}/handover.db"}
    proc = subprocess.run(
        [HANDOVER, "migrate", "--revision", "nope"], env=ok, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "handover: migration refused:" in proc.stderr and "nope" in proc.stderr


def test_version() -> None:
    from importlib.metadata import version

    proc = subprocess.run([HANDOVER, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"handover {version('handover-service')}"


def test_every_command_and_option_has_help() -> None:
    import argparse

    from app.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = {c.dest: c.help for c in subparsers._choices_actions}
    assert set(commands) == set(subparsers.choices) and all(commands.values()), commands
    missing = [
        f"{name} {action.option_strings}"
        for name, sub in subparsers.choices.items()
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    missing += [str(a.option_strings) for a in parser._actions if a.option_strings and not a.help]
    assert missing == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"HANDOVER_ENVIRONMENT": "production"}, "handover: configuration refused: "),
        ({"HANDOVER_DATABASE_POOL_SIZE": "many"}, "handover: configuration refused: HANDOVER_DATABASE_POOL_SIZE: "),
    ],
)
def test_a_refused_setting_is_one_line_and_exit_2(variables: dict[str, str], expected: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **variables}
    for command in (["migrate"], ["serve", "--port", "0"], ["worker"]):
        proc = subprocess.run([HANDOVER, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(expected), proc.stderr
