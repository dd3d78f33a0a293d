"""Confidence intervals over seeds: the mean with its 95% interval, and paired differences.

Seeds are few (3-5), so the interval is Student's t, ``mean ± t_{0.975, n-1} s / sqrt(n)``,
not the normal ``1.96 s / sqrt(n)``, which at n = 3 would be 2.2 times too narrow. Two methods run
on the same seeds see the same partitions and initial adapters, so their difference is taken
seed by seed (a paired interval), which removes the variance they share.

The quantiles are the standard two-sided 95% table for 1-30 degrees of freedom and the
Cornish-Fisher expansion beyond (error < 1e-4 there); scipy would be a large dependency for one
number, and ``tests/test_stats.py`` checks every entry against ``scipy.stats.t.ppf``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

#: t_{0.975, df} for df = 1..30.
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"need at least 1 degree of freedom, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959963984540054
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, half-width)`` of the 95% t interval; half-width nan for one value."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    sd = statistics.stdev(values)
    return mean, t_quantile(len(values) - 1) * sd / math.sqrt(len(values))


def paired_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``(mean, half-width)`` of ``a - b`` taken seed by seed (same seeds, same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return mean_ci([x - y for x, y in zip(a, b, strict=True)])


REFERENCE = "fedsa-lora"
"""The method every other row's paired difference is taken against."""


def add_intervals(rows: list[dict[str, Any]], sums: dict[str, list[dict[str, Any]]]) -> None:
    """Each row's 95% t interval over seeds, and its paired difference from FedSA-LoRA's.

    The difference is taken seed by seed over the seeds both ran (nan without FedSA-LoRA, for
    FedSA-LoRA itself, or with one common seed, where no interval exists).
    """

    def by_seed(algo: str) -> dict[Any, float]:
        return {s.get("seed"): float(s["final"]["accuracy_mean"]) for s in sums[algo]}

    ref = by_seed(REFERENCE) if REFERENCE in sums else {}
    for row in rows:
        accs = by_seed(row["algorithm"])
        row["acc_ci"] = mean_ci(list(accs.values()))[1]
        common = [s for s in accs if s in ref]
        if row["algorithm"] == REFERENCE or not common:
            row["delta"], row["delta_ci"] = math.nan, math.nan
            continue
        row["delta"], row["delta_ci"] = paired_ci(
            [accs[s] for s in common], [ref[s] for s in common]
        )
