"""Spike detection for exports and downloads: is a leaver suddenly taking far more data than usual?

The method, for one employee:

* The **baseline** is the employee's daily totals (exports + downloads) over a trailing window, by default the
  60 days that end where the recent window starts. Days without events count as 0, so a user who exports on
  two days a week has a baseline full of zeros, as they should.
* The **recent** value is the total over the recent window (by default the last day). With a window of
  several days it is compared as a daily rate (total / days).
* The centre and the spread of the baseline are the **median** and the **median absolute deviation** (MAD),
  not the mean and the standard deviation. The mean and the standard deviation are dragged up by the very
  spikes we look for: one bulk export in the baseline would inflate both and hide the next one. The median
  and the MAD ignore up to half of the days being extreme. 1.4826 × MAD estimates the standard deviation of
  normally distributed data, so the score reads like a z-score.
* ``score = (recent − median) / (1.4826 × MAD + floor)``. The floor, ``max(floor_minimum, floor_fraction ×
  median)``, keeps perfectly steady users (MAD = 0) from dividing by zero and from alerting on a small
  wobble: someone who exports exactly 100 a day is not a 1,000-sigma event at 110.
* A **spike** needs all three: ``score ≥ threshold`` (unusual for this person), ``recent ≥ min_count``
  (enough volume to matter: 0 → 8 is unusual but harmless) and ``recent ≥ ratio × median`` (a multiple
  of the usual amount, so heavy users are judged by their own scale).
* An employee with fewer than ``min_history_days`` days of history has no baseline worth the name; they are
  judged by an absolute rule only (``recent ≥ new_employee_threshold``), and their score is scaled so that
  reaching that threshold scores exactly ``threshold``.

History is counted from the first day the employee was seen; the days before it are not zeros but unknown, so
they are left out of the baseline.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class SpikeConfig:
    """Thresholds of the detector; the defaults suit daily exports and downloads."""

    baseline_days: int = 60
    recent_days: int = 1
    threshold: float = 6.0
    min_count: float = 20
    ratio: float = 3.0
    min_history_days: int = 14
    new_employee_threshold: float = 100
    floor_fraction: float = 0.1
    floor_minimum: float = 1.0

    def __post_init__(self) -> None:
        if self.baseline_days < 1 or self.recent_days < 1:
            raise ValueError("baseline_days and recent_days must be at least 1")
        if self.min_history_days > self.baseline_days:
            raise ValueError("min_history_days cannot exceed baseline_days")
        if self.floor_minimum <= 0 or self.floor_fraction < 0:
            raise ValueError("the floor must be positive")
        if self.new_employee_threshold <= 0:
            raise ValueError("new_employee_threshold must be positive")


DEFAULT_CONFIG = SpikeConfig()


@dataclass(frozen=True)
class SpikeResult:
    """The verdict with everything needed to explain it."""

    score: float
    median: float
    mad: float
    recent: float
    is_spike: bool
    reason: str
    history_days: int
    rule: str  # "robust" (median/MAD) or "absolute" (too little history)


def history_from_series(baseline: Sequence[float]) -> int:
    """Days from the first active day to the end of the series (0 when the series is all zero)."""
    for i, value in enumerate(baseline):
        if value:
            return len(baseline) - i
    return 0


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    med = float(statistics.median(values))
    return med, float(statistics.median(abs(v - med) for v in values))


def detect(
    baseline: Sequence[float],
    recent: float,
    *,
    history_days: int | None = None,
    config: SpikeConfig = DEFAULT_CONFIG,
) -> SpikeResult:
    """Judges `recent` (total over the recent window) against `baseline` (daily totals, oldest first).

    `history_days` is how many days the employee has been seen before the recent window; when omitted it is
    taken from the first non-zero day of `baseline`.
    """
    if recent < 0 or any(v < 0 for v in baseline):
        raise ValueError("counts cannot be negative")
    history = history_from_series(baseline) if history_days is None else max(0, history_days)
    days = list(baseline[len(baseline) - min(history, len(baseline)) :]) if history else []
    med, mad = median_mad(days)
    rate = recent / config.recent_days

    if history < config.min_history_days:
        limit = config.new_employee_threshold
        score = config.threshold * recent / limit
        spike = recent >= limit
        reason = (
            f"{history} day(s) of history (< {config.min_history_days}): "
            f"{_fmt(recent)} {'≥' if spike else '<'} the absolute threshold {_fmt(limit)}"
        )
        return SpikeResult(score, med, mad, recent, spike, reason, history, "absolute")

    floor = max(config.floor_minimum, config.floor_fraction * med)
    score = (rate - med) / (MAD_TO_SIGMA * mad + floor)
    failed = []
    if score < config.threshold:
        failed.append(f"score {score:.2f} < {_fmt(config.threshold)}")
    if recent < config.min_count:
        failed.append(f"recent {_fmt(recent)} < minimum {_fmt(config.min_count)}")
    if rate < config.ratio * med:
        failed.append(f"{_fmt(rate)} a day < {_fmt(config.ratio)} × median {_fmt(med)}")
    if failed:
        reason = "no spike: " + "; ".join(failed)
    else:
        reason = (
            f"spike: {_fmt(rate)} a day against a median of {_fmt(med)} (MAD {_fmt(mad)}), "
            f"score {score:.2f} ≥ {_fmt(config.threshold)}"
        )
    return SpikeResult(score, med, mad, recent, not failed, reason, history, "robust")


def _fmt(value: float) -> str:
    return f"{value:g}"
