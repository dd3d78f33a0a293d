"""The in-process simulator: the round loop, reading top to bottom.

sample -> broadcast -> local train -> aggregate -> evaluate -> record. One base model lives in
memory; each client's private tensors live in a :class:`~fedsa.store.ClientStore` and are swapped
in exactly. The server step is :func:`~fedsa.aggregate.weighted_mean` over whatever named tensors
the clients upload, so the loop never branches on the algorithm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedsa.aggregate import validate_update, weighted_mean
from fedsa.algorithms import ALGORITHMS
from fedsa.client import ClientResult, client_round, client_seed, load_client_state
from fedsa.config import RunConfig
from fedsa.evaluate import evaluate, summarize
from fedsa.feddpa import evaluate_instance_wise
from fedsa.generate import evaluate_generation_client
from fedsa.params import Tensors, nbytes, numel
from fedsa.prepare import Federation, prepare, sample_clients
from fedsa.results import RunDir
from fedsa.store import ClientStore, save_tensors

log = logging.getLogger(__name__)

RoundCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ClientEvent:
    """What one client received and produced in one round, for observers (tests, analysis).

    ``received_private`` is the client's private state as restored at the start of its round;
    ``result`` holds its upload and new private state after local training, before aggregation.
    """

    round: int
    client: str
    received_shared: Tensors
    received_private: Tensors
    result: ClientResult


ClientCallback = Callable[[ClientEvent], None]


def evaluate_clients(fed: Federation, shared: Tensors, store: ClientStore) -> dict[str, Any]:
    """Each client's personalised model (global shared + own private) on its own shard."""
    per_client: dict[str, dict[str, float]] = {}
    for k, cid in enumerate(fed.client_ids):
        load_client_state(fed.model, fed.frozen, shared, store.get(cid))
        per_client[cid] = evaluate_client(fed, k)
    return {"clients": per_client, **summarize(per_client)}


def evaluate_client(fed: Federation, k: int) -> dict[str, float]:
    """Client ``k``'s metrics with whatever adapter state the model holds now.

    FedDPA with the instance-wise combination classifies each input under its own adapter mix.
    """
    cfg = fed.cfg
    if fed.generation is not None:  # causal LM: greedy generation, exact match
        return evaluate_generation_client(fed, k)
    if ALGORITHMS[cfg.algorithm].dual_adapter and cfg.feddpa.combination == "instance":
        return evaluate_instance_wise(
            fed.model,
            fed.train,
            fed.client_refs[k],
            fed.dev,
            fed.client_eval[k],
            cfg.feddpa,
            cfg.eval.batch_size,
            fed.device,
        )
    return evaluate(fed.model, fed.dev, fed.client_eval[k], cfg.eval.batch_size, fed.device)


def finish_round(
    fed: Federation,
    record: dict[str, Any],
    shared: Tensors,
    store: ClientStore,
    start: float,
    history: list[dict[str, Any]],
    run_dir: RunDir | None,
    on_round: RoundCallback | None,
) -> None:
    """Evaluate when due, time the round, and hand its record to history, disk and observer."""
    t = record["round"]
    if t % fed.cfg.eval.every == 0 or t == fed.cfg.federation.rounds:
        record["eval"] = evaluate_clients(fed, shared, store)
    record["wall_s"] = time.perf_counter() - start
    history.append(record)
    if run_dir is not None:
        run_dir.append_metrics(record)
    if on_round is not None:
        on_round(record)


def run_rounds(
    fed: Federation,
    run_dir: RunDir | None = None,
    on_round: RoundCallback | None = None,
    on_client: ClientCallback | None = None,
) -> tuple[Tensors, ClientStore, list[dict[str, Any]]]:
    """Run all rounds; returns the final global shared tensors, the client store and metrics.

    Args:
        fed: the prepared run.
        run_dir: where to append ``metrics.jsonl`` lines (None: keep in memory only).
        on_round: called with each round's metrics record.
        on_client: called after each client's local training, before aggregation.
    """
    cfg = fed.cfg
    shared = dict(fed.init_shared)
    store = ClientStore(fed.init_private, fed.client_ids)
    sizes = {cid: len(part) for cid, part in zip(fed.client_ids, fed.client_train, strict=True)}
    cum_up = cum_down = 0
    history: list[dict[str, Any]] = []
    for t in range(1, cfg.federation.rounds + 1):
        start = time.perf_counter()
        participants = sample_clients(fed.client_ids, cfg.federation.clients_per_round, cfg.seed, t)
        uploads: list[Tensors] = []
        weights: list[float] = []
        losses: dict[str, float] = {}
        up: dict[str, int] = {}
        down: dict[str, int] = {}
        for cid in participants:
            k = fed.client_ids.index(cid)
            down[cid] = nbytes(shared)  # the broadcast this client receives
            private = store.get(cid)
            result = client_round(
                fed.model,
                fed.layout,
                frozen=fed.frozen,
                shared=shared,
                private=private,
                data=fed.train,
                indices=fed.client_train[k],
                cfg=cfg,
                seed=client_seed(cfg.seed, t, k),
                device=fed.device,
            )
            store.put(cid, result.private)
            if on_client is not None:
                on_client(ClientEvent(t, cid, shared, private, result))
            validate_update(result.upload, shared, client=cid)
            uploads.append(result.upload)
            up[cid] = nbytes(result.upload)
            weights.append(float(sizes[cid]) if cfg.federation.weighting == "examples" else 1.0)
            losses[cid] = result.train_loss

        if shared:
            shared = weighted_mean(uploads, weights)

        record: dict[str, Any] = {
            "round": t,
            "participants": participants,
            "bytes_up": sum(up.values()),
            "bytes_down": sum(down.values()),
            "bytes_up_per_client": up,
            "bytes_down_per_client": down,
            "train_loss": sum(losses.values()) / len(losses),
            "train_loss_per_client": losses,
        }
        cum_up += record["bytes_up"]
        cum_down += record["bytes_down"]
        record["cum_bytes_up"], record["cum_bytes_down"] = cum_up, cum_down
        finish_round(fed, record, shared, store, start, history, run_dir, on_round)
    return shared, store, history


def param_counts(fed: Federation) -> dict[str, int]:
    """Scalars per client in each group: what trains, what is sent each way per round."""
    return {
        "trainable": numel(fed.init_shared) + numel(fed.init_private),
        "shared": numel(fed.init_shared),
        "private": numel(fed.init_private),
        "frozen_adapter": numel(fed.frozen),
    }


def majority_baseline(fed: Federation) -> float:
    """Mean client accuracy of always predicting the client's majority training label.

    With label-skewed shards a personalised head can score high by learning the label prior
    alone; this reference shows how much of an accuracy is more than that.
    """
    accs = []
    for train_idx, eval_idx in zip(fed.client_train, fed.client_eval, strict=True):
        labels = fed.train.labels[train_idx]
        top = int(np.bincount(labels).argmax())
        accs.append(float((fed.dev.labels[eval_idx] == top).mean()))
    return sum(accs) / len(accs)


def build_summary(fed: Federation, history: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Final-round numbers (never a best round), totals and parameter counts."""
    final = history[-1]
    ev = final["eval"]
    return {
        "algorithm": fed.cfg.algorithm,
        "variant": fed.cfg.adapter.variant,
        "task": fed.cfg.data.task,
        "model": fed.cfg.model.name,
        "seed": fed.cfg.seed,
        "rounds": final["round"],
        "num_clients": len(fed.client_ids),
        "client_train_sizes": {
            c: len(p) for c, p in zip(fed.client_ids, fed.client_train, strict=True)
        },
        "client_eval_sizes": {
            c: len(p) for c, p in zip(fed.client_ids, fed.client_eval, strict=True)
        },
        "final": {k: v for k, v in ev.items() if k != "clients"},
        "final_clients": ev["clients"],
        # generation tasks have no class labels (their partition keys are length buckets)
        **({} if fed.generation else {"majority_baseline": majority_baseline(fed)}),
        "total_bytes_up": final["cum_bytes_up"],
        "total_bytes_down": final["cum_bytes_down"],
        "mb_up": final["cum_bytes_up"] / 1e6,
        "mb_down": final["cum_bytes_down"] / 1e6,
        "params": param_counts(fed),
        "wall_s": wall_s,
        "config_sha256": fed.cfg.sha256(),
    }


def snapshot_writer(run_dir: RunDir, rounds: tuple[int, ...]) -> ClientCallback:
    """An ``on_client`` observer saving each client's tensors before and after local training.

    Keys are ``before.<name>`` (what the client started from: global shared + own private) and
    ``after.<name>`` (its upload + new private state, before aggregation).
    """
    wanted = set(rounds)

    def write(event: ClientEvent) -> None:
        if event.round not in wanted:
            return
        before = {**event.received_shared, **event.received_private}
        after = {**event.result.upload, **event.result.private}
        tensors = {f"before.{k}": v for k, v in before.items()}
        tensors.update({f"after.{k}": v for k, v in after.items()})
        path = run_dir.path / "snapshots" / f"round_{event.round}" / f"{event.client}.safetensors"
        save_tensors(path, tensors)

    return write


def run(
    cfg: RunConfig,
    out: Path,
    *,
    overwrite: bool = False,
    on_round: RoundCallback | None = None,
    on_ready: Callable[[Federation], None] | None = None,
) -> dict[str, Any]:
    """Prepare, run every round and write the run directory; returns the summary."""
    start = time.perf_counter()
    run_dir = RunDir(out, overwrite=overwrite)
    run_dir.write_config(cfg.to_dict())
    fed = prepare(cfg)
    if on_ready is not None:
        on_ready(fed)
    observer = snapshot_writer(run_dir, cfg.analysis.snapshot_rounds)
    loop = run_rounds
    if ALGORITHMS[cfg.algorithm].pooled:
        from fedsa.centralized import run_centralized as loop
    shared, store, history = loop(fed, run_dir, on_round, observer)
    run_dir.write_tensors(shared, store)
    summary = build_summary(fed, history, time.perf_counter() - start)
    run_dir.write_summary(summary)
    log.info("run finished: mean client accuracy %.4f", summary["final"]["accuracy_mean"])
    return summary
