"""Finished run directories read back for reports: the same view of reused and fresh runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsa.engine.results import read_metrics, read_summary


@dataclass(frozen=True)
class Run:
    """One finished run directory, loaded: what the plots need besides the table row."""

    algorithm: str
    seed: int
    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]


def load_run(algorithm: str, seed: int, path: Path) -> Run:
    """Read a finished run directory back, so reused and fresh runs are reported alike."""
    return Run(algorithm, seed, Path(path), read_summary(path), read_metrics(path))


def mean_or_nan(values: list[float]) -> float:
    """The mean, NaN for no values (a missing metric shows as '-' in tables)."""
    return math.fsum(values) / len(values) if values else math.nan
