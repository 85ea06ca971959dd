"""The bench reports only what it measures: no HTTP figures without wrk, no results overwritten by a trial run,
the floor's pre-serialised COPY writes exactly the rows it was given, and the mass exit's floors (full and lean)
write the records the service moved, then leave the database as the service left it (both databases)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from bench import http
from bench import mass_exit as mass_exit_child
from bench.__main__ import main
from bench.common import RESULTS_DIR, SCALES, Databases
from bench.company import generate
from bench.raw import RawWriter
from bench.scenarios import Context, http_hot_path, load_base_via_service, mass_exit


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


@pytest.mark.parametrize("kind", URLS)
def test_mass_exit_moves_the_book_and_both_floors_write_the_same_moves(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg = os.environ["HANDOVER_TEST_DATABASE_URL"] if kind == "postgresql" else None
    dbs = Databases(pg, tmp_path)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ctx = Context(scale=SCALES["tiny"], repeat=1, dbs=dbs, workdir=tmp_path, now=now)
    try:
        ctx.company = generate(ctx.scale, now)
        load_base_via_service(ctx)
        assert ctx.base_url is not None
        assert ctx.extra["records"]["total"] == 5 * len(ctx.company.clients)
        url = dbs.fresh("exit", template=ctx.base_url)
        out = mass_exit_child.run({"database_url": url, "leavers": ctx.company.leavers, "now": now.isoformat()})
        rec = out["records"]
        assert rec["moved"] == rec["expected"] > 0
        assert rec["open_not_with_client_owner"] == 0
        full, lean = out["floor"]["counts"], out["lean_floor"]["counts"]
        assert full["record moves (COPY)"] == full["record owners (UPDATE … FROM)"] == rec["moved"]
        assert lean["record owners (UPDATE … FROM)"] == rec["moved"]
        assert lean["lean items (COPY)"] == lean["client owners (UPDATE … FROM)"] == out["moved"]
        if kind == "postgresql":
            tables = out["pg_tables"]  # [bytes, index bytes, inserted, updated, deleted, HOT updated]
            assert tables["record_move"][2] == rec["moved"]
            assert tables["handover_item"][2] == out["items"]
            assert tables["record"][3] >= rec["moved"]
            assert "error" in out["pg_wal"] or out["pg_wal"]["tables"]["record_move"]["heap"][1] > 0
        # Both floors rolled back: the service's moves are what the database holds.
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM record_move").scalar_one() == rec["moved"]
            stray = conn.exec_driver_sql(
                "SELECT count(*) FROM record r JOIN client c ON c.external_id = r.client_id "
                "WHERE r.status = 'open' AND r.owner_id <> c.owner_id"
            ).scalar_one()
            assert stray == 0
            names = {
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.tables" if pg else "SELECT name FROM sqlite_master"
                )
            }
            assert "bench_lean_item" not in names
        engine.dispose()
        dbs.drop(url)
        # The scenario renders the records row and the lean floor row from the child's figures.
        monkeypatch.setattr(ctx, "repeat", 1)
        res = mass_exit(ctx)
        measures = [r.measure for r in res.rows]
        assert any(m.startswith("with the book of business") for m in measures)
        assert any(m.startswith("end to end vs the lean floor") for m in measures)
        assert (kind == "postgresql") == any(b.startswith("Per table") for b in res.blocks)
    finally:
        dbs.close()
