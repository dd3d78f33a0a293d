"""Build everything a run needs once: data, partition, tokens, model, adapter layout, initial state.

Kept apart from the round loop so that the loop reads top to bottom and so that other engines
(Flower) can build the same pieces for one client.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from fedsa.adapters.layout import Layout, apply_trainable, make_layout
from fedsa.adapters.ranks import max_rank
from fedsa.adapters.variants import VARIANTS, build_peft_model
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import RunConfig
from fedsa.core.device import autocast_dtype
from fedsa.core.errors import ConfigError, DataError
from fedsa.core.params import Tensors, read_from
from fedsa.models.causal_lm import resolve_target_modules
from fedsa.tasks.base import Loaded, TaskEval
from fedsa.tasks.batching import Encoded
from fedsa.tasks.client_tasks import MixedTaskData, split_by_task
from fedsa.tasks.glue import resolve_data_dir
from fedsa.tasks.partition import split_with_eval
from fedsa.tasks.registry import task_for

log = logging.getLogger(__name__)


@dataclass
class Federation:
    """The prepared pieces of one run."""

    cfg: RunConfig
    algorithm: Algorithm
    task: Loaded
    """The raw examples (sentences or prompt/response pairs) and where they came from."""
    train: Encoded
    dev: Encoded
    client_ids: list[str]
    client_train: list[list[int]]
    """Indices into ``train`` per client."""
    client_eval: list[list[int]]
    """Indices into ``dev`` per client (label proportions matched to its training shard)."""
    model: torch.nn.Module
    layout: Layout
    init_shared: Tensors
    init_private: Tensors
    frozen: Tensors
    device: torch.device
    scorer: TaskEval
    """The task's scorer of a client's personalised model (accuracy or exact match)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("device = 'cuda' but no CUDA device is available: use device = 'auto'")
    return torch.device(name)


def split_clients(cfg: RunConfig, task: Loaded) -> tuple[list[list[int]], list[list[int]]]:
    """Training shards by the configured partitioner, and matched evaluation shards from dev.

    With ``data.client_tasks`` each task is split among its own clients instead.
    """
    if isinstance(task, MixedTaskData):
        return split_by_task(cfg, task)
    labels, dev = [ex.label for ex in task.train], [ex.label for ex in task.dev]
    return split_with_eval(labels, dev, cfg.data.num_clients, cfg.data, cfg.seed)


def build_model(
    cfg: RunConfig, num_labels: int, device: torch.device, base: PreTrainedModel | None = None
) -> tuple[torch.nn.Module, Layout]:
    """The seeded PEFT model and its layout: identical in every process given the same config.

    Needs no data, so a server that holds none (Flower's ServerApp) builds the same initial
    shared tensors as the clients.

    Args:
        cfg: the run configuration.
        num_labels: classes of a classification task (ignored for generation tasks).
        device: where the model goes.
        base: an already loaded base model (None: load it as the task kind says).
    """
    task = task_for(cfg.data.task)
    if base is None:
        base = task.load_base(cfg, num_labels)
    targets = resolve_target_modules(base, cfg.adapter.target_modules)
    # heterogeneous ranks: one model of the largest rank, each client using its first r_k
    adapter = dataclasses.replace(cfg.adapter, target_modules=targets, r=max_rank(cfg))
    model = build_peft_model(base, adapter, cfg.seed, task.task_type)
    algorithm = ALGORITHMS[cfg.algorithm]
    if algorithm.extend_model is not None:
        algorithm.extend_model(model, adapter, cfg)
    check_orientation(model, algorithm)
    model = model.to(device)
    layout = make_layout(model, VARIANTS[cfg.adapter.variant], algorithm, cfg.federation.share_head)
    apply_trainable(model, layout)
    return model, layout


def check_orientation(model: torch.nn.Module, algorithm: Algorithm) -> None:
    """Refuse a merging method on layers stored (d_in, d_out) (PEFT's ``fan_in_fan_out``).

    FLoRA and FedEx-LoRA add ``B @ A`` to ``W0``; on GPT-2's ``Conv1D`` that would need the
    transpose, which on a square layer no shape check would catch (FedEx-LoRA's code has the
    opposite slip).
    """
    if not algorithm.merges_into_linear:
        return
    for name, module in model.named_modules():
        if getattr(module, "fan_in_fan_out", False):
            raise ConfigError(
                f"algorithm = {algorithm.name!r} merges B @ A into nn.Linear weights, but "
                f"{name} stores its weight transposed (Conv1D, as in GPT-2): pick a model with "
                "nn.Linear layers or another algorithm"
            )


def prepare(cfg: RunConfig) -> Federation:
    """Load, split, tokenise and build the model for ``cfg``."""
    device = resolve_device(cfg.device)
    autocast_dtype(cfg.precision, device)  # fail before loading anything if unsupported
    kind = task_for(cfg.data.task)
    task = kind.load(cfg, resolve_data_dir(cfg.data.data_dir))
    log.info(
        "task %s: %d train, %d dev (%s)", task.task, len(task.train), len(task.dev), task.source
    )
    client_train, client_eval = split_clients(cfg, task)
    prepared = kind.prepare(cfg, task, device)
    model, layout = build_model(cfg, task.num_labels, device, prepared.base)
    return Federation(
        cfg=cfg,
        algorithm=ALGORITHMS[cfg.algorithm],
        task=task,
        train=prepared.train,
        dev=prepared.dev,
        client_ids=[str(k) for k in range(cfg.data.num_clients)],
        client_train=client_train,
        client_eval=client_eval,
        model=model,
        layout=layout,
        init_shared=read_from(model, layout.shared),
        init_private=read_from(model, layout.private),
        frozen=read_from(model, layout.frozen),
        device=device,
        scorer=prepared.scorer,
    )


def sample_clients(
    client_ids: list[str], per_round: int, seed: int, round_idx: int, poisson: bool = False
) -> list[str]:
    """The clients taking part in a round, drawn without replacement from (seed, round).

    ``poisson`` (client-level DP, whose accountant assumes it): each client takes part
    independently with probability ``per_round / len(client_ids)``, so the count varies.
    """
    if per_round <= 0 or per_round >= len(client_ids):
        return list(client_ids)
    rng = np.random.default_rng([seed, round_idx, 7919])
    if poisson:
        draws = rng.random(len(client_ids))
        return [c for c, u in zip(client_ids, draws, strict=True) if u < per_round / len(draws)]
    chosen = rng.choice(len(client_ids), size=per_round, replace=False)
    return [client_ids[i] for i in sorted(int(c) for c in chosen)]
