"""The centralized reference: one model trained on the pooled data of all clients.

It answers "how much does keeping the data apart cost?". The step budget equals the federated
runs': each round takes ``local_steps x clients_per_round`` optimizer steps on batches drawn from
the union of all clients' training shards. The single model is then evaluated on every client's
own shard exactly like the federated algorithms, and nothing is communicated (0 bytes).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fedsa.algorithms.hooks import ClientStart
from fedsa.engine.checkpoint import Checkpoint, Checkpointer
from fedsa.engine.client import client_round, client_seed
from fedsa.engine.evaluation import (
    RoundCallback,
    finish_round,
    initial_round,
    next_round,
    seen_clients,
)
from fedsa.engine.holdout import score_unseen
from fedsa.engine.prepare import Federation, sample_clients
from fedsa.engine.results import RunDir
from fedsa.engine.server_step import ServerState
from fedsa.engine.simulation import ClientCallback, ClientEvent
from fedsa.engine.store import ClientStore

POOLED = "pooled"


def run_centralized(
    fed: Federation,
    run_dir: RunDir | None = None,
    on_round: RoundCallback | None = None,
    on_client: ClientCallback | None = None,
    *,
    resume: Checkpoint | None = None,
    checkpointer: Checkpointer | None = None,
) -> tuple[ServerState, ClientStore, list[dict[str, Any]]]:
    """Same contract as :func:`fedsa.engine.simulation.run_rounds`, for the pooled reference."""
    cfg = fed.cfg
    seen = seen_clients(fed)  # the unseen clients' data is never pooled
    pooled = sorted(i for c, part in zip(fed.client_ids, fed.client_train, strict=True)
                    if c in seen for i in part)  # fmt: skip
    store = ClientStore(fed.init_private, fed.client_ids)  # empty: nothing is private
    state = dict(fed.init_shared)
    history: list[dict[str, Any]] = []
    if resume is not None:
        state, history = dict(resume.shared), list(resume.history)
        resume.restore_rng()
    initial_round(fed, ServerState(state), store, history, run_dir, on_round)
    for t in range(next_round(history), cfg.federation.rounds + 1):
        start = time.perf_counter()
        budget = len(sample_clients(seen, cfg.federation.clients_per_round, cfg.seed, t))
        steps = cfg.federation.local_steps * budget
        round_cfg = dataclasses.replace(
            cfg, federation=dataclasses.replace(cfg.federation, local_steps=steps)
        )
        result = client_round(
            fed.model,
            fed.layout,
            fed.algorithm,
            start=ClientStart(fed.frozen, state, {}, {}, {}),
            data=fed.train,
            indices=pooled,
            cfg=round_cfg,
            round_idx=t,
            seed=client_seed(cfg.seed, t, len(fed.client_ids)),
            device=fed.device,
        )
        if on_client is not None:
            on_client(ClientEvent(t, POOLED, state, {}, result))
        state = result.upload
        record: dict[str, Any] = {
            "round": t,
            "participants": [],
            "pooled_steps": steps,
            "bytes_up": 0,
            "bytes_down": 0,
            "bytes_up_per_client": {},
            "bytes_down_per_client": {},
            "train_loss": result.train_loss,
            "train_loss_per_client": {POOLED: result.train_loss},
            "cum_bytes_up": 0,
            "cum_bytes_down": 0,
        }
        if t == cfg.federation.rounds and (unseen := score_unseen(fed, ServerState(state))):
            record["eval_unseen"] = unseen
        finish_round(fed, record, ServerState(state), store, start, history, run_dir, on_round)
        if checkpointer is not None and checkpointer.due(t):
            checkpointer.save(Checkpoint(t, state, {}, history))
    return ServerState(state), store, history
