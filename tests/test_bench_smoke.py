"""The benchmark runs end to end at the tiny scale (2,000 clients), so it keeps working as the code moves.

It checks that every scenario runs and renders, not how fast anything is: timings on a shared CI machine are
noise. SQLite only (a fresh file in a temp dir); the full bench is `python -m bench --scale full`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import main
from bench.scenarios import SCENARIOS, TITLES


def test_bench_runs_end_to_end_at_tiny_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANDOVER_BENCH_DATABASE_URL", raising=False)
    out = tmp_path / "latest.md"
    code = main(["--scale", "tiny", "--out", str(out)])
    table = out.read_text()
    assert code == 0, table
    assert "FAILED" not in table
    for key in SCENARIOS:
        assert TITLES[key] in table
    assert "POST /v1/access/check" in table
    assert "end to end" in table
    # The book of business moves with the clients (issue 16 point 7), and the lean floor is reported (issue 19).
    assert "with the book of business" in table and "✔" in table and "CHECK FAILED" not in table
    assert "end to end vs the lean floor" in table and "Lean floor steps" in table
