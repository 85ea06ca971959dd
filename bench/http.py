"""uvicorn servers started as subprocesses on 127.0.0.1, and a bounded load generator against them.

Load generator: `wrk` (Debian's package) with a Lua script that pre-formats the POST requests and prints a JSON
summary; without wrk, a bounded asyncio + httpx loop with the same connection count (and the table says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, server_env

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """`uvicorn TARGET --factory --workers N` in its own process group; stopped by its pid (group) on exit."""

    def __init__(self, target: str, database_url: str, workers: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        cmd = [
            sys.executable, "-m", "uvicorn", target, "--factory", "--host", HOST, "--port", str(self.port),
            "--workers", str(workers), "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "3",
        ]  # fmt: skip
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=server_env(database_url),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s; see {self.log}")

    def stop(self) -> None:
        keep = os.environ.get("BENCH_KEEP_LOGS")  # a directory: server logs are copied there (debugging)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.log, Path(keep) / f"{self.log.stem}-{self.port}.log")
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log_file.close()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


def _lua(path: str, bodies: Sequence[str], token: str | None) -> str:
    quoted = ",\n".join("[==[" + b + "]==]" for b in bodies)
    auth = f'headers["Authorization"] = "Bearer {token}"' if token else ""
    return f"""
local bodies = {{
{quoted}
}}
local reqs = {{}}
local counter = 0
init = function(args)
  local headers = {{}}
  headers["Content-Type"] = "application/json"
  {auth}
  for i, b in ipairs(bodies) do
    reqs[i] = wrk.format("POST", "{path}", headers, b)
  end
end
request = function()
  counter = counter % #reqs + 1
  return reqs[counter]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50":%d,"p99":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    base_url: str,
    path: str,
    bodies: Sequence[str],
    token: str | None,
    *,
    seconds: int,
    connections: int,
    workdir: Path,
    threads: int = 2,
) -> Load:
    script = workdir / f"wrk_{abs(hash((path, token, len(bodies))))}.lua"
    script.write_text(_lua(path, bodies, token))
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), base_url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return Load(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
        requests=int(data["requests"]),
        errors=errors,
        tool="wrk",
    )


async def _pyload(
    base_url: str, path: str, bodies: Sequence[str], token: str | None, seconds: float, conns: int
) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=5.0) as client:

        async def one(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                i = (i + conns) % len(bodies)
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, content=bodies[i])
                    if r.status_code >= 400:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(conns)))
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def pyload(
    base_url: str, path: str, bodies: Sequence[str], token: str | None, *, seconds: int, connections: int
) -> Load:
    latencies, errors, elapsed = asyncio.run(_pyload(base_url, path, bodies, token, seconds, connections))
    latencies.sort()
    n = len(latencies)
    return Load(
        rps=n / elapsed,
        p50_ms=latencies[n // 2] * 1000 if n else float("nan"),
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        requests=n,
        errors=errors,
        tool="python httpx/asyncio (wrk not found)",
    )


class WrkMissing(RuntimeError):
    """No wrk: the Python generator caps near 300 rps even on the bare endpoint, so its ratios would measure it."""


def load(
    base_url: str,
    path: str,
    bodies: Sequence[str],
    token: str | None,
    *,
    seconds: int,
    connections: int,
    workdir: Path,
    allow_python: bool = False,
) -> Load:
    """wrk's figures; the Python generator only where asked for (the tiny smoke scale, whose numbers mean nothing)."""
    if have_wrk():
        return wrk(base_url, path, bodies, token, seconds=seconds, connections=connections, workdir=workdir)
    if not allow_python:
        raise WrkMissing("wrk is not installed (apt-get install -y wrk); refusing to report HTTP figures without it")
    return pyload(base_url, path, bodies, token, seconds=seconds, connections=connections)
