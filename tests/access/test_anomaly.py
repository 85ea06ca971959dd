"""The spike detector, pure: no database, no HTTP."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.access.anomaly import SpikeConfig, detect, history_from_series, median_mad

STEADY = [4, 5, 6, 5, 5, 4, 6, 5, 5, 5] * 6  # 60 days around 5 a day


def test_a_spike_alerts() -> None:
    r = detect(STEADY, 300)
    assert r.is_spike
    assert r.rule == "robust"
    assert r.median == 5
    assert r.mad == 0.0 or r.mad == 1.0
    assert r.score >= 6
    assert r.history_days == 60
    assert r.reason.startswith("spike")


def test_an_ordinary_day_does_not() -> None:
    r = detect(STEADY, 6)
    assert not r.is_spike
    assert "no spike" in r.reason


def test_steady_heavy_use_does_not_alert() -> None:
    r = detect([100] * 60, 100)
    assert not r.is_spike
    assert r.score == 0
    assert r.mad == 0


def test_heavy_user_is_judged_on_their_own_scale() -> None:
    """200 is unusual for a 100-a-day user (score high) but not a multiple of their usual volume."""
    r = detect([100] * 60, 200)
    assert r.score >= 6
    assert not r.is_spike
    assert "median" in r.reason
    assert detect([100] * 60, 300).is_spike


def test_small_volumes_never_alert() -> None:
    r = detect([0] * 59 + [1], 15, history_days=60)  # 15 from nearly nothing: a huge score, too little to matter
    assert r.score >= 6
    assert not r.is_spike
    assert "minimum" in r.reason


def test_a_single_noisy_day_in_the_baseline_does_not_break_it() -> None:
    noisy = list(STEADY)
    noisy[30] = 5000
    before, after = detect(STEADY, 300), detect(noisy, 300)
    assert after.is_spike
    assert after.median == before.median
    assert after.mad == before.mad
    assert after.score == pytest.approx(before.score)
    assert not detect(noisy, 5).is_spike


@pytest.mark.parametrize(("recent", "spike"), [(150, True), (100, True), (99, False), (50, False), (0, False)])
def test_new_employee_without_history_uses_the_absolute_rule(recent: int, spike: bool) -> None:
    r = detect([0] * 60, recent)
    assert r.rule == "absolute"
    assert r.history_days == 0
    assert r.is_spike is spike
    assert (r.score >= 6) is spike


def test_short_history_is_new_and_leading_quiet_days_are_not_counted() -> None:
    series = [0] * 50 + [1] * 10  # seen for 10 days only
    assert history_from_series(series) == 10
    r = detect(series, 60)
    assert r.rule == "absolute" and not r.is_spike
    # Known for 60 days (e.g. views every day, no exports): the robust rule applies and 60 from 0 is a spike.
    assert detect(series, 60, history_days=60).is_spike


def test_history_trims_the_days_before_the_employee_was_seen() -> None:
    series = [0] * 40 + [50] * 20  # 20 days at 50 a day, then nothing known before
    r = detect(series, 60)
    assert r.history_days == 20
    assert r.median == 50
    assert not r.is_spike


def test_a_longer_recent_window_is_compared_as_a_daily_rate() -> None:
    config = SpikeConfig(recent_days=7)
    assert not detect([10] * 60, 70, config=config).is_spike
    assert detect([10] * 60, 7 * 40, config=config).is_spike


def test_median_mad() -> None:
    assert median_mad([]) == (0.0, 0.0)
    assert median_mad([1, 2, 3, 4, 100]) == (3.0, 1.0)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        SpikeConfig(recent_days=0)
    with pytest.raises(ValueError):
        SpikeConfig(min_history_days=90)
    with pytest.raises(ValueError):
        detect([1, 2], -1)


baselines = st.lists(st.integers(min_value=0, max_value=10_000), min_size=0, max_size=60)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    baseline=baselines,
    recent=st.integers(min_value=0, max_value=100_000),
    factor=st.floats(min_value=1.0, max_value=1000.0),
    history=st.one_of(st.none(), st.integers(min_value=0, max_value=60)),
)
def test_more_recent_volume_never_lowers_the_score(
    baseline: list[int], recent: int, factor: float, history: int | None
) -> None:
    low = detect(baseline, recent, history_days=history)
    high = detect(baseline, recent * factor, history_days=history)
    assert high.score >= low.score
    assert high.is_spike or not low.is_spike  # a spike stays a spike when the volume grows


@st.composite
def steady_users(draw: st.DrawFn) -> tuple[list[int], int]:
    """Daily volume within ±25% of a level, and a recent day inside the same band."""
    level = draw(st.integers(min_value=0, max_value=5000))
    jitter = level // 4
    days = draw(st.lists(st.integers(min_value=level - jitter, max_value=level + jitter), min_size=14, max_size=60))
    recent = draw(st.integers(min_value=level - jitter, max_value=level + jitter))
    return days, recent


@settings(derandomize=True, max_examples=300, deadline=None)
@given(user=steady_users(), shift=st.integers(min_value=0, max_value=100_000))
def test_a_steady_user_stays_quiet_when_every_day_grows_alike(user: tuple[list[int], int], shift: int) -> None:
    days, recent = user
    before = detect(days, recent, history_days=len(days))
    after = detect([d + shift for d in days], recent + shift, history_days=len(days))
    assert not before.is_spike
    assert not after.is_spike
    assert after.mad == before.mad
    assert after.score <= max(before.score, 0.0) + 1e-9  # a bigger floor only pulls the score toward 0
