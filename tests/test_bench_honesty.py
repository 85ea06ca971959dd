"""The bench reports only what it measures: no HTTP figures without wrk, no results overwritten by a trial run,
and the floor's pre-serialised COPY writes exactly the rows it was given (both databases)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from bench import http
from bench.__main__ import main
from bench.common import RESULTS_DIR, SCALES, Databases
from bench.raw import RawWriter
from bench.scenarios import Context, http_hot_path


def test_http_scenario_refuses_without_wrk_above_the_smoke_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no wrk on it
    assert not http.have_wrk()
    ctx = Context(
        scale=SCALES["small"], repeat=3, dbs=Databases(None, tmp_path), workdir=tmp_path, now=dt.datetime.now(dt.UTC)
    )
    res = http_hot_path(ctx)
    assert res.skipped is not None and "wrk is not installed" in res.skipped
    assert not res.rows
    with pytest.raises(http.WrkMissing):
        http.load("http://127.0.0.1:9", "/", ["{}"], None, seconds=1, connections=1, workdir=tmp_path)


def test_a_run_without_write_leaves_the_committed_results_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HANDOVER_BENCH_DATABASE_URL", raising=False)
    latest = RESULTS_DIR / "latest.md"
    before = latest.read_bytes() if latest.exists() else None
    dated_before = sorted(p.name for p in RESULTS_DIR.iterdir())
    assert main(["--scale", "tiny", "--only", "solver"]) == 0
    assert (latest.read_bytes() if latest.exists() else None) == before
    assert sorted(p.name for p in RESULTS_DIR.iterdir()) == dated_before


URLS = ["sqlite"] + (["postgresql"] if os.environ.get("HANDOVER_TEST_DATABASE_URL") else [])


@pytest.mark.parametrize("kind", URLS)
def test_prepared_copy_round_trips_awkward_values(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'raw.db'}" if kind == "sqlite" else os.environ["HANDOVER_TEST_DATABASE_URL"]
    engine = create_engine(url)
    writer = RawWriter(engine)
    at = dt.datetime(2026, 12, 2, 9, 30, 1, 123456, tzinfo=dt.UTC)
    rows = [
        [1, "tab\there", {"a": "line\nbreak", "b": "back\\slash"}, at, True],
        [2, None, None, None, False],
        [3, "ünïcødé \\N not null", [1, 2, "\r"], at, None],
    ]
    stamp = "TIMESTAMP WITH TIME ZONE" if kind == "postgresql" else "TEXT"
    try:
        writer.begin()
        writer.execute(f"CREATE TEMP TABLE raw_probe (id INTEGER, name TEXT, data TEXT, at {stamp}, flag BOOLEAN)")
        prepared = writer.prepare("raw_probe", ["id", "name", "data", "at", "flag"], rows)
        assert writer.copy_prepared(prepared) == 3
        cur = writer.conn.cursor()
        cur.execute("SELECT id, name, data, at, flag FROM raw_probe ORDER BY id")
        got = cur.fetchall()
        cur.close()
    finally:
        writer.rollback()
        writer.close()
        engine.dispose()
    assert [r[0] for r in got] == [1, 2, 3]
    assert [r[1] for r in got] == ["tab\there", None, "ünïcødé \\N not null"]
    assert [json.loads(r[2]) if r[2] is not None else None for r in got] == [rows[0][2], None, rows[2][2]]
    assert got[1][3] is None
    if kind == "postgresql":
        assert got[0][3] == at
        assert [r[4] for r in got] == [True, False, None]
