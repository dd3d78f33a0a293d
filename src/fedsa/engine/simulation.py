"""The in-process simulator: the round loop, reading top to bottom.

sample -> send -> local train -> screen -> server rule -> evaluate -> record -> checkpoint.
One base model lives in memory; each client's private tensors live in a
:class:`~fedsa.engine.store.ClientStore` and are swapped in exactly by the algorithm's install
step. The client step (:func:`~fedsa.engine.client.client_round`) and the server step
(:func:`~fedsa.engine.server_step.server_update`) call the algorithm's hooks, and evaluation calls
the task's scorer, so the loop never branches on the algorithm or the task.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedsa.algorithms.hooks import ClientStart, Upload
from fedsa.core.params import Tensors, nbytes, read_from
from fedsa.engine.checkpoint import Checkpoint, Checkpointer
from fedsa.engine.client import ClientResult, client_round, client_seed
from fedsa.engine.evaluation import RoundCallback as RoundCallback
from fedsa.engine.evaluation import (
    client_start,
    finish_round,
    initial_round,
    next_round,
    seen_clients,
)
from fedsa.engine.faults import (
    BAD_UPDATE,
    LOST_REPLY,
    TRAIN_ERROR,
    ClientFailure,
    FaultPlan,
    corrupt,
)
from fedsa.engine.holdout import score_unseen
from fedsa.engine.prepare import Federation, sample_clients
from fedsa.engine.results import RunDir
from fedsa.engine.server_step import (
    ServerState,
    expected_upload,
    screen_round,
    sent_view,
    server_update,
    upload_weight,
)
from fedsa.engine.store import ClientStore
from fedsa.privacy.accounting import spent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientEvent:
    """One client's round for observers (tests, analysis): what it got and what it produced.

    ``received_private``: its private state at the start of its round; ``result``: its upload
    and new private state after local training, before aggregation.
    """

    round: int
    client: str
    received_shared: Tensors
    received_private: Tensors
    result: ClientResult
    received_base: Tensors = dataclasses.field(default_factory=dict)
    """Base weights changed by the server so far, as the client installed them (absolute)."""


ClientCallback = Callable[[ClientEvent], None]


def client_turn(
    fed: Federation, round_idx: int, cid: str, start: ClientStart, plan: FaultPlan
) -> tuple[ClientResult, ClientResult]:
    """One client's local training as the server will see it, with any injected fault.

    Returns the genuine result (with the private state it keeps) and the one received.

    Raises:
        ClientFailure: the client crashed in training or its reply was lost.
    """
    cfg = fed.cfg
    k = fed.client_ids.index(cid)
    fault = plan.fault(round_idx, k)
    result = client_round(
        fed.model,
        fed.layout,
        fed.algorithm,
        start=start,
        data=fed.train,
        indices=fed.client_train[k],
        cfg=cfg,
        round_idx=round_idx,
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
) -> tuple[ServerState, ClientStore, list[dict[str, Any]]]:
    """Run all rounds (from ``resume`` on, if given); returns final server state, store, metrics.

    Every upload is screened against what that client was expected to send (keys, shapes,
    dtypes, finite values, optional norm bound). A round applies the algorithm's server rule to
    the valid ones if at least ``federation.min_clients`` remain; otherwise it is skipped: the
    server state stays and no client's state changes. A client that fails or whose update is
    rejected keeps its private state from before the round.

    Args:
        fed: the prepared run.
        run_dir: where to append ``metrics.jsonl`` lines (None: keep in memory only).
        on_round: called with each round's metrics record.
        on_client: called with what the server receives from each client, before screening.
        resume: continue after this checkpoint's round instead of starting from round 1.
        checkpointer: writes a checkpoint after the rounds it says are due.
    """
    cfg, algorithm = fed.cfg, fed.algorithm
    state = ServerState(shared=dict(fed.init_shared))
    store = ClientStore(fed.init_private, fed.client_ids)
    history: list[dict[str, Any]] = []
    if resume is not None:
        state = ServerState.restore(resume.shared, resume.server)
        store.restore(resume.private)
        history = list(resume.history)
        resume.restore_rng()
    plan = FaultPlan(cfg.faults, cfg.seed)
    sizes = {cid: len(part) for cid, part in zip(fed.client_ids, fed.client_train, strict=True)}
    initial_round(fed, state, store, history, run_dir, on_round)
    cum_up = history[-1]["cum_bytes_up"] if history else 0
    cum_down = history[-1]["cum_bytes_down"] if history else 0
    for t in range(next_round(history), cfg.federation.rounds + 1):
        start = time.perf_counter()
        participants = sample_clients(  # never an unseen client (eval.holdout_clients)
            seen_clients(fed), cfg.federation.clients_per_round, cfg.seed, t, cfg.privacy.private
        )
        sent = {cid: sent_view(state, cid, cfg, fed.layout) for cid in participants}
        down = {cid: nbytes(sent[cid]) + nbytes(state.base_payload(cid)[1]) for cid in participants}
        results: dict[str, ClientResult] = {}
        uploads: dict[str, Tensors] = {}
        failed: dict[str, str] = {}
        for cid in participants:
            private = store.get(cid)
            try:
                result, received = client_turn(
                    fed, t, cid, client_start(fed, state, cid, private), plan
                )
            except ClientFailure as exc:
                log.warning("round %d: client %s failed: %s", t, cid, exc)
                failed[cid] = str(exc)
                continue
            if on_client is not None:
                on_client(ClientEvent(t, cid, sent[cid], private, received, state.base))
            results[cid], uploads[cid] = result, received.upload

        expected = {c: expected_upload(algorithm, fed.layout, cfg, t, sent[c]) for c in uploads}
        accepted, rejected = screen_round(uploads, expected, cfg.federation.max_update_norm)
        for reason in rejected.values():
            log.warning("round %d: rejected %s", t, reason)
        skipped = len(accepted) < cfg.federation.min_clients
        if skipped:
            log.warning("round %d skipped: %d valid updates < min_clients", t, len(accepted))
        else:
            state = server_update(
                algorithm,
                state,
                [Upload(c, uploads[c], upload_weight(cfg, sizes[c]), sent[c]) for c in accepted],
                round_idx=t,
                cfg=cfg,
                layout=fed.layout,
                client_ids=fed.client_ids,
                base_of=lambda names: read_from(fed.model, names),
            )
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
            "bytes_down": sum(down.values()),
            "bytes_up_per_client": {c: nbytes(u) for c, u in uploads.items()},
            "bytes_down_per_client": down,
            "train_loss": sum(losses.values()) / len(losses) if losses else None,
            "train_loss_per_client": losses,
        }
        if cfg.privacy.private:  # what the releases so far have spent
            record["privacy"] = spent(cfg, t)
        cum_up += record["bytes_up"]
        cum_down += record["bytes_down"]
        record["cum_bytes_up"], record["cum_bytes_down"] = cum_up, cum_down
        if t == cfg.federation.rounds and (unseen := score_unseen(fed, state)) is not None:
            record["eval_unseen"] = unseen
        finish_round(fed, record, state, store, start, history, run_dir, on_round)
        if checkpointer is not None and checkpointer.due(t):
            ckpt = Checkpoint(t, state.shared, store.trained(), history, state.extra_tensors())
            checkpointer.save(ckpt)
    return state, store, history
