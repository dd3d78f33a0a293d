"""The centralized reference: pooled data, the federated step budget, nothing communicated."""

from __future__ import annotations

from pathlib import Path

from fedsa.config.load import load_config
from fedsa.engine.centralized import POOLED, run_centralized
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import ClientEvent

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def test_pooled_training_budget_and_no_traffic() -> None:
    cfg = load_config(
        TINY,
        [
            "algorithm=centralized",
            "data.num_clients=4",
            "federation.clients_per_round=2",
            "federation.local_steps=3",
        ],
    )
    fed = prepare(cfg)
    assert not fed.layout.private and not fed.layout.frozen  # one model, everything in it
    events: list[ClientEvent] = []
    state, store, history = run_centralized(fed, on_client=events.append)
    shared = state.shared
    assert [e.client for e in events] == [POOLED, POOLED]
    assert all(rec["pooled_steps"] == 3 * 2 for rec in history)  # local_steps x clients/round
    assert all(rec["bytes_up"] == 0 and rec["bytes_down"] == 0 for rec in history)
    assert set(history[-1]["eval"]["clients"]) == set(fed.client_ids)  # every client's shard
    assert shared.keys() == set(fed.layout.shared)
    assert all(store.get(c) == {} for c in fed.client_ids)
    assert events[0].result.num_examples == sum(len(p) for p in fed.client_train)


def test_centralized_run_directory(tmp_path: Path) -> None:
    from fedsa.cli import main

    assert main(["run", str(TINY), "algorithm=centralized", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "global.safetensors").exists()
