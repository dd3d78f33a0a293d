"""Scoring clients' personalised models and recording a round (both engines use the scoring).

A client is scored with what the server sends it plus its own private tensors, on its own shard
(:func:`evaluate_clients`); :func:`finish_round` evaluates when due and hands the round's record
to history, disk and observer; :func:`initial_round` records the round-0 evaluation.

The algorithm's evaluator decides how a model is scored (FedDPA mixes adapters per input); next
to its metrics every classification client gets its majority prior (what always predicting its
majority training label scores on the same shard) and its accuracy's gain over it, so that a
score a label-skewed shard gives away is visible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fedsa.algorithms.hooks import ClientEval, ClientStart
from fedsa.core.device import autocast, autocast_dtype
from fedsa.core.params import Tensors
from fedsa.engine.client import install_start
from fedsa.engine.metrics import summarize
from fedsa.engine.prepare import Federation
from fedsa.engine.results import RunDir
from fedsa.engine.server_step import ServerState, sent_view, start_rank
from fedsa.engine.store import ClientStore
from fedsa.tasks.client_tasks import client_labels


def evaluate_client(
    fed: Federation, k: int, records: list[dict[str, Any]] | None = None
) -> dict[str, float]:
    """Client ``k``'s metrics with whatever adapter state the model holds now.

    The algorithm's evaluator decides how (FedDPA mixes its adapters per input); by default it is
    the task's own scorer, which appends what each prompt got to ``records`` where it keeps any.
    """
    cfg = fed.cfg
    request = ClientEval(
        fed.model, fed.scorer, k, fed.client_train[k], fed.client_eval[k], cfg, records
    )
    with autocast(fed.device, autocast_dtype(cfg.precision, fed.device)):
        metrics = dict(fed.algorithm.evaluate(request))
    prior = fed.scorer.prior(fed.client_train[k], fed.client_eval[k])
    if prior is not None:  # what always predicting its majority training label scores
        metrics.update(majority=prior, prior_gain=metrics["accuracy"] - prior)
    return metrics


RoundCallback = Callable[[dict[str, Any]], None]


def seen_clients(fed: Federation) -> list[str]:
    """The clients that train: all but the last ``eval.holdout_clients`` (the unseen ones)."""
    return fed.client_ids[: len(fed.client_ids) - fed.cfg.eval.holdout_clients]


def client_start(fed: Federation, state: ServerState, cid: str, private: Tensors) -> ClientStart:
    """What client ``cid`` starts from: what the server sends it, plus its own private state."""
    return ClientStart(
        frozen=fed.frozen,
        shared=sent_view(state, cid, fed.cfg, fed.layout),
        private=private,
        initial_private=fed.init_private,
        base=state.base,
        rank=start_rank(fed.cfg, cid),
        labels=client_labels(fed.cfg, cid),
    )


def evaluate_clients(
    fed: Federation,
    state: ServerState,
    store: ClientStore,
    clients: list[str] | None = None,
    transcripts: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Each client's personalised model (what the server sends it + own private) on its shard.

    ``clients`` names whom to evaluate (None: every client); see ``eval.clients``. Where the task
    keeps records of what each prompt got (generation), they go to ``transcripts[client]``.
    """
    per_client: dict[str, dict[str, float]] = {}
    position = {cid: k for k, cid in enumerate(fed.client_ids)}
    for cid in fed.client_ids if clients is None else clients:
        start = client_start(fed, state, cid, store.get(cid))
        install_start(fed.model, fed.algorithm, start, fed.layout, fed.cfg)
        records: list[dict[str, Any]] | None = [] if transcripts is not None else None
        per_client[cid] = evaluate_client(fed, position[cid], records)
        if records and transcripts is not None:
            transcripts[cid] = records
    return {"clients": per_client, **summarize(per_client)}


def finish_round(
    fed: Federation,
    record: dict[str, Any],
    state: ServerState,
    store: ClientStore,
    start: float,
    history: list[dict[str, Any]],
    run_dir: RunDir | None,
    on_round: RoundCallback | None,
) -> None:
    """Evaluate when due, time the round, and hand its record to history, disk and observer.

    ``eval_s`` (evaluation time) is recorded next to ``wall_s`` (whole round, evaluation included).
    What a generation task's clients answered goes to ``generations/round_<t>/<client>.jsonl``.
    """
    t = record["round"]
    if t % fed.cfg.eval.every == 0 or t == fed.cfg.federation.rounds:
        # round 0, and the pooled reference (no participants), evaluate everyone
        some = fed.cfg.eval.clients == "participants" and bool(record["participants"])
        who = record["participants"] if some else None if t == 0 else seen_clients(fed)
        eval_start = time.perf_counter()
        transcripts: dict[str, list[dict[str, Any]]] = {}
        record["eval"] = evaluate_clients(fed, state, store, who, transcripts)
        record["eval_s"] = time.perf_counter() - eval_start
        if run_dir is not None and transcripts:
            run_dir.write_generations(t, transcripts)
    record["wall_s"] = time.perf_counter() - start
    history.append(record)
    if run_dir is not None:
        run_dir.append_metrics(record)
    if on_round is not None:
        on_round(record)


def initial_round(
    fed: Federation,
    state: ServerState,
    store: ClientStore,
    history: list[dict[str, Any]],
    run_dir: RunDir | None,
    on_round: RoundCallback | None,
) -> None:
    """``eval.initial``: every client evaluated before any training, recorded as round 0.

    What each client scores with the common initial adapter (and its head) shows how much of a
    final score training added; nothing is trained or sent. Not redone on resume.
    """
    if not fed.cfg.eval.initial or history:
        return
    record: dict[str, Any] = {"round": 0, "participants": [], "accepted": [], "rejected": {}}
    record.update(failed={}, skipped=False, bytes_up=0, bytes_down=0, bytes_up_per_client={})
    record.update(bytes_down_per_client={}, train_loss=None, train_loss_per_client={})
    record.update(cum_bytes_up=0, cum_bytes_down=0)
    finish_round(fed, record, state, store, time.perf_counter(), history, run_dir, on_round)


def next_round(history: list[dict[str, Any]]) -> int:
    """The first round still to run (after a resume, or after round 0's evaluation)."""
    return int(history[-1]["round"]) + 1 if history else 1
