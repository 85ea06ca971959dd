"""Shared pieces of the benchmarks: scales, fresh databases, timing, results and their markdown table."""

from __future__ import annotations

import datetime as dt
import os
import resource
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.config import Settings

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
JWT_SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"
JWT_ISSUER = "https://id.example.test"
SEED = 7
GiB = 1024**3


@dataclass(frozen=True)
class Scale:
    name: str
    employees: int
    clients: int
    leavers: int
    solver_clients: int
    solver_candidates: int
    solver_time_limit: float  # the exact solve is bounded so the whole bench stays bounded
    http_seconds: int  # per load-generator run (the issue allows up to 20 s)
    http_workers: tuple[int, ...] = (1, 2)
    default_repeat: int = 3
    http_warmup: int = 1  # seconds of load before each measured run
    outbox_messages: int = 1_000


SCALES = {
    # tiny: the smoke test's scale (every scenario runs, in seconds); not for conclusions.
    "tiny": Scale("tiny", 60, 2_000, 5, 1_000, 30, 5.0, 1, (1,), 1, 0, 100),
    "small": Scale("small", 250, 10_000, 50, 10_000, 200, 60.0, 5, (1, 2), 3, 1, 1_000),
    "full": Scale("full", 2_500, 100_000, 500, 100_000, 2_000, 60.0, 10, (1, 2), 3, 1, 3_000),
}


def settings_for(database_url: str, **overrides: Any) -> Settings:
    """The settings the bench and its servers share (the servers get the same values as HANDOVER_* env)."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "jwt_secret": JWT_SECRET,
        "jwt_issuer": JWT_ISSUER,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def server_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HANDOVER_DATABASE_URL": database_url,
            "HANDOVER_ENVIRONMENT": "test",
            "HANDOVER_JWT_SECRET": JWT_SECRET,
            "HANDOVER_JWT_ISSUER": JWT_ISSUER,
            "HANDOVER_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    return env


# ---- databases ---------------------------------------------------------------------------------


def _pg_url(base_url: str) -> Any:
    url = make_url(base_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


class Databases:
    """Fresh databases for one run: PostgreSQL databases on the bench server, or SQLite files in a temp dir.

    Every database made here is dropped (or deleted) by `close()`, also when the run fails.
    """

    def __init__(self, pg_base_url: str | None, workdir: Path) -> None:
        self.pg_base_url = pg_base_url
        self.workdir = workdir
        self.run_id = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.made: list[str] = []

    @property
    def kind(self) -> str:
        return "postgresql" if self.pg_base_url else "sqlite"

    def _admin(self) -> Any:
        assert self.pg_base_url
        return create_engine(_pg_url(self.pg_base_url), isolation_level="AUTOCOMMIT")

    def fresh(self, label: str, *, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`, a URL made here); returns its URL."""
        if self.pg_base_url:
            name = f"handover_bench_{self.run_id}_{label}"
            admin = self._admin()
            try:
                with admin.connect() as conn:
                    if template:
                        src = make_url(template).database
                        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{src}"'))
                    else:
                        conn.execute(text(f'CREATE DATABASE "{name}"'))
            finally:
                admin.dispose()
            url = _pg_url(self.pg_base_url).set(database=name).render_as_string(hide_password=False)
        else:
            path = self.workdir / f"{label}.db"
            if template:
                src = Path(str(make_url(template).database))
                shutil.copyfile(src, path)  # the source is checkpointed and closed (see checkpoint())
            url = f"sqlite:///{path}"
        self.made.append(url)
        return url

    def analyze(self, url: str) -> None:
        """Statistics after loading: this server runs without autovacuum, and a plan made without them was 3–4.7×
        slower for the owner UPDATE. Copies made with TEMPLATE carry the statistics along."""
        engine = create_engine(_pg_url(url) if url.startswith("postgresql") else url)
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        engine.dispose()

    def checkpoint(self, url: str) -> None:
        """Before copying a SQLite file: fold the WAL into the main file."""
        if url.startswith("sqlite"):
            engine = create_engine(url)
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            engine.dispose()

    def drop(self, url: str) -> None:
        if url not in self.made:
            return
        self.made.remove(url)
        if url.startswith("sqlite"):
            path = str(make_url(url).database)
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(path + suffix).unlink(missing_ok=True)
            return
        admin = self._admin()
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        finally:
            admin.dispose()

    def close(self) -> None:
        for url in list(self.made):
            self.drop(url)


# ---- timing and memory ---------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """`with timed() as t: ...` then `t()` is the elapsed seconds (frozen at exit)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def peak_rss_bytes() -> int:
    """This process's peak resident set (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM, so a phase's peak can be read on its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def vm_hwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    result: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


@dataclass
class ScenarioResult:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # markdown (e.g. a table) printed after the notes
    skipped: str | None = None
    seconds: float = 0.0

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None or ratio != ratio:
        return ""
    if ratio == float("inf"):
        return "∞"
    return f"{ratio:.2f}×" if ratio < 100 else f"{ratio:,.0f}×"


def _met(value: bool | None) -> str:
    return "" if value is None else ("✅ met" if value else "❌ missed")


def render(results: list[ScenarioResult], header: dict[str, str]) -> str:
    lines = ["# handover-service benchmarks", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += [
        "",
        "Every ratio compares a figure with a baseline measured in the same run on the same machine "
        "(the machine is shared and noisy, so absolute numbers move; ratios move much less).",
        "",
        "| # | scenario | measure | result | baseline | ratio | target | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, res in enumerate(results, 1):
        if res.skipped:
            lines.append(f"| {n} | {res.title} | — | skipped: {res.skipped} | | | | |")
            continue
        for i, row in enumerate(res.rows):
            title = res.title if i == 0 else ""
            num = str(n) if i == 0 else ""
            cells = [num, title, row.measure, row.result, row.baseline, fmt_ratio(row.ratio), row.target, _met(row.met)]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Notes", ""]
    for n, res in enumerate(results, 1):
        if not res.notes and not res.skipped and not res.blocks:
            continue
        lines.append(f"**{n}. {res.title}** ({fmt_s(res.seconds)} wall)")
        lines.append("")
        lines += [f"- {note}" for note in res.notes]
        if res.skipped and not res.notes:
            lines.append(f"- skipped: {res.skipped}")
        lines.append("")
        for block in res.blocks:
            lines += [block.rstrip(), ""]
    return "\n".join(lines).rstrip() + "\n"
