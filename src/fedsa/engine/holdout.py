"""Unseen clients (``eval.holdout_clients``): what a client new to the federation gets.

The last N client ids never train, never send anything and never enter an aggregate. After the
last round each receives what the server sends (the shared tensors, cut to its rank, and any
base change), starts its private part from the common initial state, trains that part alone for
``eval.adapt_steps`` local steps on its own training shard, and is scored on its own evaluation
shard. With 0 steps this is the global model where one exists; for FedSA-LoRA, which has no
global B, it is the shared A with the initial B (zero) and head. Reported apart from the seen
clients (``eval_unseen`` in the last round's record, ``final_unseen`` in the summary).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedsa.adapters.layout import apply_trainable
from fedsa.core.device import autocast_dtype
from fedsa.engine.client import client_seed, install_start
from fedsa.engine.evaluation import client_start, evaluate_client
from fedsa.engine.metrics import summarize
from fedsa.engine.prepare import Federation
from fedsa.engine.server_step import ServerState
from fedsa.engine.train import train_steps
from fedsa.tasks.batching import collate, sample_batches


def unseen_clients(fed: Federation) -> list[str]:
    """The held-out client ids (the last ``eval.holdout_clients``)."""
    held = fed.cfg.eval.holdout_clients
    return fed.client_ids[len(fed.client_ids) - held :] if held else []


def adapt(fed: Federation, k: int, steps: int) -> None:
    """Train client ``k``'s private, trainable tensors alone for ``steps`` steps (seeded)."""
    layout, cfg = fed.layout, fed.cfg
    names = [n for n in layout.private if layout.slots[n] in layout.trains]
    if steps <= 0 or not names:
        return
    seed = client_seed(cfg.seed, cfg.federation.rounds + 1, k)  # a round after the last
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    lengths = fed.train.lengths if cfg.federation.group_by_length else None
    batches = sample_batches(fed.client_train[k], steps, cfg.federation.batch_size, rng, lengths)
    params = dict(fed.model.named_parameters())
    for name, param in params.items():
        param.requires_grad_(name in names)
    dtype = autocast_dtype(cfg.precision, fed.device)
    chunks = (collate(fed.train, b) for b in batches)
    train_steps(fed.model, [params[n] for n in names], chunks, cfg.optim, fed.device, dtype)
    apply_trainable(fed.model, layout)


def score_unseen(fed: Federation, state: ServerState) -> dict[str, Any] | None:
    """Every unseen client adapted and scored: the ``eval`` form, or None without holdouts."""
    clients = unseen_clients(fed)
    if not clients:
        return None
    per_client: dict[str, dict[str, float]] = {}
    for cid in clients:
        k = fed.client_ids.index(cid)
        start = client_start(fed, state, cid, fed.init_private)
        install_start(fed.model, fed.algorithm, start, fed.layout, fed.cfg)
        adapt(fed, k, fed.cfg.eval.adapt_steps)
        per_client[cid] = evaluate_client(fed, k)
    return {"clients": per_client, **summarize(per_client), "adapt_steps": fed.cfg.eval.adapt_steps}
