"""The container image is safe by default: it runs in production mode and refuses the public development secret.

No Docker engine is needed: the test reads the Dockerfile's ENV and CMD and runs that command with that
environment, as the image's entrypoint would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from jose import jwt

from app.core.config import DEV_JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]


def _dockerfile() -> tuple[dict[str, str], list[str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    cmd: list[str] = []
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
        elif keyword == "CMD":
            cmd = json.loads(rest)
    return env, cmd


def _container_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    image_env, _ = _dockerfile()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    env.update(image_env)
    # The image's volume is /data; here it is a temporary directory.
    env["HANDOVER_DATABASE_URL"] = re.sub(r"/data/", f"{tmp_path}/", image_env["HANDOVER_DATABASE_URL"])
    env.update(extra)
    return env


def _command(port: int | None = None) -> list[str]:
    _, cmd = _dockerfile()
    handover = shutil.which("handover", path=str(Path(sys.executable).parent)) or "handover"
    cmd = [handover if part == "handover" else part for part in cmd]
    if port is not None:
        cmd[cmd.index("--port") + 1] = str(port)
    return cmd


def test_the_image_runs_in_production_mode() -> None:
    env, cmd = _dockerfile()
    assert env.get("HANDOVER_ENVIRONMENT") == "production"
    assert cmd[:2] == ["handover", "serve"]


def test_the_image_refuses_to_start_without_a_real_secret(tmp_path: Path) -> None:
    proc = subprocess.run(
        _command(), env=_container_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "HANDOVER_JWT_SECRET" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "handover.db").exists()  # refused before touching anything


def test_the_image_refuses_a_short_secret(tmp_path: Path) -> None:
    env = _container_env(tmp_path, HANDOVER_JWT_SECRET="too-short")
    proc = subprocess.run(_command(), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "HANDOVER_JWT_SECRET" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


AUDIT_KEY = "A" * 43 + "="  # the base64 of a 32-byte Ed25519 seed


def test_the_image_refuses_to_start_without_an_audit_signing_key(tmp_path: Path) -> None:
    env = _container_env(tmp_path, HANDOVER_JWT_SECRET="s" * 48)
    proc = subprocess.run(_command(), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "HANDOVER_AUDIT_SIGNING_KEY" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "handover.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_with_a_real_secret_it_serves_and_refuses_development_tokens(tmp_path: Path) -> None:
    secret = "s" * 48
    port = _free_port()
    env = _container_env(tmp_path, HANDOVER_JWT_SECRET=secret, HANDOVER_AUDIT_SIGNING_KEY=AUDIT_KEY)
    proc = subprocess.Popen(_command(port), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)  # waiting for a process to boot, not for a schedule
        now = int(time.time())
        claims = {
            "sub": "x",
            "role": "admin",
            "iss": "handover-dev",
            "aud": "handover-service",
            "iat": now,
            "exp": now + 60,
        }
        forged = jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256")
        real = jwt.encode(claims, secret, algorithm="HS256")
        assert httpx.get(f"{base}/v1/employees", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert httpx.get(f"{base}/v1/employees", headers={"Authorization": f"Bearer {real}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
