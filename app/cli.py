"""The `handover` command: serve, worker, migrate, token, demo, openapi."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, DBAPIError

from app.core.config import get_settings
from app.core.db import Database

DEFAULT_OPENAPI = Path("openapi/openapi.json")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.core.metrics import MULTIPROC_ENV
    from app.core.migrate import upgrade

    settings = get_settings()
    if args.workers < 1:
        print("handover serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if settings.is_sqlite or args.migrate:
        upgrade(settings.database_url)
    else:
        db = Database(settings)
        try:
            db.ping()
        finally:
            db.dispose()
    port = args.port or _free_port(args.host)
    metrics_dir = None
    if args.workers > 1:
        # Before uvicorn spawns its workers (each imports prometheus-client afresh and so writes its metrics into
        # this directory); a fresh one per serve, so no count of an earlier run leaks in. Removed when serve ends.
        metrics_dir = tempfile.mkdtemp(prefix="handover-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    base = f"http://{_url_host(args.host)}:{port}"
    print(f"handover: serving on {base} ({args.workers} worker(s)); API docs at {base}/docs", flush=True)
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=port,
            workers=args.workers,
            access_log=False,
            proxy_headers=True,
            log_level="warning",
        )
    finally:
        if metrics_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    """--port 0: a free port chosen here, so that the line above can say which."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _migrate(args: argparse.Namespace) -> int:
    from app.core.migrate import upgrade

    upgrade(get_settings().database_url, args.revision)
    print("migrated to", args.revision)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from app.core.middleware import configure_logging
    from app.worker import run_forever

    settings = get_settings()
    configure_logging(settings.log_level)
    run_forever(settings)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from app.demo.run import run_demo

    run_demo(args.database_url, seed=args.seed)
    return 0


def _token(args: argparse.Namespace) -> int:
    from app.core.auth import mint_token

    settings = get_settings()
    if settings.environment != "development":
        print("handover token: refused outside development (HANDOVER_ENVIRONMENT)", file=sys.stderr)
        return 2
    if args.ttl <= 0 or args.ttl > 30 * 24 * 3600:
        print("handover token: --ttl must be between 1 second and 30 days", file=sys.stderr)
        return 2
    token = mint_token(
        settings,
        role=args.role,
        sub=args.sub or f"dev-{args.role}",
        emp=args.emp,
        scope=" ".join(args.scope) if args.scope else None,
        ttl=dt.timedelta(seconds=args.ttl),
    )
    print(f"# role={args.role} expires in {args.ttl}s", file=sys.stderr)
    print(token)
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from app.main import create_app

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_openapi(create_app()) + "\n", encoding="utf-8")
    print("wrote", out)
    return 0


def render_openapi(app: object) -> str:
    schema = app.openapi()  # type: ignore[attr-defined]
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=False)


def build_parser() -> argparse.ArgumentParser:
    from app.core.auth import ROLE_SCOPES

    parser = argparse.ArgumentParser(prog="handover", description="handover-service")
    parser.add_argument("--version", action="version", version=f"handover {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API (migrates the embedded SQLite first)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: a free one)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes (default 1); /metrics adds up every process's counts",
    )
    p.add_argument("--migrate", action="store_true", help="also migrate a non-SQLite database first")
    p.set_defaults(func=_serve)

    p = sub.add_parser("worker", help="run due work (handover execution) in a loop until SIGTERM")
    p.set_defaults(func=_worker)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--revision", default="head", help="the Alembic revision to migrate to (default head)")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("token", help="mint a development token (development only)")
    p.add_argument("--role", required=True, choices=sorted(ROLE_SCOPES), help="the token's role")
    p.add_argument("--sub", help="subject (default dev-<role>)")
    p.add_argument("--emp", help="the employee external id this person is")
    p.add_argument("--scope", action="append", help="a scope; repeat for several (integration tokens)")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    p.set_defaults(func=_token)

    p = sub.add_parser("demo", help="a synthetic company, one leaver: plan, approve and explain a handover")
    p.add_argument(
        "--database-url",
        default="sqlite:///./handover-demo.db",
        help="a SQLite file here is deleted and rebuilt (default ./handover-demo.db)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed of the synthetic company (default 7)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("openapi", help="write openapi/openapi.json")
    p.add_argument("--output", default=str(DEFAULT_OPENAPI), help=f"where to write it (default {DEFAULT_OPENAPI})")
    p.set_defaults(func=_openapi)
    return parser


def _version() -> str:
    try:
        return version("handover-service")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ValidationError as exc:
        # One clear line instead of a traceback: a container's log shows why it refused to start.
        print(f"handover: configuration refused: {_settings_problem(exc)}", file=sys.stderr)
        return 2
    except (DBAPIError, ArgumentError) as exc:
        # An unreachable or refusing database, a malformed URL or a failed migration: say what the database said.
        reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        print(f"handover: database error ({type(exc).__name__}): {_one_line(reason)}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"handover: migration refused: {_one_line(exc)}", file=sys.stderr)
        return 2
    return code


def _one_line(exc: BaseException) -> str:
    """A driver's message on one line (psycopg's span several, with hints), without SQLAlchemy's link."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _settings_problem(exc: ValidationError) -> str:
    """The settings errors in one line, naming the environment variable of each field."""
    parts = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        loc = [str(p) for p in err.get("loc", ())]
        parts.append(f"HANDOVER_{loc[0].upper()}: {msg}" if loc else msg)
    return "; ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
