"""Scores that survive label skew: balanced accuracy, macro-F1 and the gain over the prior.

Hand-made predictions with known answers, checked against scikit-learn as an independent
implementation, and what a run records and reports with them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from fedsa.engine.metrics import summarize
from fedsa.reports.report import aggregate_rows
from fedsa.tasks.scores import skew_scores

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def test_majority_predictor_scores_chance_not_its_accuracy() -> None:
    """90 of 100 examples are label 0; always predicting 0 is 0.9 accurate."""
    labels = np.array([0] * 90 + [1] * 10)
    preds = np.zeros(100, dtype=int)
    got = skew_scores(labels, preds, 2)
    assert float((labels == preds).mean()) == 0.9
    assert got["balanced_accuracy"] == 0.5  # recall 1 on label 0, 0 on label 1
    assert got["macro_f1"] == pytest.approx((2 * 90 / (90 + 100) + 0.0) / 2)  # F1 0.947 and 0


def test_hand_made_three_class_case() -> None:
    """Recalls 2/3, 1/2 and 1 (label 2 never predicted wrongly); label 3 absent everywhere."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 2, 2])
    got = skew_scores(labels, preds, 4)
    assert got["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1 = [2 * 2 / (3 + 2), 2 * 1 / (2 + 2), 2 * 1 / (1 + 2)]  # 2 TP / (support + predicted)
    assert got["macro_f1"] == pytest.approx(sum(f1) / 3)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=200, p=[0.7, 0.25, 0.05])
    preds = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 3, 200))
    got = skew_scores(labels, preds, 3)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, preds))
    assert got["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))


def test_summary_means_and_prior_gain() -> None:
    per_client = {
        "0": {"accuracy": 0.9, "loss": 0.3, "n": 10, "balanced_accuracy": 0.5, "macro_f1": 0.47,
              "majority": 0.9, "prior_gain": 0.0},
        "1": {"accuracy": 0.8, "loss": 0.5, "n": 30, "balanced_accuracy": 0.7, "macro_f1": 0.69,
              "majority": 0.6, "prior_gain": 0.2},
    }  # fmt: skip
    out = summarize(per_client)
    assert out["balanced_accuracy_mean"] == pytest.approx(0.6)
    assert out["macro_f1_mean"] == pytest.approx(0.58)
    assert out["prior_gain_mean"] == pytest.approx(0.1)
    generation = summarize({"0": {"accuracy": 0.5, "loss": 1.0, "n": 4}})
    assert "balanced_accuracy_mean" not in generation and "prior_gain_mean" not in generation


def test_a_run_records_them_per_client_and_compare_reports_them(tmp_path: Path) -> None:
    import fedsa

    run = fedsa.run(TINY, ["federation.rounds=1"], out=tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    clients = record["eval"]["clients"]
    for c, m in clients.items():
        assert set(m) >= {"accuracy", "balanced_accuracy", "macro_f1", "majority", "prior_gain"}, c
        assert m["prior_gain"] == pytest.approx(m["accuracy"] - m["majority"])
        assert 0.0 <= m["balanced_accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["prior_gain_mean"] == pytest.approx(
        summary["final"]["accuracy_mean"] - summary["majority_baseline"]
    )
    row = aggregate_rows({"fedsa-lora": [summary]})[0]
    assert row["bal_acc"] == summary["final"]["balanced_accuracy_mean"]
    assert row["gain"] == summary["final"]["prior_gain_mean"]
    assert run.path == tmp_path / "run"
