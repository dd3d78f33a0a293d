"""The in-process simulator: the round loop, reading top to bottom.

sample -> broadcast -> local train -> screen -> aggregate -> evaluate -> record -> checkpoint.
One base model lives in
memory; each client's private tensors live in a :class:`~fedsa.store.ClientStore` and are swapped
in exactly. The server step is :func:`~fedsa.aggregate.weighted_mean` over whatever named tensors
the clients upload, so the loop never branches on the algorithm.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedsa.aggregate import screen_updates, weighted_mean
from fedsa.algorithms import ALGORITHMS
from fedsa.checkpoint import Checkpoint, Checkpointer
from fedsa.client import ClientResult, client_round, client_seed, load_client_state
from fedsa.device import autocast, autocast_dtype
from fedsa.evaluate import evaluate, summarize
from fedsa.faults import BAD_UPDATE, LOST_REPLY, TRAIN_ERROR, ClientFailure, FaultPlan, corrupt
from fedsa.feddpa import evaluate_instance_wise
from fedsa.generate import evaluate_generation_client
from fedsa.params import Tensors, nbytes
from fedsa.prepare import Federation, sample_clients
from fedsa.results import RunDir
from fedsa.store import ClientStore

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


def evaluate_clients(
    fed: Federation, shared: Tensors, store: ClientStore, clients: list[str] | None = None
) -> dict[str, Any]:
    """Each client's personalised model (global shared + own private) on its own shard.

    ``clients`` names whom to evaluate (None: every client); see ``eval.clients``.
    """
    per_client: dict[str, dict[str, float]] = {}
    position = {cid: k for k, cid in enumerate(fed.client_ids)}
    for cid in fed.client_ids if clients is None else clients:
        load_client_state(fed.model, fed.frozen, shared, store.get(cid))
        per_client[cid] = evaluate_client(fed, position[cid])
    return {"clients": per_client, **summarize(per_client)}


def evaluate_client(fed: Federation, k: int) -> dict[str, float]:
    """Client ``k``'s metrics with whatever adapter state the model holds now.

    FedDPA with the instance-wise combination classifies each input under its own adapter mix.
    """
    cfg = fed.cfg
    with autocast(fed.device, autocast_dtype(cfg.precision, fed.device)):
        return _evaluate_client(fed, k)


def _evaluate_client(fed: Federation, k: int) -> dict[str, float]:
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
    """Evaluate when due, time the round, and hand its record to history, disk and observer.

    ``eval_s`` (evaluation time) is recorded next to ``wall_s`` (whole round, evaluation included).
    """
    t = record["round"]
    if t % fed.cfg.eval.every == 0 or t == fed.cfg.federation.rounds:
        who = record["participants"] if fed.cfg.eval.clients == "participants" else None
        eval_start = time.perf_counter()
        record["eval"] = evaluate_clients(fed, shared, store, who)
        record["eval_s"] = time.perf_counter() - eval_start
    record["wall_s"] = time.perf_counter() - start
    history.append(record)
    if run_dir is not None:
        run_dir.append_metrics(record)
    if on_round is not None:
        on_round(record)


def client_turn(
    fed: Federation,
    round_idx: int,
    cid: str,
    shared: Tensors,
    private: Tensors,
    plan: FaultPlan,
) -> tuple[ClientResult, ClientResult]:
    """One client's local training as the server will see it, with any injected fault.

    Returns the genuine result (its private state is what the client would keep) and the
    result as received (its upload possibly corrupted).

    Raises:
        ClientFailure: the client crashed in training or its reply was lost.
    """
    cfg = fed.cfg
    k = fed.client_ids.index(cid)
    fault = plan.fault(round_idx, k)
    result = client_round(
        fed.model,
        fed.layout,
        frozen=fed.frozen,
        shared=shared,
        private=private,
        data=fed.train,
        indices=fed.client_train[k],
        cfg=cfg,
        seed=client_seed(cfg.seed, round_idx, k),
        device=fed.device,
    )
    if fault == TRAIN_ERROR:  # the model is left half-trained, as a real crash would leave it
        raise ClientFailure("injected fault: training raised")
    if fault == LOST_REPLY:
        raise ClientFailure("injected fault: reply lost")
    received = result
    if fault == BAD_UPDATE:
        bad = corrupt(result.upload, result.private, plan.bad_kind(round_idx, k))
        received = dataclasses.replace(result, upload=bad)
    return result, received


def run_rounds(
    fed: Federation,
    run_dir: RunDir | None = None,
    on_round: RoundCallback | None = None,
    on_client: ClientCallback | None = None,
    *,
    resume: Checkpoint | None = None,
    checkpointer: Checkpointer | None = None,
) -> tuple[Tensors, ClientStore, list[dict[str, Any]]]:
    """Run all rounds (from ``resume`` on, if given); returns final shared tensors, store, metrics.

    Every upload is screened (keys, shapes, dtypes, finite values, optional norm bound). A round
    aggregates the valid ones if at least ``federation.min_clients`` remain; otherwise it is
    skipped: the shared state stays and no client's state changes. A client that fails or whose
    update is rejected keeps its private state from before the round.

    Args:
        fed: the prepared run.
        run_dir: where to append ``metrics.jsonl`` lines (None: keep in memory only).
        on_round: called with each round's metrics record.
        on_client: called with what the server receives from each client, before screening.
        resume: continue after this checkpoint's round instead of starting from round 1.
        checkpointer: writes a checkpoint after the rounds it says are due.
    """
    cfg = fed.cfg
    shared = dict(fed.init_shared)
    store = ClientStore(fed.init_private, fed.client_ids)
    history: list[dict[str, Any]] = []
    if resume is not None:
        shared = dict(resume.shared)
        store.restore(resume.private)
        history = list(resume.history)
        resume.restore_rng()
    plan = FaultPlan(cfg.faults, cfg.seed)
    sizes = {cid: len(part) for cid, part in zip(fed.client_ids, fed.client_train, strict=True)}
    cum_up = history[-1]["cum_bytes_up"] if history else 0
    cum_down = history[-1]["cum_bytes_down"] if history else 0
    for t in range(len(history) + 1, cfg.federation.rounds + 1):
        start = time.perf_counter()
        participants = sample_clients(fed.client_ids, cfg.federation.clients_per_round, cfg.seed, t)
        broadcast = nbytes(shared)  # what each participant receives
        results: dict[str, ClientResult] = {}
        uploads: dict[str, Tensors] = {}
        failed: dict[str, str] = {}
        for cid in participants:
            private = store.get(cid)
            try:
                result, received = client_turn(fed, t, cid, shared, private, plan)
            except ClientFailure as exc:
                log.warning("round %d: client %s failed: %s", t, cid, exc)
                failed[cid] = str(exc)
                continue
            if on_client is not None:
                on_client(ClientEvent(t, cid, shared, private, received))
            results[cid], uploads[cid] = result, received.upload

        accepted, rejected = screen_updates(
            uploads, shared, max_norm=cfg.federation.max_update_norm
        )
        for reason in rejected.values():
            log.warning("round %d: rejected %s", t, reason)
        skipped = len(accepted) < cfg.federation.min_clients
        if skipped:
            log.warning("round %d skipped: %d valid updates < min_clients", t, len(accepted))
        else:
            by_size = cfg.federation.weighting == "examples"
            weights = [float(sizes[c]) if by_size else 1.0 for c in accepted]
            if shared:
                shared = weighted_mean([uploads[c] for c in accepted], weights)
            for cid in accepted:
                store.put(cid, results[cid].private)

        losses = {cid: r.train_loss for cid, r in results.items()}
        record: dict[str, Any] = {
            "round": t,
            "participants": participants,
            "accepted": accepted,
            "rejected": rejected,
            "failed": failed,
            "skipped": skipped,
            "bytes_up": sum(nbytes(u) for u in uploads.values()),
            "bytes_down": broadcast * len(participants),
            "bytes_up_per_client": {c: nbytes(u) for c, u in uploads.items()},
            "bytes_down_per_client": {c: broadcast for c in participants},
            "train_loss": sum(losses.values()) / len(losses) if losses else None,
            "train_loss_per_client": losses,
        }
        cum_up += record["bytes_up"]
        cum_down += record["bytes_down"]
        record["cum_bytes_up"], record["cum_bytes_down"] = cum_up, cum_down
        finish_round(fed, record, shared, store, start, history, run_dir, on_round)
        if checkpointer is not None and checkpointer.due(t):
            checkpointer.save(Checkpoint(t, shared, store.trained(), history))
    return shared, store, history
