"""Client similarity against label-mix similarity (``fedsa analyze --labels``), vs scipy/numpy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fedsa.core.errors import DataError
from fedsa.reports.asymmetry import markdown_table, seed_summary
from fedsa.reports.label_alignment import (
    alignment,
    client_label_mixes,
    label_similarity,
    pair_correlation,
)

REPO = Path(__file__).resolve().parents[1]
MIXES = {"0": [10, 0, 0], "1": [0, 5, 0], "2": [3, 3, 0], "3": [1, 0, 1]}


def test_label_similarity_is_the_cosine_of_the_histograms() -> None:
    sim = label_similarity(MIXES, ["0", "1", "2", "3"])
    assert sim[0, 1] == 0.0  # disjoint labels
    assert sim[0, 2] == pytest.approx(1 / math.sqrt(2))
    assert sim[2, 3] == pytest.approx(0.5)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    with pytest.raises(DataError, match=r"no label mix for clients \['9'\]"):
        label_similarity(MIXES, ["0", "9"])


def test_pair_correlation_is_pearson_over_the_upper_triangle() -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(5, 5))
    sim, lab = (raw + raw.T) / 2, rng.random((5, 5))
    lab = (lab + lab.T) / 2
    np.fill_diagonal(sim, 1.0)
    np.fill_diagonal(lab, 1.0)  # the diagonal must not count
    rows, cols = np.triu_indices(5, k=1)
    ref = scipy_stats.pearsonr(sim[rows, cols], lab[rows, cols]).statistic
    assert pair_correlation(sim, lab) == pytest.approx(float(ref))
    flat = np.full((5, 5), 0.3)
    assert pair_correlation(flat, lab) is None  # no spread: undefined, never NaN
    assert pair_correlation(np.eye(2), np.eye(2)) is None  # one pair


def fake_result(b_matrix: np.ndarray, clients: list[str]) -> dict[str, object]:
    n = len(clients)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(n, n))
    a_matrix = 0.9 + 0.01 * (noise + noise.T)
    mean = {"A": {"matrix": a_matrix.tolist()}, "B": {"matrix": b_matrix.tolist()}}
    return {"rounds": [{"round": 1, "clients": clients, "mean": mean}]}


def test_alignment_finds_b_that_follows_the_labels() -> None:
    clients = ["0", "1", "2", "3"]
    labels = label_similarity(MIXES, clients)
    out = alignment(fake_result(labels, clients), MIXES)
    assert out[1]["B"] == pytest.approx(1.0)
    assert abs(out[1]["A"]) < 0.9 and set(out[1]) == {"A", "B"}


def test_seed_summary_carries_label_correlations() -> None:
    base = {"algorithm": "fedit", "variant": "lora", "partition": "dirichlet"}
    results = [
        {**base, "dirichlet_alpha": 0.1, "run_dir": f"r{i}", "rounds": [{"round": 1, "mean": {}}]}
        for i in range(3)
    ]
    aligned = [{1: {"A": 0.1, "B": 0.9}}, {1: {"A": 0.3, "B": 0.8}}, {1: {"A": None, "B": 0.7}}]
    summary = seed_summary(results, aligned)
    labels = summary["rounds"][0]["labels"]
    assert labels["B"]["mean"] == pytest.approx(0.8) and labels["B"]["n"] == 3
    assert labels["A"]["n"] == 2  # undefined in one run: left out, not counted as 0
    half = scipy_stats.t.ppf(0.975, 2) * scipy_stats.sem([0.9, 0.8, 0.7])
    assert labels["B"]["ci95"] == pytest.approx(half, rel=1e-4)
    table = markdown_table(summary)
    assert "| round | r(A, labels) | r(B, labels) | r(dA, labels) | r(dB, labels) |" in table
    assert "| 1 | 0.20 ± " in table and "| n/a | n/a |" in table


def test_mixes_of_a_real_run_match_its_shards(tmp_path: Path) -> None:
    from fedsa.cli import main

    run = tmp_path / "r"
    argv = ["run", str(REPO / "configs" / "tiny.toml"), "algorithm=fedit", "federation.rounds=1"]
    assert main([*argv, "analysis.snapshot_rounds=[1]", "--out", str(run)]) == 0
    mixes = client_label_mixes(run)
    summary = json.loads((run / "summary.json").read_text())
    sizes = summary["client_train_sizes"]
    assert {k: sum(v) for k, v in mixes.items()} == {str(k): n for k, n in sizes.items()}
    assert all(len(v) == 2 for v in mixes.values())  # synthetic sentiment: two labels
    assert main(["analyze", str(run), "--labels"]) == 0
