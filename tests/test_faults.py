"""Client failures and bad updates: rounds aggregate only valid updates or are skipped.

Five clients with injected crashes, lost replies and every kind of corrupted update. Each round
is checked against an independent recomputation from what the server received.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from fedsa.algorithms.aggregate import screen_updates, weighted_mean
from fedsa.config.load import load_config
from fedsa.config.schema import BAD_KINDS
from fedsa.core.params import clone, equal
from fedsa.engine import simulation
from fedsa.engine.faults import FaultPlan, corrupt
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import ClientEvent, run_rounds

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
OVERRIDES = [
    "data.num_clients=5",
    "federation.rounds=8",
    "federation.local_steps=2",
    "federation.min_clients=3",
    "federation.max_update_norm=1000",
    "faults.train_error=0.15",
    "faults.lost_reply=0.15",
    "faults.bad_update=0.3",
    "eval.every=100",
]


@pytest.fixture(scope="module")
def faulty_run() -> dict[str, Any]:
    cfg = load_config(TINY, OVERRIDES)
    fed = prepare(cfg)
    events: list[ClientEvent] = []
    rounds: list[dict[str, Any]] = []
    original = simulation.finish_round

    def spy(fed_: Any, record: dict[str, Any], state: Any, store: Any, *rest: Any) -> None:
        rounds.append({"record": record, "shared": clone(state.shared), "store": store.trained()})
        original(fed_, record, state, store, *rest)

    mp = pytest.MonkeyPatch()
    mp.setattr(simulation, "finish_round", spy)
    try:
        run_rounds(fed, on_client=events.append)
    finally:
        mp.undo()
    return {"fed": fed, "events": events, "rounds": rounds, "cfg": cfg}


def test_faults_of_every_kind_were_injected(faulty_run: dict[str, Any]) -> None:
    records = [r["record"] for r in faulty_run["rounds"]]
    failed = Counter(reason for r in records for reason in r["failed"].values())
    assert failed["injected fault: training raised"] >= 2
    assert failed["injected fault: reply lost"] >= 2
    assert sum(len(r["rejected"]) for r in records) >= 4
    assert any(r["skipped"] for r in records), "no round was skipped: raise the fault rates"
    assert any(not r["skipped"] for r in records), "every round was skipped"


def test_every_round_aggregates_only_valid_updates_or_is_skipped(
    faulty_run: dict[str, Any],
) -> None:
    fed, cfg = faulty_run["fed"], faulty_run["cfg"]
    sizes = {c: len(p) for c, p in zip(fed.client_ids, fed.client_train, strict=True)}
    prev_shared, prev_store = dict(fed.init_shared), {}
    for entry in faulty_run["rounds"]:
        rec, shared, store = entry["record"], entry["shared"], entry["store"]
        t = rec["round"]
        got = {e.client: e for e in faulty_run["events"] if e.round == t}
        parts = set(rec["participants"])
        assert set(rec["accepted"]) | set(rec["rejected"]) | set(rec["failed"]) == parts
        assert not set(rec["accepted"]) & set(rec["rejected"])
        assert set(got) == set(rec["accepted"]) | set(rec["rejected"])
        for tensor in shared.values():
            assert bool(torch.isfinite(tensor).all()), f"round {t}: non-finite shared tensor"
        if rec["skipped"]:
            assert len(rec["accepted"]) < cfg.federation.min_clients
            assert equal(shared, prev_shared) and store.keys() == prev_store.keys()
            assert all(equal(store[c], prev_store[c]) for c in store)
        else:
            accepted = rec["accepted"]
            expected = weighted_mean(
                [got[c].result.upload for c in accepted], [float(sizes[c]) for c in accepted]
            )
            assert equal(shared, expected)
            for cid in fed.client_ids:
                if cid in accepted:
                    assert equal(store[cid], got[cid].result.private)
                elif cid in prev_store:
                    assert equal(store[cid], prev_store[cid]), f"round {t}: {cid} changed"
                else:
                    assert cid not in store
        prev_shared, prev_store = shared, store


def test_failed_clients_restart_from_their_state_before_the_round(
    faulty_run: dict[str, Any],
) -> None:
    fed = faulty_run["fed"]
    last_good = {c: fed.init_private for c in fed.client_ids}
    records = {r["record"]["round"]: r["record"] for r in faulty_run["rounds"]}
    for event in faulty_run["events"]:
        assert equal(event.received_private, last_good[event.client])
        rec = records[event.round]
        if event.client in rec["accepted"] and not rec["skipped"]:
            last_good[event.client] = event.result.private


def test_rejections_name_their_reason(faulty_run: dict[str, Any]) -> None:
    reasons = [r for e in faulty_run["rounds"] for r in e["record"]["rejected"].values()]
    assert all(r.startswith("update from client") for r in reasons)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_corruption_is_caught_by_screening(kind: str) -> None:
    ref = {"a": torch.ones(2, 3), "b": torch.zeros(4)}
    private = {"secret": torch.full((2,), 7.0)}
    bad = corrupt(ref, private, kind)
    accepted, rejected = screen_updates({"good": ref, "bad": bad}, ref, max_norm=100.0)
    assert accepted == ["good"] and set(rejected) == {"bad"}
    if kind == "scale":  # only the norm bound catches a finite, well-formed huge update
        assert screen_updates({"bad": bad}, ref, max_norm=0.0) == (["bad"], {})


def test_fault_plan_is_reproducible_and_follows_the_rates() -> None:
    cfg = load_config(TINY, OVERRIDES[5:8]).faults
    plan = FaultPlan(cfg, seed=0)
    draws = [plan.fault(t, k) for t in range(1, 401) for k in range(5)]
    assert draws == [FaultPlan(cfg, seed=0).fault(t, k) for t in range(1, 401) for k in range(5)]
    counts = Counter(draws)
    n = len(draws)
    for name, p in (("train_error", 0.15), ("lost_reply", 0.15), ("bad_update", 0.3)):
        assert math.isclose(counts[name] / n, p, abs_tol=0.04), (name, counts[name] / n)
