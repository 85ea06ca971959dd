"""The README's run command: `handover serve` migrates the embedded SQLite and serves /docs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_on_a_fresh_directory(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDOVER_")}
    handover = shutil.which("handover", path=str(Path(sys.executable).parent)) or "handover"
    proc = subprocess.Popen(
        [handover, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)  # waiting for a process to boot, not for a schedule
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert (tmp_path / "handover.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out = proc.stdout.read().decode() if proc.stdout else ""
    base = f"http://127.0.0.1:{port}"
    assert f"handover: serving on {base} (1 worker(s)); API docs at {base}/docs" in out, out
