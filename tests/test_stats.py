"""Confidence intervals over seeds (``fedsa.reports.stats``) on known samples, against scipy."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from fedsa.reports.report import aggregate_rows
from fedsa.reports.stats import mean_ci, paired_ci, t_quantile


@pytest.mark.parametrize("df", [*range(1, 40), 60, 120, 1000])
def test_t_quantiles_match_scipy(df: int) -> None:
    assert t_quantile(df) == pytest.approx(float(scipy_stats.t.ppf(0.975, df)), abs=1e-4)


def test_mean_ci_on_a_known_sample() -> None:
    """1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.3027, half-width 4.3027 / sqrt(3) = 2.4841."""
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.4841, abs=1e-4)
    lo, hi = scipy_stats.t.interval(0.95, 2, loc=2.0, scale=1 / math.sqrt(3))
    assert (mean - half, mean + half) == pytest.approx((lo, hi), abs=1e-4)
    assert math.isnan(mean_ci([0.5])[1])


def test_paired_interval_is_narrower_than_the_unpaired_one_for_shared_seed_noise() -> None:
    a, b = [0.90, 0.80, 0.85], [0.88, 0.79, 0.80]  # differences 0.02, 0.01, 0.05
    mean, half = paired_ci(a, b)
    assert mean == pytest.approx(0.026667, abs=1e-6)
    assert half == pytest.approx(4.3027 * 0.020817 / math.sqrt(3), abs=1e-4)
    assert half < mean_ci(a)[1]  # the seeds' common swing is removed
    with pytest.raises(ValueError, match="equal lengths"):
        paired_ci([1.0], [1.0, 2.0])


def summary(algo: str, seed: int, acc: float) -> dict[str, object]:
    return {
        "algorithm": algo, "variant": "lora", "seed": seed,
        "final": {"accuracy_mean": acc, "accuracy_weighted": acc, "accuracy_min": acc},
        "mb_up": 1.0, "mb_down": 1.0, "params": {"trainable": 1, "shared": 1},
    }  # fmt: skip


def test_compare_rows_carry_intervals_and_paired_differences() -> None:
    rows = aggregate_rows(
        {
            "fedsa-lora": [
                summary("fedsa-lora", s, x)
                for s, x in zip((0, 1, 2), (0.88, 0.79, 0.80), strict=True)
            ],
            "fedit": [
                summary("fedit", s, x) for s, x in zip((2, 0, 1), (0.85, 0.90, 0.80), strict=True)
            ],
        }
    )  # fedit's seeds come in another order: pairing is by seed
    ref, other = rows
    assert ref["acc_ci"] == pytest.approx(mean_ci([0.88, 0.79, 0.80])[1])
    assert math.isnan(ref["delta"])
    assert (other["delta"], other["delta_ci"]) == pytest.approx(
        paired_ci([0.90, 0.80, 0.85], [0.88, 0.79, 0.80])
    )
