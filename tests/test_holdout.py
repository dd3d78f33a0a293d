"""Unseen clients (``eval.holdout_clients``): never trained or aggregated, adapted at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.params import equal, write_into
from fedsa.engine.evaluation import evaluate_client
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import ClientEvent, run_rounds
from fedsa.engine.summary import build_summary

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
OVER = ["data.num_clients=5", "eval.holdout_clients=2", "federation.rounds=2"]


@pytest.mark.parametrize("algorithm", ["fedsa-lora", "fedit", "local-only"])
def test_unseen_clients_never_train_and_are_scored_apart(algorithm: str) -> None:
    cfg = load_config(TINY, [*OVER, f"algorithm={algorithm}"])
    fed = prepare(cfg)
    events: list[ClientEvent] = []
    state, store, history = run_rounds(fed, on_client=events.append)
    assert {e.client for e in events} == {"0", "1", "2"}  # 3 and 4 never trained or sent
    assert all(set(r["participants"]) <= {"0", "1", "2"} for r in history)
    for c in ("3", "4"):
        assert equal(store.get(c), fed.init_private)  # private state untouched
    final = history[-1]
    assert set(final["eval"]["clients"]) == {"0", "1", "2"}
    unseen = final["eval_unseen"]
    assert set(unseen["clients"]) == {"3", "4"} and unseen["adapt_steps"] == 0
    # adapt_steps = 0: the global model (shared as sent + the common initial private tensors)
    fresh = prepare(cfg)
    for c in ("3", "4"):
        write_into(fresh.model, {**fed.frozen, **state.sent_to(c), **fed.init_private})
        got = evaluate_client(fresh, int(c))
        assert got["accuracy"] == pytest.approx(unseen["clients"][c]["accuracy"])
        assert got["loss"] == pytest.approx(unseen["clients"][c]["loss"], rel=1e-5)
    summary = build_summary(fed, history, 0.0)
    assert summary["final_unseen"]["accuracy_mean"] == unseen["accuracy_mean"]
    assert set(summary["final_unseen_clients"]) == {"3", "4"}
    assert set(summary["final_clients"]) == {"0", "1", "2"}


def test_holdouts_are_excluded_from_aggregation() -> None:
    """The global A equals the weighted mean of the three seen clients' uploads alone."""
    from fedsa.algorithms.aggregate import weighted_mean

    cfg = load_config(TINY, [*OVER, "federation.rounds=1"])
    fed = prepare(cfg)
    events: list[ClientEvent] = []
    state, _, _ = run_rounds(fed, on_client=events.append)
    sizes = [float(len(fed.client_train[int(e.client)])) for e in events]
    assert equal(state.shared, weighted_mean([e.result.upload for e in events], sizes))


def test_adaptation_trains_only_the_private_part_and_is_reproducible(tmp_path: Path) -> None:
    import fedsa

    over = [*OVER, "eval.adapt_steps=10", "optim.lr=0.05"]
    runs = [fedsa.run(TINY, over, out=tmp_path / f"run{i}") for i in range(2)]
    zero = fedsa.run(TINY, [*OVER, "optim.lr=0.05"], out=tmp_path / "zero")
    lines = [
        json.loads(r.path.joinpath("metrics.jsonl").read_text().splitlines()[-1]) for r in runs
    ]
    assert lines[0]["eval_unseen"] == lines[1]["eval_unseen"]  # seeded
    base = json.loads(zero.path.joinpath("metrics.jsonl").read_text().splitlines()[-1])
    assert lines[0]["eval"] == base["eval"]  # seen clients: adaptation happens after them
    assert lines[0]["eval_unseen"]["adapt_steps"] == 10
    adapted, untouched = lines[0]["eval_unseen"]["clients"], base["eval_unseen"]["clients"]
    assert all(adapted[c]["loss"] != untouched[c]["loss"] for c in ("3", "4"))
    assert torch.equal(
        runs[0].server.shared[next(iter(runs[0].server.shared))],
        zero.server.shared[next(iter(zero.server.shared))],
    )  # adaptation never reaches the server


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (["eval.holdout_clients=3"], "leaves 0 of"),
        (["eval.adapt_steps=5"], "needs eval.holdout_clients"),
        (["eval.holdout_clients=-1"], "holdout_clients = -1"),
    ],
)
def test_bad_holdout_configs_are_refused(override: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(TINY, ["data.num_clients=3", *override])
