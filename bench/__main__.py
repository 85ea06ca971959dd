"""`python -m bench`: run the benchmarks and print a markdown table (`--write`: into bench/results/latest.md).

Options: --write (otherwise nothing is written), --out FILE, --scale tiny|small|full, --only a,b (scenarios:
synthetic, ingest, http, mass_exit, solver, outbox, plan_speed), --repeat N (medians and spread).
PostgreSQL when HANDOVER_BENCH_DATABASE_URL is set (a fresh database per run on that server, dropped after),
else SQLite files in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import http
from bench.common import RESULTS_DIR, ROOT, SCALES, Databases, ScenarioResult, render, utcnow
from bench.scenarios import (
    SCENARIOS,
    TITLES,
    Context,
    http_hot_path,
    ingest,
    load_base_via_service,
    mass_exit,
    outbox,
    plan_speed_scenario,
    solver_scenario,
    synthetic_company,
)

RUNNERS: dict[str, Callable[[Context], ScenarioResult]] = {
    "synthetic": synthetic_company,
    "ingest": ingest,
    "http": http_hot_path,
    "mass_exit": mass_exit,
    "solver": solver_scenario,
    "outbox": outbox,
    "plan_speed": plan_speed_scenario,
}
NEEDS_BASE = {"http", "mass_exit"}


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes in app/ or migrations/" if dirty else "")


def _db_version(url: str | None) -> str:
    if not url:
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version} (fresh files in a temp dir)"
    try:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()
    except Exception as exc:  # the header only
        version = f"? ({type(exc).__name__})"
    return f"PostgreSQL {version} (a fresh database per run on HANDOVER_BENCH_DATABASE_URL's server, dropped after)"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    p.add_argument("--repeat", type=int, default=None, help="runs per measurement, medians reported")
    p.add_argument(
        "--write",
        action="store_true",
        help="write the table to bench/results/latest.md and a dated copy (default: print only, so a trial run "
        "never replaces the committed results)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the table to this file (instead of --write's)")
    p.add_argument("--no-save", action="store_true", help="print only (the default; kept for old scripts)")
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = [s for s in SCENARIOS if s in chosen]
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    scale = SCALES[args.scale]
    repeat = args.repeat or scale.default_repeat
    pg = os.environ.get("HANDOVER_BENCH_DATABASE_URL") or None
    started = utcnow()
    t0 = time.perf_counter()
    results: list[ScenarioResult] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="handover-bench-") as tmp:
        workdir = Path(tmp)
        dbs = Databases(pg, workdir)
        ctx = Context(scale=scale, repeat=repeat, dbs=dbs, workdir=workdir, now=started.replace(microsecond=0))
        try:
            # The company is needed by every database scenario; generation is scenario 1 (timed or not).
            if "synthetic" not in args.scenarios and set(args.scenarios) - {"solver", "plan_speed"}:
                from bench import company

                ctx.company = company.generate(scale, ctx.now)
            for key in args.scenarios:
                if key in NEEDS_BASE and ctx.base_url is None:
                    load_base_via_service(ctx)
                print(f"… {TITLES[key]}", file=sys.stderr, flush=True)
                s0 = time.perf_counter()
                try:
                    res = RUNNERS[key](ctx)
                except Exception as exc:
                    failed = True
                    traceback.print_exc()
                    res = ScenarioResult(key, TITLES[key], skipped=f"FAILED: {type(exc).__name__}: {exc}"[:300])
                res.seconds = time.perf_counter() - s0
                results.append(res)
                print(f"  done in {res.seconds:.1f}s", file=sys.stderr, flush=True)
        finally:
            dbs.close()
    header = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "scale": f"{scale.name} ({scale.clients:,} clients, {scale.employees:,} employees, {scale.leavers} leavers; "
        f"solver {scale.solver_clients:,} × {scale.solver_candidates:,})",
        "database": _db_version(pg),
        "repeats": f"{repeat} (medians)",
        "machine": f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}, shared with other work",
        "code": _git(),
        "load generator": "wrk" if http.have_wrk() else "python httpx/asyncio (wrk not installed)",
        "total wall time": f"{time.perf_counter() - t0:,.0f} s",
    }
    table = render(results, header)
    print(table)
    if (args.write or args.out) and not args.no_save:
        out = args.out or RESULTS_DIR / "latest.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
        if args.out is None:
            suffix = "" if scale.name == "full" else f"-{scale.name}"
            dated = RESULTS_DIR / f"{started:%Y-%m-%d}-{'postgresql' if pg else 'sqlite'}{suffix}.md"
            shutil.copyfile(out, dated)
        print(f"written: {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
